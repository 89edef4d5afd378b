"""What the background jobs do: run a model on one case and store the result with its run.

Plain functions (no Streamlit): ``ui.background`` starts them in ``core.jobs`` threads and the
pages poll the job. ``sessions`` is the sessionmaker bound when the job was started, since the job
runs outside the page's script thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from core.types import CaseFacts
from inference.models.loader import LoadedModel

if TYPE_CHECKING:
    from inference.models.loader import LoadedModel
    from inference.volume.types import MultiChannelVolume, Segmentation, Volume
    from storage.image_store import ImageStore
    from xai.region_shap import RegionExplanation

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def segmentation_key(input_sha256: str, model_id: str, weights_sha256: str) -> str:
    """One segmentation job per input, model and weights, in a process and across replicas."""
    return f"segment:{input_sha256}:{model_id}:{weights_sha256}"


def import_region_shap_libraries() -> None:
    """Import what the region SHAP job imports, in the caller's thread (the page's run), before the
    job starts. Importing shap calls ``ast.parse`` about a hundred times (``inspect.signature`` of
    builtins), and on CPython 3.11 (3.11.7 here) the AST converter's recursion counter is shared
    by all threads: a page script parsed at the same moment in another thread failed with
    "AST constructor recursion depth mismatch" (a fresh-clone CI run, 2026-12-06)."""
    import shap  # noqa: F401

    import pipelines.analyze  # noqa: F401
    import xai.anatomy
    import xai.region_shap  # noqa: F401


def explain_regions_and_store(
    sessions: sessionmaker[Session],
    run_id: int,
    loaded: LoadedModel,
    image: np.ndarray,
    segmentation: Any,
    progress: Progress,
) -> RegionExplanation:
    """Region SHAP of one X-ray (``image``, the model input's plane) for every finding, stored with
    run ``run_id``. ``segmentation`` is the anatomy model, or None for the fixed grid."""
    from pipelines.analyze import score_batch
    from storage import repository
    from xai.anatomy import choose_regions
    from xai.region_shap import explain_regions

    regions, note = choose_regions(segmentation, image)
    if note:
        log.info(note)
    result = explain_regions(score_batch(loaded), image, regions, loaded.classifier_spec.labels, progress=progress)
    with sessions.begin() as session:
        repository.store_region_explanation(session, run_id, result)
    return result


def segment_and_store(
    sessions: sessionmaker[Session],
    inputs: MultiChannelVolume | Volume,
    loaded: LoadedModel,
    facts: CaseFacts,
    actor: str | None,
    progress: Progress,
    store: ImageStore | None = None,
) -> tuple[Segmentation, int]:
    """Segment a volume (progress per window), measure its structures and store the run, with the
    volume and label map kept in ``store`` so the case reopens; returns the segmentation and the
    stored run's id."""
    from inference.volume.segment import segment
    from pipelines.kept_volumes import store_segmentation_run

    result = segment(inputs, loaded, progress=progress)  # measured, too
    return result, store_segmentation_run(sessions.begin, store, inputs, facts, result, actor)
