"""The one Streamlit-aware module that owns caching.

* Models and the database sessionmaker: ``st.cache_resource`` (one per process, shared by every
  session; ``LoadedModel`` guards its hook-based CAM methods with a lock).
* Per-case results: ``st.cache_data`` keyed by the input's sha256 and every parameter that
  changes the result (model id, weights hash, bands version, CAM method, label).

Exceptions are never cached, so a fixed problem (weights put in place) is picked up on the next
rerun without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.deid import KEY_ENV, load_or_create_key
from core.errors import ReviewError, WeightsInvalid, WeightsMissing
from core.settings import Settings, load_settings
from inference.images.bands import BandConfig, load_band_config
from inference.models.loader import LoadedModel, load_model
from inference.models.registry import CXR_DENSENET
from inference.models.weights import download_weights, find_weights_file

log = logging.getLogger(__name__)

_download_lock = threading.Lock()


@st.cache_resource(show_spinner="Loading the chest X-ray model…")
def _classifier(model_id: str, allow_untrained: bool, weights_dir: str) -> LoadedModel:
    settings = load_settings()
    return load_model(CXR_DENSENET, settings, allow_untrained=allow_untrained)


@st.cache_resource(show_spinner=False)
def _download_attempts() -> dict[str, str]:
    """model id -> why the automatic download failed, so it is tried once per process."""
    return {}


def untrained_allowed() -> bool:
    return load_settings().allow_untrained_weights or bool(st.session_state.get("allow_untrained"))


def try_download(settings: Settings) -> None:
    """Download the release weights with a progress bar (first use, or the page's button)."""
    spec = CXR_DENSENET
    with _download_lock:
        if find_weights_file(spec, settings) is not None:
            return
        bar = st.progress(0.0, text=f"Downloading weights for {spec.display_name}…")
        try:
            download_weights(spec, settings, progress=lambda f, text: bar.progress(f, text=text))
            _download_attempts().pop(spec.model_id, None)
        except (WeightsMissing, WeightsInvalid) as exc:
            _download_attempts()[spec.model_id] = str(exc)
            log.warning("Weights download failed: %s", exc)
        except OSError as exc:  # disk full, weights folder not writable
            _download_attempts()[spec.model_id] = f"the weights could not be saved ({exc.strerror or exc})."
            log.warning("Weights download could not be saved: %s", exc)
        finally:
            bar.empty()


def classifier() -> LoadedModel | WeightsMissing | WeightsInvalid:
    """The chest X-ray model, or the reason it cannot run (shown by the page, never hidden)."""
    settings = load_settings()
    allow = untrained_allowed()
    missing = find_weights_file(CXR_DENSENET, settings) is None
    if missing and settings.auto_download_weights and CXR_DENSENET.model_id not in _download_attempts():
        try_download(settings)
    use_untrained = allow and find_weights_file(CXR_DENSENET, settings) is None
    try:
        return _classifier(CXR_DENSENET.model_id, use_untrained, str(settings.weights_dir))
    except (WeightsMissing, WeightsInvalid) as exc:
        return exc


def last_download_error() -> str | None:
    return _download_attempts().get(CXR_DENSENET.model_id)


def forget_download_attempt() -> None:
    _download_attempts().pop(CXR_DENSENET.model_id, None)


@st.cache_resource(show_spinner=False)
def _sessionmaker(url: str) -> sessionmaker[Session]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from core.errors import StorageError
    from storage.db import open_database

    try:
        return open_database(url)
    except (OSError, SQLAlchemyError) as exc:
        where = make_url(url).render_as_string(hide_password=True)
        log.exception("Cannot open the review database at %s", where)
        raise StorageError(
            f"The review database at {where} cannot be opened ({type(exc).__name__}), so nothing can be "
            "stored. Check DATABASE_URL and that the folder is writable, or tell IT."
        ) from exc


def database() -> sessionmaker[Session]:
    return _sessionmaker(load_settings().database_url)


@contextmanager
def transaction() -> Iterator[Session]:
    """A database transaction whose failures reach the page as a StorageError it can show."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from core.errors import StorageError

    try:
        with database().begin() as session:
            yield session
    except (OperationalError, PoolTimeout) as exc:  # a SQLite file's writers queue for its one pooled connection
        log.exception("Database unavailable")
        raise StorageError(
            "The review database is busy or unavailable, so nothing was saved. Try again in a moment; "
            "if it persists, tell IT (details are in the server log)."
        ) from exc
    except SQLAlchemyError as exc:
        if isinstance(exc.__cause__, ReviewError) or isinstance(exc, ReviewError):
            raise
        log.exception("Database error")
        raise StorageError(
            "The review database refused the change, so nothing was saved (details are in the server log)."
        ) from exc


@st.cache_resource(show_spinner=False)
def _band_config(path: str, mtime_ns: int) -> BandConfig:
    from pathlib import Path

    return load_band_config(Path(path))


def band_config() -> BandConfig:
    path = load_settings().bands_file
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _band_config(str(path), mtime)


def _secret_key() -> str | None:
    try:
        value = st.secrets.get(KEY_ENV)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None
    return str(value) if value else None


@st.cache_resource(show_spinner=False)
def _patient_hash_key(key_file: str, secret: str | None) -> bytes:
    from pathlib import Path

    return load_or_create_key(Path(key_file), secret)


def patient_hash_key() -> bytes:
    return _patient_hash_key(str(load_settings().patient_key_file), _secret_key())


@st.cache_data(max_entries=128, show_spinner="Reading the image and running the model…")
def case_analysis(
    input_sha256: str,
    filename: str,
    model_id: str,
    weights_sha256: str,
    bands_version: str,
    _data: bytes,
    _loaded: LoadedModel,
    _bands: BandConfig,
):
    """Decode, predict and compute every Grad-CAM for one upload; cached per input and model."""
    from inference.images.ingest import load_image
    from pipelines.analyze import analyze

    settings = load_settings()
    image = load_image(
        _data,
        filename,
        max_bytes=settings.max_upload_mb * 1_000_000,
        max_pixels=settings.max_image_pixels,
        hash_key=patient_hash_key(),
    )
    return analyze(_loaded, image, _bands)


@st.cache_data(max_entries=512, show_spinner="Computing the heatmap…")
def cam_map(
    input_sha256: str,
    weights_sha256: str,
    method: str,
    label_index: int,
    _loaded: LoadedModel,
    _model_input: np.ndarray,
) -> np.ndarray:
    """One label's heatmap for a pytorch-grad-cam method other than the closed-form Grad-CAM."""
    from xai.cam import pgc_cam

    return pgc_cam(_loaded, _model_input, method, label_index)


@st.cache_resource(max_entries=64, show_spinner=False)
def band_figure(run_key: str, _findings: tuple, _thresholds: dict, trained: bool):
    """The findings chart for one stored run, built once (Plotly validation is the slow part).
    Shared read-only: ``st.plotly_chart`` serialises a copy and never mutates it."""
    from ui.widgets.charts import band_chart

    return band_chart(_findings, _thresholds, trained)


@st.cache_resource(max_entries=64, show_spinner=False)
def volume_figure(run_key: str, _names: tuple, _volumes_ml: tuple, _colours: tuple, caption: str):
    """The structure-volume chart of one stored segmentation run, built once (shared read-only)."""
    from ui.widgets.charts import volume_chart

    return volume_chart(_names, _volumes_ml, _colours, caption)


@st.cache_resource(show_spinner=False)
def jobs():
    """Background computations shared by all sessions (one at a time: each uses every core)."""
    from core.jobs import JobRunner

    return JobRunner(parallel=1)


@st.cache_resource(show_spinner="Loading the chest anatomy segmentation…")
def _anatomy_model(weights_dir: str, present: bool):
    from pathlib import Path

    from xai.anatomy import load_anatomy_model

    return load_anatomy_model(Path(weights_dir)) if present else None


def anatomy_model():
    """torchxrayvision's anatomy segmentation when its weights are installed, else None (grid regions)."""
    from xai.anatomy import PSPNET_FILENAME

    weights_dir = load_settings().weights_dir
    return _anatomy_model(str(weights_dir), (weights_dir / PSPNET_FILENAME).is_file())


@st.cache_data(max_entries=128, show_spinner="Segmenting the anatomy…")
def anatomy_regions(input_sha256: str, _image: np.ndarray):
    """The anatomical regions of one case (computed once; the segmentation takes seconds)."""
    from xai.anatomy import choose_regions

    return choose_regions(anatomy_model(), _image)[0]


def region_shap_key(input_sha256: str, weights_sha256: str, run_id: int) -> str:
    return f"region-shap:{input_sha256}:{weights_sha256}:{run_id}"


def start_region_shap(analysis, loaded: LoadedModel, run_id: int):
    """Start (or join) the region SHAP job for a case; it stores its result with the run."""
    from pipelines.analyze import score_batch
    from storage import repository
    from xai.anatomy import choose_regions
    from xai.region_shap import explain_regions, warm_up

    database_sessions = database()
    image = analysis.model_input[0, 0]
    segmentation = anatomy_model()

    def work(progress):
        progress(0.0, "preparing SHAP (the first run in this server compiles its kernels, ~10 s)")
        warm_up()
        regions, note = choose_regions(segmentation, image)
        if note:
            log.info(note)
        result = explain_regions(score_batch(loaded), image, regions, loaded.spec.labels, progress=progress)
        with database_sessions.begin() as session:
            repository.store_region_explanation(session, run_id, result)
        return result

    return jobs().submit(region_shap_key(analysis.facts.input_sha256, loaded.weights_sha256, run_id), work)


@st.cache_data(max_entries=512, show_spinner="Checking how much the score depends on the highlighted pixels…")
def faithfulness(
    input_sha256: str,
    weights_sha256: str,
    methods: tuple[str, ...],
    label_index: int,
    _loaded: LoadedModel,
    _model_input: np.ndarray,
    _cams: tuple[np.ndarray, ...],
):
    from pipelines.analyze import score_batch
    from xai.faithfulness import faithfulness_of

    return faithfulness_of(score_batch(_loaded), _model_input[0, 0], dict(zip(methods, _cams)), label_index)


# --- Volumes (MRI / CT) ------------------------------------------------------------------------
# Volumes are hundreds of MB, so they live in cache_resource (shared, never copied or pickled on a
# rerun) and their arrays are read-only. Keys are the uploads' file ids, which are random per upload,
# so one session cannot reach another's volume by guessing.


def upload_key(uploads) -> str:
    return "|".join(f"{u.file_id}:{u.size}" for u in uploads)


def _contents(uploads) -> list[tuple[str, bytes]]:
    # Read only on a cache miss: getvalue() copies the upload, hundreds of MB for a CT series.
    return [(u.name, u.getvalue()) for u in uploads]


@st.cache_resource(max_entries=4, ttl=4 * 3600, show_spinner="Reading the volume…")
def volume(key: str, _uploads: tuple):
    """One NIfTI, a DICOM series (files or a zip) or a multi-frame DICOM as a canonical Volume."""
    from inference.volume.ingest import load_volume

    settings = load_settings()
    return load_volume(
        _contents(_uploads),
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
        hash_key=patient_hash_key(),
    )


@st.cache_resource(max_entries=2, ttl=4 * 3600, show_spinner="Reading the four MRI channels…")
def mri_channels(key: str, assignment: tuple[tuple[str, str], ...], _uploads: tuple):
    """The BraTS channels (T1c, T1, T2, FLAIR) on one grid, from the reviewer's file assignment."""
    from inference.volume.ingest import load_mri_channels

    settings = load_settings()
    by_name = dict(_contents(_uploads))
    chosen = {channel: (name, by_name[name]) for channel, name in assignment}
    return load_mri_channels(
        chosen,
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
        hash_key=patient_hash_key(),
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def mr_window(volume_sha256: str, _data: np.ndarray) -> tuple[float, float]:
    """The percentile window of one MR volume, computed once (it reads the whole volume)."""
    from inference.volume.windowing import percentile_window

    return percentile_window(_data)


@st.cache_resource(show_spinner="Loading the segmentation model…")
def _seg_model(model_id: str, allow_untrained: bool, weights_dir: str):
    from inference.models.seg_loader import load_seg_model
    from inference.models.seg_registry import get_seg_spec

    return load_seg_model(get_seg_spec(model_id), load_settings(), allow_untrained=allow_untrained)


def seg_model(model_id: str):
    """A segmentation network, or the reason it cannot run (WeightsMissing / WeightsInvalid)."""
    from inference.models.seg_loader import find_seg_weights
    from inference.models.seg_registry import get_seg_spec

    settings = load_settings()
    use_untrained = untrained_allowed() and find_seg_weights(get_seg_spec(model_id), settings) is None
    try:
        return _seg_model(model_id, use_untrained, str(settings.weights_dir))
    except (WeightsMissing, WeightsInvalid) as exc:
        return exc


def segmentation_key(input_sha256: str, model_id: str, weights_sha256: str) -> str:
    return f"segment:{input_sha256}:{model_id}:{weights_sha256}"


def start_segmentation(inputs, loaded, facts, actor: str | None):
    """Segment a case in the background (progress per window), measure it and store the run.
    The job's result is (Segmentation, stored run id); the same case and weights join the same job."""
    from inference.volume.measure import measure_structures
    from inference.volume.segment import segment
    from storage import segmentation_repository

    database_sessions = database()

    def work(progress):
        result = segment(inputs, loaded, progress=progress)
        progress(0.99, "measuring the structures")
        labels = result.label_map
        result = replace(result, measurements=measure_structures(labels.data, labels.affine, labels.structures))
        with database_sessions.begin() as session:
            run = segmentation_repository.store_segmentation(session, facts, result, actor=actor)
        return result, run.run_id

    key = segmentation_key(inputs.input_sha256, loaded.spec.model_id, loaded.weights_sha256)
    return jobs().submit(key, work)


@st.cache_resource(max_entries=8, ttl=4 * 3600, show_spinner="Reading the mask…")
def uploaded_mask(key: str, volume_sha256: str, threshold: float | None, _mask, _legend, _volume):
    """A label map from another tool on this volume's grid, measured once."""
    from inference.masks.load import load_label_map
    from inference.volume.case import uploaded_segmentation

    settings = load_settings()
    legend = _contents([_legend])[0] if _legend is not None else None
    label_map = load_label_map(
        _contents([_mask]),
        _volume,
        legend=legend,
        threshold=threshold,
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
    )
    return uploaded_segmentation(label_map, _volume)
