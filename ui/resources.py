"""What lives once per process, shared by every session (``st.cache_resource``).

* The models: the chest X-ray classifier, the segmentation networks and the anatomy segmentation
  (``LoadedModel`` guards its hook-based CAM methods with a lock). Only the cached loads live here;
  which model a page gets (first-use download, the untrained fallback) is ``ui.models``.
* The database sessionmaker, the band configuration, the patient-hash key and the background-job
  runner.

Nothing here draws on the page or writes to the database. Exceptions are never cached, so a fixed
problem (weights put in place) is picked up on the next rerun without a restart.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from core.deid import KEY_ENV, load_or_create_key
from core.jobs import JobRunner, Jobs
from core.settings import load_settings
from inference.images.bands import BandConfig, load_band_config
from inference.models.loader import LoadedModel, ModelRef, load_model, model_ref
from inference.models.registry import get_spec
from storage.image_store import ImageStore

log = logging.getLogger(__name__)


# --- Models ------------------------------------------------------------------------------------
# The arguments are the cache key: the model id, whether untrained weights were allowed, and the
# weights folder (``load_settings()`` reads the same folder inside).


@st.cache_resource(show_spinner="Loading the model…")
def model(model_id: str, allow_untrained: bool, weights_dir: str) -> LoadedModel:
    """Any registered model, loaded once per process (classifiers and segmentation networks alike)."""
    return load_model(get_spec(model_id), load_settings(), allow_untrained=allow_untrained)


@st.cache_resource(show_spinner=False)
def model_reference(model_id: str, allow_untrained: bool, weights_dir: str) -> ModelRef:
    """A model the workers run: its weights' identity, once per process (the network stays there)."""
    return model_ref(get_spec(model_id), load_settings(), allow_untrained=allow_untrained)


@st.cache_resource(show_spinner="Loading the chest anatomy segmentation…")
def _anatomy_model(weights_dir: str, present: bool):
    from xai.anatomy import load_anatomy_model

    return load_anatomy_model(Path(weights_dir)) if present else None


def anatomy_model():
    """torchxrayvision's anatomy segmentation when its weights are installed, else None (grid regions)."""
    from xai.anatomy import PSPNET_FILENAME

    weights_dir = load_settings().weights_dir
    return _anatomy_model(str(weights_dir), (weights_dir / PSPNET_FILENAME).is_file())


@st.cache_resource(show_spinner=False)
def download_attempts() -> dict[str, str]:
    """model id -> why the automatic download failed, so it is tried once per process."""
    return {}


# --- Database, configuration, keys, jobs -------------------------------------------------------


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
    """The sessionmaker of the configured database (pages use ``ui.database.transaction``)."""
    return _sessionmaker(load_settings().database_url)


@st.cache_resource(show_spinner=False)
def _band_config(path: str, mtime_ns: int) -> BandConfig:
    return load_band_config(Path(path))


def band_config() -> BandConfig:
    """The score bands, re-read when the bands file changes (its mtime is part of the key)."""
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
    return load_or_create_key(Path(key_file), secret)


def patient_hash_key() -> bytes:
    """The key patient identifiers are hashed with: the secret when set, else the key file."""
    return _patient_hash_key(str(load_settings().patient_key_file), _secret_key())


@st.cache_resource(show_spinner=False)
def jobs() -> Jobs:
    """Background computations shared by all sessions (in this process one at a time: each uses
    every core)."""
    settings = load_settings()
    if not settings.worker_broker_url:
        return Jobs(JobRunner(parallel=1))
    from pipelines.kept_volumes import stored_segmentation
    from workers.client import RemoteJobs

    def segmentation(answer: dict):
        return stored_segmentation(database().begin, image_store(), int(answer["run_id"]))

    def explanation(answer: dict) -> int:
        return int(answer["run_id"])  # the page reads the explanation stored with the run

    log.info("Segmentation and region SHAP go to the workers on %s", settings.worker_broker_url.split("@")[-1])
    remote = RemoteJobs(settings, {"segment": segmentation, "region-shap": explanation})
    return Jobs(JobRunner(parallel=1), remote, on_remote=("segment:", "region-shap:"))


@st.cache_resource(ttl=3600, show_spinner=False)
def _image_store(root: str, retention_days: int) -> ImageStore:
    """Opened at most once an hour per folder; each opening deletes the images past retention."""
    store = ImageStore(Path(root), retention_days)
    store.purge_expired()
    return store


def image_store() -> ImageStore | None:
    """The de-identified image store, or None when the configuration turns it off."""
    settings = load_settings()
    if not settings.image_store:
        return None
    return _image_store(str(settings.image_store_dir), settings.image_retention_days)


@st.cache_resource(show_spinner=False)
def untrained_choices() -> set[str]:
    """Model ids someone chose to run on untrained weights, for this server process (every tab and
    reviewer, until a restart; ``ALLOW_UNTRAINED_WEIGHTS=1`` makes it the standing choice). The
    choice is per model and audited; every output of such a model is labelled untrained."""
    return set()


@st.cache_resource(show_spinner=False)
def pacs_sender() -> ThreadPoolExecutor:
    """The thread that sends results to the PACS automatically, one send at a time, in order: a
    reader's later change is sent after the earlier one, and a slow PACS never holds up a page."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="pacs-send")
