"""Which model a page gets, or the reason it cannot run (shown by the page, never hidden).

The chest X-ray weights are downloaded on first use (or from the page's button) with a progress
bar, once per process; then the cached load in ``ui.resources`` runs. Untrained weights are used
only when the reviewer or the settings allow them and no trained weights are installed.
"""

from __future__ import annotations

import logging
import threading

import streamlit as st

from core.errors import ConfigError, WeightsInvalid, WeightsMissing
from core.settings import Settings, load_settings
from inference.models.loader import LoadedModel, ModelRef
from inference.models.registry import get_classifier, get_segmenter
from inference.models.spec import ClassifierSpec, ModelSpec
from inference.models.weights import download_weights, find_weights_file
from ui import resources

log = logging.getLogger(__name__)

_download_lock = threading.Lock()


def untrained_allowed(spec: ModelSpec) -> bool:
    """Whether ``spec`` may run on untrained weights: the settings say so for every model, or
    someone chose it for this model on this server (not per tab: a reload or a new tab keeps it)."""
    return load_settings().allow_untrained_weights or spec.model_id in resources.untrained_choices()


def choose_untrained(spec: ModelSpec, actor: str | None) -> None:
    """Run ``spec`` on labelled untrained weights from now on, for every session of this server;
    recorded in the audit trail."""
    from storage import audit
    from ui import database

    resources.untrained_choices().add(spec.model_id)
    with database.transaction() as session:
        audit.record_event(session, "untrained_weights_chosen", actor or audit.SYSTEM, model=spec.model_id)
    log.warning("Untrained weights chosen for %s by %s", spec.model_id, actor or "an unnamed user")


def classifier_spec() -> ClassifierSpec:
    """The classifier the chest X-ray review runs (``CXR_MODEL_ID``; the torchxrayvision DenseNet by default)."""
    model_id = load_settings().cxr_model_id
    try:
        return get_classifier(model_id)
    except KeyError as exc:
        raise ConfigError(f"CXR_MODEL_ID={model_id!r} is not a registered classifier ({exc.args[0]})") from None


def loaded(spec: ModelSpec) -> LoadedModel | WeightsMissing | WeightsInvalid:
    """Any registered model, or the reason it cannot run (shown by the page, never hidden)."""
    return _held(spec, resources.model)


def _held(spec: ModelSpec, hold):
    """``hold(model_id, use_untrained, weights_dir)`` (the loaded network, or only its weights'
    identity), untrained only where chosen and no weights are installed; or the reason it cannot run."""
    settings = load_settings()
    use_untrained = untrained_allowed(spec) and find_weights_file(spec, settings) is None
    try:
        return hold(spec.model_id, use_untrained, str(settings.weights_dir))
    except (WeightsMissing, WeightsInvalid) as exc:
        return exc


def try_download(settings: Settings) -> None:
    """Download the release weights with a progress bar (first use, or the page's button)."""
    spec = classifier_spec()
    with _download_lock:
        if find_weights_file(spec, settings) is not None:
            return
        bar = st.progress(0.0, text=f"Downloading weights for {spec.display_name}…")

        def report(fraction: float, text: str) -> None:
            bar.progress(fraction, text=text)

        try:
            download_weights(spec, settings, progress=report)
            resources.download_attempts().pop(spec.model_id, None)
        except (WeightsMissing, WeightsInvalid) as exc:
            resources.download_attempts()[spec.model_id] = str(exc)
            log.warning("Weights download failed: %s", exc)
        except OSError as exc:  # disk full, weights folder not writable
            resources.download_attempts()[spec.model_id] = f"the weights could not be saved ({exc.strerror or exc})."
            log.warning("Weights download could not be saved: %s", exc)
        finally:
            bar.empty()


def classifier() -> LoadedModel | WeightsMissing | WeightsInvalid:
    """The default chest X-ray classifier (``CXR_MODEL_ID``'s), or the reason it cannot run; it
    downloads its published weights on first use, except where ALLOW_UNTRAINED_WEIGHTS=1 has asked
    for labelled untrained weights instead (a demo or a test server: it waited on the network and
    logged a failed download first). Another registered model is ``loaded(spec)``."""
    settings = load_settings()
    spec = classifier_spec()
    missing = find_weights_file(spec, settings) is None
    wants_download = settings.auto_download_weights and not settings.allow_untrained_weights
    if missing and wants_download and spec.model_id not in resources.download_attempts():
        try_download(settings)
    return loaded(spec)


def last_download_error() -> str | None:
    return resources.download_attempts().get(classifier_spec().model_id)


def forget_download_attempt() -> None:
    resources.download_attempts().pop(classifier_spec().model_id, None)


def seg_model(model_id: str) -> LoadedModel | ModelRef | WeightsMissing | WeightsInvalid:
    """A segmentation network, or the reason it cannot run. Where the workers segment
    (``WORKER_BROKER_URL``), only its weights' identity: the network is loaded there, not here."""
    spec = get_segmenter(model_id)
    return _held(spec, resources.model if resources.jobs().remote is None else resources.model_reference)


def classifier_of_run(model_id: str) -> LoadedModel | WeightsMissing | WeightsInvalid | None:
    """The classifier a stored run was made with (the chest X-ray model, or a brain MRI model), or
    the reason it cannot run; None when that model is no longer registered."""
    if model_id == classifier_spec().model_id:
        return classifier()
    try:
        spec = get_classifier(model_id)
    except KeyError:
        return None
    return loaded(spec)
