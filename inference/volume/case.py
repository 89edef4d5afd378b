"""What is stored about a volume case, and a reviewable result for a mask made by another tool."""

from __future__ import annotations

import time

# Which structures a reader must judge is core's rule (the worklist in storage applies it too).
from core.review_rules import REVIEW_ALL_UP_TO, required_count, reviewed_structures
from core.types import CaseFacts, ModelIdentity
from inference.volume.measure import measure_structures
from inference.volume.types import LabelMap, MultiChannelVolume, Segmentation, Volume

__all__ = [
    "REVIEW_ALL_UP_TO",
    "UPLOADED_MASK_MODEL_ID",
    "case_facts",
    "required_count",
    "reviewed_structures",
    "uploaded_segmentation",
]

UPLOADED_MASK_MODEL_ID = "uploaded-mask"


# A case's source_format when it is a volume (case_facts): a slice or radiograph is "png", "jpeg" or "dicom".
VOLUME_SOURCES = frozenset({"nifti", "nifti-4ch", "dicom-series", "dicom-multiframe"})


def is_volume_source(source_format: str) -> bool:
    return source_format in VOLUME_SOURCES


def case_facts(inputs: Volume | MultiChannelVolume) -> CaseFacts:
    """The non-identifying facts of a volume case (a BraTS case is one case of four channels)."""
    volume = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
    source = "nifti-4ch" if isinstance(inputs, MultiChannelVolume) else volume.source_format
    notes = tuple(volume.warnings)
    return CaseFacts(
        input_sha256=inputs.input_sha256,
        source_format=source,
        modality=volume.modality,
        patient_key=volume.patient_key,
        notes=notes,
    )


def uploaded_segmentation(label_map: LabelMap, volume: Volume) -> Segmentation:
    """An uploaded label map as a reviewable result. Its identity is the file's hash; there are no
    model weights, so ``trained`` is True only in the sense that nothing here is untrained output."""
    started = time.perf_counter()
    measurements = measure_structures(label_map.data, label_map.affine, label_map.structures)
    identity = ModelIdentity(
        model_id=UPLOADED_MASK_MODEL_ID, weights_sha256=label_map.sha256, trained=True, device="n/a"
    )
    return Segmentation(
        label_map=label_map,
        model=identity,
        # Not the file name: names exported from scanners or dcm2niix often hold a patient's name or
        # the acquisition date, and this is stored.
        params=(("source", "uploaded label map"), ("mask_sha256", label_map.sha256)),
        spacing_mm=volume.spacing_mm,
        timing_ms=0.0,
        measurements=measurements,
        measure_ms=(time.perf_counter() - started) * 1000.0,
    )
