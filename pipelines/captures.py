"""Secondary-capture pictures of a stored case, for PACS viewers that show neither SEG nor SR: each
structure's mask over its middle axial slice, and the Grad-CAM of each positive or critical finding
over the whole radiograph. An untrained model's pictures carry the red "untrained" band."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ReviewError
from core.settings import Settings
from core.vocabulary import Band
from inference.dicom_out.sc import secondary_capture
from inference.volume.types import MultiChannelVolume
from pipelines.kept_volumes import kept_volume, reopened_segmentation
from storage.image_store import ImageStore
from storage.repository import ClassificationRunRecord, RunRecord, SegmentationRunRecord

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from inference.models.loader import LoadedModel

log = logging.getLogger(__name__)

MASK_OPACITY = 0.45
WIDTH_PX = 768
MOST_HEATMAPS = 6  # the top-ranked positive or critical findings: what a reader opens first, not all 18
# The largest structures with voxels: a whole-body CT has up to 104, and sent 60 pictures to PACS.
MOST_MASKS = 12


def case_captures(
    runs: list[RunRecord],
    store: ImageStore | None,
    settings: Settings,
    study_uid: str,
    loaded: Callable[[str], LoadedModel | None] | None = None,
) -> list[Dataset]:
    """The pictures of every run of a case whose image or volume is kept. ``loaded``: the model of
    that id already in memory, if any (the app's), used when it holds the run's weights; else the
    model is loaded for the heatmaps.

    Raises:
        ReviewError: a radiograph's heatmaps need the weights that made its run, and other weights are installed.
    """
    if store is None:
        return []
    captures: list[Dataset] = []
    for run in runs:
        if isinstance(run, SegmentationRunRecord):
            captures.extend(_mask_captures(run, store, study_uid))
        elif isinstance(run, ClassificationRunRecord):
            captures.extend(_heatmap_captures(run, store, settings, study_uid, loaded))
    return captures


@dataclass(frozen=True)
class MaskPicture:
    """One structure's mask over its middle axial slice, as shown (RGB, the untrained band on it
    when the masks are a model's untrained output), and what it shows."""

    structure: str
    rgb: np.ndarray
    comment: str


def mask_pictures(run: SegmentationRunRecord, store: ImageStore) -> list[MaskPicture]:
    """Each structure of ``run`` with voxels (the ``MOST_MASKS`` largest where there are more), over
    its kept volume's middle axial slice of it, in the run's order; none when the volume or label
    map is no longer kept."""
    from core.annotate import with_banner
    from inference.volume.slices import (
        colour_table,
        display_size,
        orientation_marks,
        oriented_slice,
        pixel_size_mm,
        render_pair,
    )
    from inference.volume.windowing import CT_PRESETS, percentile_window, window_to_uint8

    inputs = kept_volume(store, run.facts.input_sha256)
    segmentation = reopened_segmentation(store, run)
    if inputs is None or segmentation is None:
        return []
    volume = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
    level, width = CT_PRESETS["Soft tissue"] if volume.modality == "CT" else percentile_window(np.asarray(volume.data))
    label_map = segmentation.label_map
    present = [s for s in run.structures if s.axial_first is not None and s.axial_last is not None]
    largest = {s.name for s in sorted(present, key=lambda s: -s.volume_ml)[:MOST_MASKS]}
    pictures = []
    for structure in present:
        if structure.name not in largest or structure.axial_first is None or structure.axial_last is None:
            continue
        index = (structure.axial_first + structure.axial_last) // 2
        image = window_to_uint8(oriented_slice(np.asarray(volume.data), "Axial", index), level, width)
        mask = oriented_slice(np.asarray(label_map.data), "Axial", index)
        size = display_size(image.shape, pixel_size_mm(volume.spacing_mm, "Axial"), WIDTH_PX)
        table = colour_table(label_map.labels, frozenset(structure.values))
        _, picture = render_pair(image, mask, table, MASK_OPACITY, size, orientation_marks("Axial"))
        if not run.trained:
            picture = with_banner(picture)
        comment = (
            f"{structure.name}: {structure.volume_ml:.2f} mL, axial slice {index + 1} of {volume.shape[2]} "
            f"(run {run.run_id}, {run.model_id})"
        )
        pictures.append(MaskPicture(structure.name, picture, comment))
    return pictures


def _mask_captures(run: SegmentationRunRecord, store: ImageStore, study_uid: str) -> list[Dataset]:
    return [
        _capture(run, study_uid, p.rgb, "masks", (run.label_map_sha256, p.structure), number, p.comment, ("L", "P"))
        for number, p in enumerate(mask_pictures(run, store), start=1)
    ]


def _heatmap_captures(
    run: ClassificationRunRecord,
    store: ImageStore,
    settings: Settings,
    study_uid: str,
    loaded: Callable[[str], LoadedModel | None] | None,
) -> list[Dataset]:
    from inference.images.bands import load_band_config
    from inference.models.loader import load_model
    from inference.models.registry import get_spec
    from pipelines.analyze import analyze
    from xai.overlay import whole_image_overlay

    image = store.get_image(run.facts.input_sha256)
    shown = [f for f in run.ranked() if f.band in (Band.POSITIVE, Band.CRITICAL)][:MOST_HEATMAPS]
    if image is None or not shown:
        return []
    model = loaded(run.model_id) if loaded is not None else None
    if model is None or model.weights_sha256 != run.weights_sha256:
        model = load_model(get_spec(run.model_id), settings, allow_untrained=not run.trained)
    if model.weights_sha256 != run.weights_sha256:
        raise ReviewError(
            f"The heatmaps of run {run.run_id} need the weights that made it ({run.weights_sha256[:12]}…); "
            f"{run.model_id} now runs {model.weights_sha256[:12]}…. Export without pictures, or reinstall those weights."
        )
    analysis = analyze(model, image, load_band_config(settings.bands_file))
    captures = []
    for number, finding in enumerate(shown, start=1):
        _, picture = whole_image_overlay(
            image.pixels, analysis.gradcam.map_for(finding.label), "jet", 0.45, trained=run.trained
        )
        comment = (
            f"Grad-CAM for {finding.label}: score {finding.score:.3f}, {finding.band.value} (run {run.run_id}, "
            f"{run.model_id}); where the model looked, not where disease is"
        )
        # A frontal radiograph as shown: the patient's left on the right, the feet down.
        capture = _capture(
            run, study_uid, picture, "heatmaps", (run.weights_sha256, finding.label), number, comment, ("L", "F")
        )
        captures.append(capture)
    return captures


def _capture(
    run: RunRecord,
    study_uid: str,
    picture: np.ndarray,
    what: str,
    identity: tuple[str, ...],
    number: int,
    comment: str,
    orientation: tuple[str, str],
) -> Dataset:
    """One picture of ``run`` as a secondary capture in the run's series, its comment saying what it shows."""
    capture = secondary_capture(
        picture,
        study_uid=study_uid,
        patient_key=run.facts.patient_key,
        description=f"AI {what} run {run.run_id}" + ("" if run.trained else " untrained: meaningless"),
        identity=(f"run-{run.run_id}", run.facts.input_sha256, *identity),
        instance_number=number,
        orientation=orientation,
    )
    capture.ImageComments = comment
    return capture
