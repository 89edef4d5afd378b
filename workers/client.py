"""What an app replica (or the API) holds of the jobs on the workers: the same ``get``/``submit``
and job fields as ``core.jobs.JobRunner``, so the pages poll a worker's job as they poll a thread.

One job per key across every replica: the key names the current Celery task in Redis (set only
if absent), so a second replica asking for the same input, model and weights joins the job the
first started, and finds its result when it is done. A failed job (or one whose worker stopped)
is replaced by the next submission."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from celery.result import AsyncResult
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from core.errors import ConfigError, ReviewError
from core.settings import Settings
from workers.tasks import configured_app

log = logging.getLogger(__name__)

Resolver = Callable[[dict], Any]  # a job's answer ({"run_id": ...}) -> what the page shows
_PREFIX = "review:job:"
_POLL_S = 0.25
_PING_EVERY_S = 10.0
_ASK_WORKER_EVERY_S = 2.0
_SILENT_LIMIT_FACTOR = 6  # a running job silent for this many stall periods is lost, its worker alive or not


def segmentation_payload(inputs, model_id: str, weights_sha256: str, trained: bool, facts, actor: str | None) -> dict:
    """What a worker needs to segment a volume kept in the shared image store: its sha256, the
    model and weights the caller expects (untrained only where the caller runs untrained), the
    case's de-identified facts and who asked. Plain JSON, no pixels, no identifiers."""
    return {
        "input_sha256": inputs.input_sha256,
        "model_id": model_id,
        "weights_sha256": weights_sha256,
        "allow_untrained": not trained,
        "facts": {**asdict(facts), "notes": list(facts.notes)},
        "actor": actor,
    }


class RemoteJob:
    """A job on the workers, read from the result backend (at most every 250 ms)."""

    def __init__(self, key: str, result: AsyncResult, resolve: Resolver, stall_s: float, jobs: RemoteJobs) -> None:
        self.key = key
        self._result = result
        self._resolve = resolve
        self._stall_s = stall_s
        self._jobs = jobs
        self._state_since = time.time()  # when the state last changed, as this client saw it
        self._read_at = 0.0
        self._state = "PENDING"
        self._info: Any = None
        self._answer: Any = None
        self._resolved = False
        self._error: str | None = None

    @property
    def task_id(self) -> str:
        return str(self._result.id)

    def _read(self) -> None:
        if self._resolved or self._error is not None:
            return
        now = time.monotonic()
        if now - self._read_at < _POLL_S:
            return
        self._read_at = now
        state, self._info = self._result.state, self._result.info
        if state != self._state:
            self._state, self._state_since = state, time.time()
        if self._state == "SUCCESS":
            answer = self._info if isinstance(self._info, dict) else {}
            if "error" in answer:
                self._error = str(answer["error"])
                return
            try:
                self._answer = self._resolve(answer)
                self._resolved = True
            except ReviewError as exc:
                self._error = str(exc)
        elif self._state in ("FAILURE", "REVOKED"):
            self._error = (
                f"The job failed on the worker ({type(self._info).__name__}: {self._info}). "
                "It was logged there; start it again."
            )
        elif self._state in ("STARTED", "PROGRESS", "RETRY"):
            beat = self._info.get("beat") if isinstance(self._info, dict) else None
            silent = time.time() - (beat or self._state_since)
            worker = self._info.get("worker") if isinstance(self._info, dict) else None
            # A worker that still answers is busy, not gone (on a loaded machine a beat can come late),
            # up to a limit: a job silent for much longer is reported whatever its worker says.
            if silent > self._stall_s and not (
                silent < _SILENT_LIMIT_FACTOR * self._stall_s and worker and self._jobs.worker_answers(worker)
            ):
                self._error = (
                    f"The worker running this job stopped: no sign of life for {silent:.0f} s. Nothing was stored "
                    "for it; start it again."
                )

    @property
    def done(self) -> bool:
        self._read()
        return self._resolved or self._error is not None

    @property
    def error(self) -> str | None:
        self._read()
        return self._error

    @property
    def result(self) -> Any:
        self._read()
        return self._answer

    @property
    def queued(self) -> bool:
        """Sent, not yet taken by a worker."""
        self._read()
        return self._state == "PENDING" and not self.done

    @property
    def progress(self) -> float:
        self._read()
        if self.done:
            return 1.0
        return float(self._info.get("progress", 0.0)) if isinstance(self._info, dict) else 0.0

    @property
    def message(self) -> str:
        self._read()
        if self._state == "PENDING":
            if not self._jobs.workers_alive():
                return "queued, but no worker is running (start one: python -m inference worker)"
            return "queued for a free worker"
        if isinstance(self._info, dict) and "message" in self._info:
            return f"{self._info['message']} (on a worker)"
        return "running on a worker"

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
        return True


class RemoteJobs:
    """Jobs on Celery workers, shared by key across the replicas of one Redis."""

    def __init__(self, settings: Settings, resolvers: dict[str, Resolver]) -> None:
        import redis

        self._app = configured_app(settings)
        assert settings.worker_broker_url is not None  # configured_app refuses otherwise
        self._redis = redis.Redis.from_url(settings.worker_broker_url)
        self._resolvers = resolvers
        self._stall_s = float(settings.worker_stall_s)
        self._pinged_at = 0.0
        self._alive = True
        self._answers: dict[str, tuple[float, bool]] = {}  # worker -> (when asked, whether it answered)

    def _resolver(self, key: str) -> Resolver:
        kind = key.split(":", 1)[0]
        try:
            return self._resolvers[kind]
        except KeyError:
            raise ReviewError(f"No worker job of kind {kind!r}.") from None

    def _job(self, key: str, task_id: str) -> RemoteJob:
        return RemoteJob(key, AsyncResult(task_id, app=self._app), self._resolver(key), self._stall_s, self)

    def get(self, key: str) -> RemoteJob | None:
        task_id = self._redis.get(_PREFIX + key)
        if task_id is None:
            return None
        return self._job(key, task_id.decode() if isinstance(task_id, bytes) else str(task_id))

    def submit(self, key: str, task: str, payload: dict) -> RemoteJob:
        """Join the job for ``key`` when it is queued, running or done; otherwise send ``task``
        with ``payload`` (plain JSON: references, never pixels or identifiers)."""
        existing = self.get(key)
        if existing is not None and existing.error is None:
            return existing
        task_id = f"{key}:{uuid.uuid4().hex[:12]}"
        expires = int(self._app.conf.result_expires)
        if existing is None:
            if not self._redis.set(_PREFIX + key, task_id, nx=True, ex=expires):
                joined = self.get(key)  # another replica submitted it a moment ago
                if joined is not None:
                    return joined
        else:
            self._redis.set(_PREFIX + key, task_id, ex=expires)  # replaces the failed attempt
        self._app.send_task(task, args=(payload,), task_id=task_id)
        log.info("Job %s sent to the workers as %s", key, task_id)
        return self._job(key, task_id)

    def waiting(self) -> int:
        """Jobs in the workers' queue not yet taken by a worker (Celery's default queue in Redis)."""
        try:
            return int(self._redis.llen(self._app.conf.task_default_queue))
        except RedisError as exc:
            log.warning("Could not read the workers' queue: %s", exc)
            return 0

    def submit_segmentation(
        self, key: str, store, inputs, model_id: str, weights_sha256: str, trained: bool, facts, actor: str | None
    ) -> RemoteJob:
        """A segmentation for the workers: the volume kept in the shared image store (``store``),
        where they read it by its sha256, then the job sent (or joined, under ``key``).

        Raises:
            ConfigError: the image store is off (``store`` None), so the workers could not read it.
        """
        from pipelines.kept_volumes import keep_volume
        from workers.tasks import SEGMENT

        if store is None:
            raise ConfigError("Segmentation on the workers needs the image store (IMAGE_STORE=1), shared with them.")
        keep_volume(store, inputs)
        payload = segmentation_payload(inputs, model_id, weights_sha256, trained, facts, actor)
        return self.submit(key, SEGMENT, payload)

    def submit_region_shap(
        self, key: str, run_id: int, input_sha256: str, model_id: str, weights_sha256: str, trained: bool
    ) -> RemoteJob:
        """Region SHAP of a kept radiograph for the workers (they read it from the shared image
        store by its sha256 and store the explanation with run ``run_id``), sent or joined under ``key``."""
        from workers.tasks import REGION_SHAP

        payload = {
            "run_id": run_id,
            "input_sha256": input_sha256,
            "model_id": model_id,
            "weights_sha256": weights_sha256,
            "allow_untrained": not trained,
        }
        return self.submit(key, REGION_SHAP, payload)

    def submit_volume_classification(
        self, key: str, store, inputs, model_id: str, weights_sha256: str, trained: bool
    ) -> RemoteJob:
        """A volume's slice-by-slice classification for the workers: the volume kept in the shared
        image store (``store``), then the job sent (or joined, under ``key``).

        Raises:
            ConfigError: the image store is off (``store`` None), so the workers could not read it.
        """
        from pipelines.kept_volumes import keep_volume
        from workers.tasks import CLASSIFY_VOLUME

        if store is None:
            raise ConfigError("Classification on the workers needs the image store (IMAGE_STORE=1), shared with them.")
        keep_volume(store, inputs)
        payload = {
            "input_sha256": inputs.input_sha256,
            "model_id": model_id,
            "weights_sha256": weights_sha256,
            "allow_untrained": not trained,
        }
        return self.submit(key, CLASSIFY_VOLUME, payload)

    def worker_answers(self, worker: str) -> bool:
        """Whether the worker named ``worker`` (the one running a job) answers a ping (asked at
        most every 2 s per worker; the first answer ends the wait)."""
        now = time.monotonic()
        asked_at, answered = self._answers.get(worker, (0.0, False))
        if now - asked_at < _ASK_WORKER_EVERY_S:
            return answered
        try:
            answered = bool(self._app.control.ping(destination=[worker], timeout=0.5, limit=1))
        except (OSError, KombuOperationalError, RedisError) as exc:  # the broker unreachable: no answer
            log.warning("Could not ping worker %s: %s", worker, exc)
            answered = False
        self._answers[worker] = (now, answered)
        return answered

    def workers_alive(self) -> bool:
        """Whether any worker answers a ping (asked at most every 10 s)."""
        now = time.monotonic()
        if now - self._pinged_at > _PING_EVERY_S:
            self._pinged_at = now
            try:
                self._alive = bool(self._app.control.ping(timeout=0.5))
            except (OSError, KombuOperationalError, RedisError) as exc:  # the broker unreachable: no worker
                log.warning("Could not ping the workers: %s", exc)
                self._alive = False
        return self._alive
