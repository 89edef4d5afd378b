"""The Celery app and the jobs a worker runs. A job's input travels by reference: the page keeps the
decoded, de-identified volume in the image store (``REVIEW_DATA_DIR``, shared by the app replicas
and the workers) and sends its sha256; the worker stores the run in the shared database and the
label map in the store, and answers the run id. No patient identifier is in a message.

Acknowledged late and rejected when the process running it dies: a worker child killed mid-job
is replaced and the job runs again; storing is idempotent (the same input, model, weights and
label map are one run), so nothing is stored twice. While it runs the job reports its progress
and a heartbeat every few seconds, so a client can tell a job in progress from one whose worker
is gone."""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigError, ReviewError
from core.settings import Settings, load_settings
from core.types import CaseFacts
from inference.models.loader import LoadedModel

log = logging.getLogger(__name__)

SEGMENT = "review.segment"
REGION_SHAP = "review.region_shap"
CLASSIFY_VOLUME = "review.classify_volume"
HEARTBEAT_S = 5.0


def _configure(app: Celery, broker_url: str, backend_url: str | None) -> None:
    app.conf.update(
        broker_url=broker_url,
        result_backend=backend_url or broker_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a job whose worker dies before it ends is delivered again
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,  # one job at a time per process: each uses every core
        result_expires=7 * 24 * 3600,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )


def _import_job_code(**_: object) -> None:
    """In each new worker process, before its first job: the job's libraries (torch, MONAI, the
    pipelines) imported now, not under the job's heartbeat (an import holds the interpreter for
    seconds at a time, and a client would take the silence for a dead worker)."""
    # Not shap itself: region SHAP computes from its own coalition table (shap, 5 s of CPU to
    # import, is the tests' and the benchmark's reference only).
    import inference.volume.segment  # noqa: F401
    import pipelines.analyze
    import pipelines.job_bodies
    import pipelines.kept_volumes
    import pipelines.summaries  # noqa: F401
    import storage.db  # noqa: F401
    import xai.anatomy
    import xai.region_shap  # noqa: F401


@lru_cache(maxsize=4)
def celery_app(broker_url: str, backend_url: str | None = None) -> Celery:
    """The Celery app for a broker (one per process and broker)."""
    app = Celery("review", set_as_current=False)
    _configure(app, broker_url, backend_url)
    app.task(bind=True, name=SEGMENT)(segment_task)
    app.task(bind=True, name=REGION_SHAP)(region_shap_task)
    app.task(bind=True, name=CLASSIFY_VOLUME)(classify_volume_task)
    worker_process_init.connect(_import_job_code, weak=False)
    return app


def configured_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    if not settings.worker_broker_url:
        raise ConfigError(
            "WORKER_BROKER_URL is not set: there is no queue to take jobs from (e.g. redis://127.0.0.1:6379/0)."
        )
    return celery_app(settings.worker_broker_url, settings.worker_result_backend)


class Heartbeat:
    """Publishes the job's progress, its worker process and the time, at each step and between
    steps (a window of a large volume can take longer than a client waits for a sign of life):
    three times in ``WORKER_STALL_S``, at most every ``HEARTBEAT_S``."""

    def __init__(self, task: Any, every_s: float = HEARTBEAT_S) -> None:
        self._task = task
        self._task_id = task.request.id  # the request is per thread: the heartbeat thread has none
        self._every_s = every_s
        # The worker's name: a client that hears no beat for a while asks that worker whether it is
        # still there before it calls the job lost (a busy machine can delay a beat).
        self._state: dict = {
            "progress": 0.0,
            "message": "starting",
            "pid": os.getpid(),
            "worker": str(getattr(task.request, "hostname", "") or ""),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="job-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._publish()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._every_s)

    def progress(self, fraction: float, message: str) -> None:
        self._state.update(progress=max(0.0, min(1.0, float(fraction))), message=message)
        self._publish()

    def _beat(self) -> None:
        while not self._stop.wait(self._every_s):
            self._publish()

    def _publish(self) -> None:
        self._task.update_state(task_id=self._task_id, state="PROGRESS", meta={**self._state, "beat": time.time()})


_MODELS: dict[tuple[str, bool], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def worker_model(model_id: str, allow_untrained: bool, settings: Settings) -> LoadedModel:
    """Each model loaded once per worker process (not per job, not per app replica)."""
    from inference.models.loader import load_model
    from inference.models.registry import get_spec

    with _MODELS_LOCK:
        loaded = _MODELS.get((model_id, allow_untrained))
        if loaded is None:
            started = time.perf_counter()
            loaded = load_model(get_spec(model_id), settings, allow_untrained=allow_untrained)
            _MODELS[(model_id, allow_untrained)] = loaded
            log.warning(
                "Worker %d loaded %s (%s) in %.1f s",
                os.getpid(),
                model_id,
                "trained" if loaded.trained else "UNTRAINED",
                time.perf_counter() - started,
            )
        return loaded


@lru_cache(maxsize=4)
def _sessions(database_url: str) -> sessionmaker[Session]:
    from storage.db import open_database

    return open_database(database_url)


def _store(settings: Settings, what: str) -> Any:
    """The image store the app replicas keep inputs in (``what``: "The volume", "The radiograph").

    Raises:
        ConfigError: the store is turned off, so no input can reach a worker.
    """
    from storage.image_store import ImageStore

    if not settings.image_store:
        raise ConfigError(f"The workers need the image store (IMAGE_STORE=1): {what.lower()} reaches them through it.")
    return ImageStore(settings.image_store_dir, settings.image_retention_days)


def _not_kept(what: str) -> ReviewError:
    return ReviewError(
        f"{what} is not in the image store the workers read (REVIEW_DATA_DIR must be the app's own, "
        "shared with the workers). Upload it again."
    )


def _model_the_page_ran(payload: dict, settings: Settings) -> LoadedModel:
    """The model and weights the page ran (``payload``'s), as loaded once in this worker process.

    Raises:
        ReviewError: this worker has other weights for that model.
    """
    loaded = worker_model(payload["model_id"], bool(payload["allow_untrained"]), settings)
    if loaded.weights_sha256 != payload["weights_sha256"]:
        raise ReviewError(
            f"The worker runs other weights for {payload['model_id']} ({loaded.weights_sha256[:12]}…) than "
            f"the page ({payload['weights_sha256'][:12]}…): install the same weights on every worker."
        )
    return loaded


def segment_task(task: Any, payload: dict) -> dict:
    """Segment the kept volume ``payload["input_sha256"]`` with the model and weights the page
    ran, store the run and keep its label map: ``{"run_id"}``, or ``{"error"}`` with the reason
    for the reader (the input not in the store, other weights on this worker...)."""
    from pipelines.job_bodies import segment_and_store
    from pipelines.kept_volumes import kept_volume

    settings = load_settings()
    with Heartbeat(task, min(HEARTBEAT_S, settings.worker_stall_s / 3)) as beat:
        try:
            store = _store(settings, "The volume")
            inputs = kept_volume(store, payload["input_sha256"])
            if inputs is None:
                raise _not_kept("The volume")
            loaded = _model_the_page_ran(payload, settings)
            facts = CaseFacts.from_dict(payload["facts"])
            _, run_id = segment_and_store(
                _sessions(settings.database_url), inputs, loaded, facts, payload.get("actor"), beat.progress, store
            )
        except ReviewError as exc:
            log.warning("Segmentation job refused: %s", exc)
            return {"error": str(exc)}
    log.info("Segmentation stored as run %d by worker %d", run_id, os.getpid())
    return {"run_id": run_id}


_ANATOMY: dict[str, Any] = {}


def _anatomy_model(settings: Settings) -> Any:
    """torchxrayvision's anatomy segmentation when its weights are installed on this worker, else
    None (the fixed grid of regions), loaded once per worker process."""
    from xai.anatomy import PSPNET_FILENAME, load_anatomy_model

    weights_dir = settings.weights_dir
    with _MODELS_LOCK:
        key = str(weights_dir)
        if key not in _ANATOMY:
            present = (weights_dir / PSPNET_FILENAME).is_file()
            _ANATOMY[key] = load_anatomy_model(weights_dir) if present else None
        return _ANATOMY[key]


def region_shap_task(task: Any, payload: dict) -> dict:
    """Region SHAP of the kept radiograph ``payload["input_sha256"]`` with the model and weights the
    page ran, for every finding, stored with run ``payload["run_id"]``: ``{"run_id"}``, or
    ``{"error"}`` with the reason for the reader. Stored once: a job delivered again after its
    worker died finds the explanation stored and answers with it."""
    from inference.images.preprocess import model_input
    from pipelines.job_bodies import explain_regions_and_store
    from storage import repository

    settings = load_settings()
    run_id = int(payload["run_id"])
    with Heartbeat(task, min(HEARTBEAT_S, settings.worker_stall_s / 3)) as beat:
        try:
            sessions = _sessions(settings.database_url)  # the first job of a process opens it: seconds
            with sessions.begin() as session:
                if repository.get_region_explanation(session, run_id) is not None:
                    return {"run_id": run_id}
            image = _store(settings, "The radiograph").get_image(payload["input_sha256"])
            if image is None:
                raise _not_kept("The radiograph")
            loaded = _model_the_page_ran(payload, settings)
            spec = loaded.classifier_spec
            plane = model_input(image.pixels, spec.input_size, spec.normalisation)[0, 0]
            explain_regions_and_store(sessions, run_id, loaded, plane, _anatomy_model(settings), beat.progress)
        except ReviewError as exc:
            log.warning("Region SHAP job refused: %s", exc)
            return {"error": str(exc)}
    log.info("Region SHAP of run %d stored by worker %d", run_id, os.getpid())
    return {"run_id": run_id}


def classify_volume_task(task: Any, payload: dict) -> dict:
    """A 2D classifier (the brain MRI models) over the kept volume ``payload["input_sha256"]``,
    slice by slice, with the model and weights the caller expects: ``{"classification"}`` (each
    class in its band, every slice's scores, how the volume's score was made), or ``{"error"}``
    with the reason. Nothing is stored: the answer travels back through the result backend."""
    from inference.images.bands import load_band_config
    from inference.volume.types import Volume
    from pipelines.kept_volumes import kept_volume
    from pipelines.summaries import volume_classification

    settings = load_settings()
    with Heartbeat(task, min(HEARTBEAT_S, settings.worker_stall_s / 3)):
        try:
            inputs = kept_volume(_store(settings, "The volume"), payload["input_sha256"])
            if inputs is None:
                raise _not_kept("The volume")
            if not isinstance(inputs, Volume):
                raise ReviewError("One volume is classified at a time, not a set of MRI channels.")
            loaded = _model_the_page_ran(payload, settings)
            classification = volume_classification(inputs, loaded, load_band_config(settings.bands_file))
        except ReviewError as exc:
            log.warning("Volume classification refused: %s", exc)
            return {"error": str(exc)}
    log.info("Volume %s… classified by worker %d", payload["input_sha256"][:12], os.getpid())
    return {"classification": classification}
