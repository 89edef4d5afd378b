"""The API's routes. Every answer from a model names the model, its weights' sha256 and whether
they are trained, with a warning when they are not; refusals are JSON ``{"error": ...}`` with
the app's own messages: 401 without a valid token, 413 over the size limits, 422 for a file or a
parameter the tool cannot use, 503 when the model cannot be loaded (e.g. no weights)."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy.orm import Session, sessionmaker

from api.access import Access, AccessDenied, Caller, ProviderUnavailable
from api.metrics import Metrics
from api.models import LoadRecord, ModelPool
from core.errors import (
    BadParameter,
    InputRejected,
    InputTooLarge,
    InvalidReview,
    ReviewError,
    WeightsInvalid,
    WeightsMissing,
)
from core.jobs import JobRunner, Jobs
from core.settings import Settings
from inference.models.spec import ClassifierSpec
from inference.volume.types import Volume
from xai.cam import CAM_METHODS, CLOSED_FORM_METHOD
from xai.overlay import COLORMAPS, OPACITY_RANGE

log = logging.getLogger(__name__)

NOTICE = "Research and demonstration tool: not a cleared medical device. Not for diagnosis."
DEFAULT_MAX_BATCH = 32
# A multipart body carries its form fields and boundaries besides the file itself.
_FORM_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ApiConfig:
    settings: Settings
    access: Access
    max_batch: int = DEFAULT_MAX_BATCH
    allow_untrained: bool = False  # besides ALLOW_UNTRAINED_WEIGHTS=1

    @property
    def untrained_allowed(self) -> bool:
        return self.allow_untrained or self.settings.allow_untrained_weights


def caller(request: Request) -> Caller:
    """The request's caller by its bearer token (or loopback address); 401 otherwise."""
    access: Access = request.app.state.access
    who = access.check(request.headers.get("authorization"), request.client.host if request.client else None)
    log.debug("%s %s by %s", request.method, request.url.path, who.name)
    return who


Authorized = Annotated[Caller, Depends(caller)]
Colormap = Annotated[str, Form(description=f"one of {', '.join(COLORMAPS)}")]
Alpha = Annotated[float, Form(ge=OPACITY_RANGE[0], le=OPACITY_RANGE[1], description="heatmap opacity")]
Method = Annotated[str, Form(description=f"one of {', '.join(CAM_METHODS)}")]
Finding = Annotated[str | None, Form(description="the finding to explain (default: the highest ranked)")]
Model = Annotated[str | None, Form(description="a registered 2D classifier (default: the chest X-ray model)")]
Upload = Annotated[UploadFile, File(description="a chest radiograph: PNG, JPEG or DICOM")]
Volumes = Annotated[
    list[UploadFile],
    File(description="the 4 NIfTI files of a BraTS case, a NIfTI volume, or a DICOM series or its zip"),
]
ClassifierModel = Annotated[str, Form(description="a registered 2D classifier, e.g. brain-mri-tumour-4class")]


@dataclass
class HeatmapOptions:
    """What a heatmap call may choose, the same for one file and for a batch (form fields)."""

    colormap: Colormap = "jet"
    alpha: Alpha = 0.4
    finding: Finding = None
    method: Method = CLOSED_FORM_METHOD
    model: Model = None


Heatmap = Annotated[HeatmapOptions, Depends()]
Store = Annotated[
    bool,
    Form(description="keep the case for review: the run stored under the caller, its run_id in the answer"),
]


class VerdictIn(BaseModel):
    """A reader's verdict on one finding (or structure) of a stored run."""

    item: str = PydanticField(min_length=1, max_length=200, description="the finding's label or the structure's name")
    verdict: Literal["agree", "disagree", "unsure"]
    note: str | None = None
    reader_label: str | None = PydanticField(
        None, description="with disagree on a classifier of exclusive classes: the class the reader says it is"
    )


SegModel = Annotated[str | None, Form(description="a registered segmentation network (default: by the case)")]


class RunNotFound(Exception):
    """A run id that names no stored run (404)."""


def _status_of(exc: ReviewError) -> int:
    if isinstance(exc, InputTooLarge):
        return 413
    if isinstance(exc, InputRejected | BadParameter | InvalidReview):
        return 422
    if isinstance(exc, WeightsMissing | WeightsInvalid):
        return 503
    return 500


def _jpeg_base64(picture) -> str:
    """A heatmap picture as the app sends overlays: JPEG (smooth colour; for the 512 px NIH film
    0.5 ms against 8 ms as PNG, 2026-12-07), base64 for JSON."""
    from xai.overlay import jpeg_bytes

    return base64.b64encode(jpeg_bytes(picture)).decode("ascii")


def create_app(config: ApiConfig, inference_executor: Executor | None = None) -> FastAPI:
    """``inference_executor``: where the model calls run (``serve`` passes the main thread's; by
    default one thread of the app's own)."""
    settings = config.settings
    metrics = Metrics()

    def loaded(record: LoadRecord) -> None:
        metrics.model_load.labels(record.model_id).set(record.load_seconds)
        metrics.model_trained.labels(record.model_id).set(1 if record.trained else 0)

    pool = ModelPool(settings, allow_untrained=config.untrained_allowed, on_load=loaded)
    # Every model call on one thread, the main one under ``serve`` (see api.server.MainThreadExecutor):
    # requests queue for it, as they would for the two cores anyway.
    inference_thread = inference_executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    def on_inference_thread(endpoint):
        @functools.wraps(endpoint)
        async def run(*args, **kwargs):
            return await asyncio.get_running_loop().run_in_executor(
                inference_thread, functools.partial(endpoint, *args, **kwargs)
            )

        return run

    app = FastAPI(
        title="Radiology AI review: inference API",
        description=NOTICE,
        version="1",
    )
    app.state.pool = pool
    app.state.access = config.access
    app.state.access_description = config.access.describe()
    app.state.metrics = metrics
    single_limit = settings.max_upload_mb * 1_000_000 + _FORM_OVERHEAD
    batch_limit = settings.max_upload_mb * 1_000_000 * config.max_batch + _FORM_OVERHEAD
    # A BraTS case is 4 files; a DICOM series may come as many files or one zip, within the volume limit.
    volume_limit = settings.max_volume_upload_mb * 1_000_000 * 4 + _FORM_OVERHEAD

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        volumes = path.endswith(("/segment", "/classify"))
        limit = batch_limit if path.endswith("-batch") else volume_limit if volumes else single_limit
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response: Response = JSONResponse(
                {
                    "error": f"The request is {int(length) / 1e6:.1f} MB, over this endpoint's {limit / 1e6:.0f} MB limit."
                },
                status_code=413,
            )
        else:
            inference = path.startswith("/api/")
            if inference:
                metrics.in_flight.inc()
            try:
                response = await call_next(request)
            finally:
                if inference:
                    metrics.in_flight.dec()
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, request.method, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        if response.status_code >= 400:
            metrics.failures.labels(name, str(response.status_code)).inc()
        return response

    @app.exception_handler(ReviewError)
    async def review_error(request: Request, exc: ReviewError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status_of(exc))

    @app.exception_handler(RunNotFound)
    async def no_run(request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ProviderUnavailable)
    async def provider_down(request: Request, exc: ProviderUnavailable) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": problems, "detail": jsonable(exc.errors())}, status_code=422)

    def spec_of(model: str | None) -> ClassifierSpec:
        from inference.models.registry import get_classifier

        try:
            return get_classifier(model or settings.cxr_model_id)
        except KeyError as exc:
            raise BadParameter(str(exc).strip("'\"")) from None

    def analysed(spec: ClassifierSpec, upload: UploadFile):
        from core.deid import load_or_create_key
        from inference.images.bands import load_band_config
        from inference.images.ingest import load_image
        from pipelines.analyze import analyze
        from pipelines.classify import expected_image

        loaded_model = pool.get(spec)
        data = upload.file.read(settings.max_upload_mb * 1_000_000 + 1)
        image = load_image(
            data,
            upload.filename or "upload",
            max_bytes=settings.max_upload_mb * 1_000_000,
            max_pixels=settings.max_image_pixels,
            hash_key=load_or_create_key(settings.patient_key_file),
            expected=expected_image(spec),
            retain_characteristics=settings.retain_patient_characteristics,
        )
        return loaded_model, image, analyze(loaded_model, image, load_band_config(settings.bands_file))

    def kept_run(who: Caller, image, analysis, cam_method: str) -> int:
        """The analysis stored as a case run for review in the app, under the caller, and the
        de-identified radiograph kept in the image store where it is on (as the review page does);
        the same image, model and bands again return the same run."""
        from storage import repository

        store = state.store_or_none()
        if store is not None and not store.has(analysis.facts.input_sha256):
            store.put_image(image)
        with state.sessions().begin() as session:
            return repository.store_analysis(
                session,
                analysis.facts,
                analysis.prediction,
                cam_method,
                actor=who.name,
                params={"input": analysis.input},
                features=analysis.features,
            ).run_id

    def heatmap_answer(
        spec: ClassifierSpec, upload: UploadFile, options: HeatmapOptions, keep_for: Caller | None = None
    ) -> dict:
        from inference.images.preprocess import centre_crop_box
        from pipelines.heatmaps import check_drawing, drawn, heatmap_of
        from pipelines.summaries import analysis_summary, untrained_note

        check_drawing(options.colormap, options.alpha)
        started = time.perf_counter()
        loaded_model, image, analysis = analysed(spec, upload)
        heatmap = heatmap_of(loaded_model, analysis, options.finding, options.method)
        shown = analysis.prediction.finding(heatmap.label)
        answer: dict = {
            "file": upload.filename,
            **untrained_note(loaded_model.trained),
            **analysis_summary(analysis),
            "finding": {"label": shown.label, "score": round(shown.score, 6), "band": shown.band.value},
            "method": heatmap.method,
            "colormap": options.colormap,
            "alpha": options.alpha,
        }
        if heatmap.problem is not None:
            answer.update(heatmap_problem=heatmap.problem, overlay_jpeg_base64=None, heatmap_jpeg_base64=None)
        else:
            over, heat = drawn(analysis, heatmap, options.colormap, options.alpha)
            answer.update(overlay_jpeg_base64=_jpeg_base64(over), heatmap_jpeg_base64=_jpeg_base64(heat))
        box = centre_crop_box(image.shape)  # where the square lies on the image sent
        answer["square"] = {"top": box.top, "left": box.left, "size": box.size}
        if keep_for is not None:
            answer["run_id"] = kept_run(keep_for, image, analysis, heatmap.method)
        answer["processing_time_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        metrics.images.labels("heatmap").inc()
        return answer

    @app.get("/health")
    def health() -> dict:
        """Liveness, and what is loaded: each model's id, weights and whether they are trained."""
        from pipelines.summaries import untrained_note

        records = pool.records()
        return {
            "status": "ok",
            "ready": bool(records),
            "models": [
                {
                    "id": r.model_id,
                    "trained": r.trained,
                    "weights_sha256": r.weights_sha256,
                    "device": r.device,
                    "load_seconds": round(r.load_seconds, 2),
                    **untrained_note(r.trained),
                }
                for r in records
            ],
            "untrained_weights_allowed": config.untrained_allowed,
            "access": config.access.describe(),
            "notice": NOTICE,
        }

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        """200 once the default model is loaded (loading it now if need be), 503 with the reason
        when it cannot be (no weights and untrained mode not allowed)."""
        spec = spec_of(None)
        try:
            record = pool.get(spec)
        except ReviewError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=503)
        return JSONResponse({"ready": True, "model": spec.model_id, "trained": record.trained})

    @app.get("/metrics")
    def prometheus(who: Authorized) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/inference/predict")
    @on_inference_thread
    def predict(who: Authorized, file: Upload, model: Model = None, store: Store = False) -> dict:
        """The findings in bands, as ``python -m inference analyze --json`` prints them; with
        ``store``, kept for review (``run_id``)."""
        from pipelines.summaries import analysis_summary, untrained_note

        started = time.perf_counter()
        loaded_model, image, analysis = analysed(spec_of(model), file)
        metrics.images.labels("predict").inc()
        return {
            "file": file.filename,
            **untrained_note(loaded_model.trained),
            **analysis_summary(analysis),
            **({"run_id": kept_run(who, image, analysis, CLOSED_FORM_METHOD)} if store else {}),
            "processing_time_ms": round((time.perf_counter() - started) * 1000.0, 1),
        }

    @app.post("/api/inference/heatmap")
    @on_inference_thread
    def heatmap(who: Authorized, file: Upload, options: Heatmap, store: Store = False) -> dict:
        """One finding's heatmap over the square the model saw, and the heatmap alone, as base64
        JPEGs; with ``store``, the case kept for review (``run_id``)."""
        return heatmap_answer(spec_of(options.model), file, options, who if store else None)

    @app.post("/api/runs/{run_id}/verdicts")
    def verdict(who: Authorized, run_id: int, given: VerdictIn) -> dict:
        """A verdict on one finding or structure of a stored run, under the caller (a signed-in
        reader as the app stores them, or a service's key); it supersedes the caller's previous one
        on that item. The same verdict sent again (a retry) is stored once: the answer names the
        verdict already stored."""
        from core.vocabulary import Verdict
        from storage import repository

        if who.reviewer is None:
            raise AccessDenied(
                "A verdict is stored under who gave it: call with an API key or a sign-in access token "
                "(this loopback call names nobody)."
            )
        with state.sessions().begin() as session:
            if repository.get_run(session, run_id) is None:
                raise RunNotFound(f"Run {run_id} does not exist.")
            record = repository.record_verdict(
                session, run_id, given.item, Verdict(given.verdict), who.reviewer, given.note, None, given.reader_label
            )
        metrics.verdicts.inc()
        return {
            "verdict_id": record.verdict_id,
            "run_id": record.run_id,
            "item": record.item,
            "verdict": record.verdict.value,
            "note": record.note,
            "reader_label": record.reader_label,
            "reviewer": record.reviewer,
            "supersedes_id": record.supersedes_id,
            "created_at": record.created_at.isoformat(),
        }

    @app.post("/api/inference/heatmap-batch")
    @on_inference_thread
    def heatmap_batch(who: Authorized, files: Annotated[list[UploadFile], File()], options: Heatmap) -> JSONResponse:
        """Each file's heatmap, or its own error (a bad file does not stop the others)."""
        from pipelines.heatmaps import check_drawing

        if len(files) > config.max_batch:
            return JSONResponse(
                {"error": f"{len(files)} files in one batch; at most {config.max_batch}."}, status_code=413
            )
        check_drawing(options.colormap, options.alpha)
        spec = spec_of(options.model)
        pool.get(spec)  # a model that cannot load fails the batch once, not each file
        started = time.perf_counter()
        results = []
        for upload in files:
            try:
                results.append(heatmap_answer(spec, upload, options))
            except (InputRejected, BadParameter) as exc:
                metrics.failures.labels("/api/inference/heatmap-batch", "file").inc()
                results.append({"file": upload.filename, "error": str(exc), "status": _status_of(exc)})
        failed = sum("error" in r for r in results)
        return JSONResponse(
            {
                "results": results,
                "succeeded": len(results) - failed,
                "failed": failed,
                "total_processing_time_ms": round((time.perf_counter() - started) * 1000.0, 1),
            }
        )

    state = _JobState(settings)
    app.state.database_url = settings.database_url
    metrics.queued.set_function(lambda: float(state.jobs().waiting()))

    @app.post("/api/inference/segment", status_code=202)
    @on_inference_thread
    def segment(who: Authorized, files: Volumes, model: SegModel = None) -> dict:
        """Segment an MRI/CT case in the background (on the workers where ``WORKER_BROKER_URL`` is
        set): 202 with the job's id; ``GET /api/jobs/{id}`` follows it. The run is stored, as the
        MRI/CT page stores it, and reviewable in the app."""
        from core.deid import load_or_create_key
        from inference.models.loader import weights_identity
        from inference.volume.case import case_facts
        from pipelines.job_bodies import segment_and_store, segmentation_key
        from pipelines.summaries import untrained_note
        from pipelines.volume_inputs import read_case, segmenter_for

        inputs = read_case(_read_volume_files(files, settings), settings, load_or_create_key(settings.patient_key_file))
        spec = segmenter_for(inputs, model)
        facts = case_facts(inputs)
        jobs = state.jobs()
        if jobs.remote is not None:  # the workers run it; this process never loads the network
            sha, trained = weights_identity(spec, settings, allow_untrained=config.untrained_allowed)
            key = segmentation_key(inputs.input_sha256, spec.model_id, sha)
            jobs.remote.submit_segmentation(
                key, state.store_or_none(), inputs, spec.model_id, sha, trained, facts, who.name
            )
        else:
            loaded_model = pool.get(spec)
            sha, trained = loaded_model.weights_sha256, loaded_model.trained
            key = segmentation_key(inputs.input_sha256, spec.model_id, sha)
            sessions, store = state.sessions(), state.store_or_none()

            def work(progress):
                return segment_and_store(sessions, inputs, loaded_model, facts, who.name, progress, store)

            jobs.local.submit(key, work)
        return {
            "job_id": key,
            "status_url": f"/api/jobs/{key}",
            "model": {"id": spec.model_id, "weights_sha256": sha, "trained": trained},
            **untrained_note(trained),
        }

    @app.post("/api/inference/classify", response_model=None)
    @on_inference_thread
    def classify(who: Authorized, files: Volumes, model: ClassifierModel) -> dict | JSONResponse:
        """A registered 2D classifier (the brain MRI models) on one slice (PNG, JPEG or DICOM): 200
        with each class in its band; on a volume (a NIfTI, a DICOM series or its zip): 202 with a
        job id, the volume classified slice by slice in the background."""
        from core.deid import load_or_create_key
        from inference.images.bands import load_band_config
        from inference.models.loader import weights_identity
        from pipelines.summaries import slice_summary, untrained_note, volume_classification
        from pipelines.volume_inputs import read_case

        spec = spec_of(model)
        names = [(f.filename or "upload").lower() for f in files]
        is_volume = len(files) > 1 or names[0].endswith((".nii", ".nii.gz", ".zip"))
        if not is_volume:
            started = time.perf_counter()
            loaded_model, _, analysis = analysed(spec, files[0])
            metrics.images.labels("classify").inc()
            return {
                "file": files[0].filename,
                **untrained_note(loaded_model.trained),
                **slice_summary(analysis, exclusive=spec.exclusive),
                "processing_time_ms": round((time.perf_counter() - started) * 1000.0, 1),
            }
        inputs = read_case(_read_volume_files(files, settings), settings, load_or_create_key(settings.patient_key_file))
        if not isinstance(inputs, Volume):
            raise BadParameter("One volume is classified at a time, not a set of MRI channels.")
        jobs = state.jobs()
        if jobs.remote is not None:  # the workers run it; this process never loads the network
            sha, trained = weights_identity(spec, settings, allow_untrained=config.untrained_allowed)
            key = f"classify:{inputs.input_sha256}:{spec.model_id}:{sha}"
            jobs.remote.submit_volume_classification(key, state.store_or_none(), inputs, spec.model_id, sha, trained)
        else:
            loaded_model = pool.get(spec)
            sha, trained = loaded_model.weights_sha256, loaded_model.trained
            key = f"classify:{inputs.input_sha256}:{spec.model_id}:{sha}"
            bands = load_band_config(settings.bands_file)

            def work(progress):
                return volume_classification(inputs, loaded_model, bands)

            jobs.local.submit(key, work)
        return JSONResponse(
            {
                "job_id": key,
                "status_url": f"/api/jobs/{key}",
                "model": {"id": spec.model_id, "weights_sha256": sha, "trained": trained},
                **untrained_note(trained),
            },
            status_code=202,
        )

    @app.get("/api/jobs/{job_id}")
    def job(who: Authorized, job_id: str) -> JSONResponse:
        """A background job: queued or running (with its progress), done (with its result) or failed."""
        found = state.jobs().get(job_id)
        if found is None:
            return JSONResponse({"error": f"No job {job_id} (finished jobs are kept for a while only)."}, 404)
        if not found.done:
            return JSONResponse(
                {
                    "job_id": job_id,
                    "state": "queued" if found.queued else "running",
                    "progress": found.progress,
                    "message": found.message,
                }
            )
        if found.error is not None:
            return JSONResponse({"job_id": job_id, "state": "failed", "error": found.error})
        return JSONResponse({"job_id": job_id, "state": "done", "result": _job_result(found.result)})

    return app


class _JobState:
    """The API process's background jobs, database and image store, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jobs: Jobs | None = None
        self._sessions: sessionmaker[Session] | None = None

    def jobs(self) -> Jobs:
        if self._jobs is None:
            local = JobRunner(parallel=1)
            if not self._settings.worker_broker_url:
                self._jobs = Jobs(local)
            else:
                from pipelines.kept_volumes import stored_segmentation
                from workers.client import RemoteJobs

                def segmentation(answer: dict):
                    return stored_segmentation(self.sessions().begin, self.store_or_none(), int(answer["run_id"]))

                def classification(answer: dict) -> dict:
                    return dict(answer["classification"])

                remote = RemoteJobs(self._settings, {"segment": segmentation, "classify": classification})
                self._jobs = Jobs(local, remote, on_remote=("segment:", "classify:"))
        return self._jobs

    def sessions(self):
        if self._sessions is None:
            from storage.db import open_database

            self._sessions = open_database(self._settings.database_url)
        return self._sessions

    def store_or_none(self):
        from storage.image_store import ImageStore

        if not self._settings.image_store:
            return None
        return ImageStore(self._settings.image_store_dir, self._settings.image_retention_days)


def _read_volume_files(files: list[UploadFile], settings: Settings) -> list[tuple[str, bytes]]:
    limit = settings.max_volume_upload_mb * 1_000_000
    read = []
    for upload in files:
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise InputTooLarge(f"{upload.filename} is over the {limit / 1e6:.0f} MB volume upload limit.")
        read.append((upload.filename or "upload", data))
    return read


def _job_result(result) -> dict:
    """A finished job's answer: a volume's classification as it is; for a segmentation, the
    stored run, the model and each structure measured."""
    from inference.volume.measure import measurements_table
    from pipelines.summaries import model_facts, untrained_note

    if isinstance(result, dict):
        return {**untrained_note(result["model"]["trained"]), **result}
    segmentation, run_id = result
    return {
        "run_id": run_id,
        "model": model_facts(segmentation.model),
        **untrained_note(segmentation.model.trained),
        "structures": measurements_table(segmentation.measurements),
        "volumes_ml": {m.name: round(m.volume_ml, 3) for m in segmentation.measurements},
        "params": dict(segmentation.params),
    }


def jsonable(errors) -> list:
    """Validation errors without the non-JSON parts pydantic may put in ``ctx``."""
    out = []
    for e in errors:
        entry = {k: v for k, v in e.items() if k in ("loc", "msg", "type")}
        entry["loc"] = [str(p) for p in entry.get("loc", ())]
        out.append(entry)
    return out


def default_secrets_file() -> Path:
    """Streamlit's own project secrets file, which the app's sign-in reads too."""
    from core.settings import PROJECT_ROOT

    return PROJECT_ROOT / ".streamlit" / "secrets.toml"
