"""Which model a page gets, or the reason it cannot run (shown by the page, never hidden).

The chest X-ray weights are downloaded on first use (or from the page's button) with a progress
bar, once per process; then the cached load in ``ui.resources`` runs. Untrained weights are used
only when the reviewer or the settings allow them and no trained weights are installed.
"""

from __future__ import annotations

import logging
import threading

import streamlit as st

from core.errors import WeightsInvalid, WeightsMissing
from core.settings import Settings, load_settings
from inference.models.loader import LoadedModel
from inference.models.registry import CXR_DENSENET
from inference.models.weights import download_weights, find_weights_file
from ui import resources
from ui.session import ALLOW_UNTRAINED

log = logging.getLogger(__name__)

_download_lock = threading.Lock()


def untrained_allowed() -> bool:
    return load_settings().allow_untrained_weights or bool(st.session_state.get(ALLOW_UNTRAINED))


def try_download(settings: Settings) -> None:
    """Download the release weights with a progress bar (first use, or the page's button)."""
    spec = CXR_DENSENET
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
    """The chest X-ray model, or the reason it cannot run (shown by the page, never hidden)."""
    settings = load_settings()
    allow = untrained_allowed()
    missing = find_weights_file(CXR_DENSENET, settings) is None
    if missing and settings.auto_download_weights and CXR_DENSENET.model_id not in resources.download_attempts():
        try_download(settings)
    use_untrained = allow and find_weights_file(CXR_DENSENET, settings) is None
    try:
        return resources.classifier_model(CXR_DENSENET.model_id, use_untrained, str(settings.weights_dir))
    except (WeightsMissing, WeightsInvalid) as exc:
        return exc


def last_download_error() -> str | None:
    return resources.download_attempts().get(CXR_DENSENET.model_id)


def forget_download_attempt() -> None:
    resources.download_attempts().pop(CXR_DENSENET.model_id, None)


def seg_model(model_id: str):
    """A segmentation network, or the reason it cannot run (WeightsMissing / WeightsInvalid)."""
    from inference.models.seg_loader import find_seg_weights
    from inference.models.seg_registry import get_seg_spec

    settings = load_settings()
    use_untrained = untrained_allowed() and find_seg_weights(get_seg_spec(model_id), settings) is None
    try:
        return resources.segmentation_model(model_id, use_untrained, str(settings.weights_dir))
    except (WeightsMissing, WeightsInvalid) as exc:
        return exc
