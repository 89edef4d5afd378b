"""What is stored about a volume case, and a reviewable result for a mask made by another tool."""

from __future__ import annotations

import time

from core.types import CaseFacts, ModelIdentity
from inference.volume.measure import measure_structures
from inference.volume.types import LabelMap, MultiChannelVolume, Segmentation, StructureMeasurement, Volume

UPLOADED_MASK_MODEL_ID = "uploaded-mask"
# Up to this many structures every one is reviewed, empty ones included ("no enhancing tumour" is a
# finding). Beyond it (104 whole-body structures) only those with voxels are: a reader cannot be
# asked to confirm 90 organs a head CT does not contain.
REVIEW_ALL_UP_TO = 12


def required_count(total: int, with_voxels: int) -> int:
    """How many structures a reader must judge for a run to count as reviewed."""
    return total if total <= REVIEW_ALL_UP_TO else with_voxels


def reviewed_structures(measurements: tuple[StructureMeasurement, ...]) -> tuple[StructureMeasurement, ...]:
    if len(measurements) <= REVIEW_ALL_UP_TO:
        return measurements
    return tuple(m for m in measurements if m.voxels > 0)


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
