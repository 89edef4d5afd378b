"""A label map as a DICOM SEG (Segmentation Storage, BINARY), with highdicom.

One segment per label of the map, numbered 1..N in label order, each with its name, colour and
what made it: the model (id, weights sha256, trained or not) as the algorithm identification, or
"uploaded mask" for a mask made by another tool. An untrained model's SEG says "untrained:
meaningless" in its series description and content label, where PACS viewers show them.

The SEG references the series the volume was read from (study, series, frame of reference and, per
frame, the source slice at the same position). A NIfTI volume has no DICOM series: its SEG then
references a stand-in series whose UIDs are derived from the volume's sha256, says so in its
content description, and lies in a study of its own.

Only the keyed patient hash goes in; nothing is copied from the source files' headers, so no name,
birth date, accession number or institution can leak into a SEG.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from core.errors import ReviewError
from inference.dicom_out.common import (
    LO,
    MANUFACTURER,
    MODEL_NAME,
    SECONDARY_CAPTURE,
    SEG_SERIES_NUMBER,
    SOFTWARE_VERSION,
    STORAGE_CLASSES,
    derived_uid,
    part10_bytes,
    patient_and_study,
)
from inference.masks.write import to_original_orientation, write_replacing
from inference.volume.case import UPLOADED_MASK_MODEL_ID
from inference.volume.types import DicomSource, LabelMap, Segmentation, Volume

log = logging.getLogger(__name__)


class SegExportError(ReviewError):
    """A label map that cannot be written as a DICOM SEG (nothing to export, or the file cannot be written)."""


def seg_dataset(volume: Volume, segmentation: Segmentation):
    """The DICOM SEG (a pydicom Dataset) of ``segmentation``'s label map on ``volume``.

    Raises:
        SegExportError: the label map has no labels.
    """
    import highdicom as hd

    label_map = segmentation.label_map
    labels = [info for info in label_map.labels if info.value > 0]
    if not labels:
        raise SegExportError("The segmentation has no structures, so there is no DICOM SEG to write.")
    # The label map in the file's own orientation: frames along its slice axis, as stored.
    data, affine = to_original_orientation(np.asarray(label_map.data), label_map.affine, volume.original_axcodes)
    source = volume.dicom_source or _stand_in_source(volume, data.shape, affine)
    if not source.frame_of_reference_uid:  # an export that left it out; a SEG must have one
        source = dataclasses.replace(
            source, frame_of_reference_uid=derived_uid("frame-of-reference", source.series_instance_uid)
        )
    numbers = segment_numbers(label_map)
    numbering = np.zeros(max(int(np.asarray(label_map.data).max(initial=0)), labels[-1].value) + 1, dtype=np.uint16)
    for value, number in numbers.items():
        numbering[value] = number
    segments = numbering[data].astype(np.uint8 if len(labels) < 256 else np.uint16)
    # Frames along the file's slice axis (rows j, columns i), as the source slices were stored.
    frames = np.ascontiguousarray(segments.transpose(2, 1, 0))
    grid = hd.Volume(
        frames,
        affine[:, [2, 1, 0, 3]],
        "PATIENT",
        frame_of_reference_uid=source.frame_of_reference_uid,
        from_reference_convention="RAS",
    )
    model = segmentation.model
    uploaded = model.model_id == UPLOADED_MASK_MODEL_ID
    algorithm = (
        None
        if uploaded
        else hd.AlgorithmIdentificationSequence(
            name=model.model_id[:LO],
            family=_code("cid7162", "ArtificialIntelligence"),
            version=model.weights_sha256[:LO],
            # highdicom joins the parameters with commas: a comma inside a value would split it
            parameters={
                key: value.replace(",", ";")
                for key, value in {
                    "trained": "yes" if model.trained else "no (untrained: meaningless)",
                    **dict(segmentation.params),
                }.items()
            },
        )
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=numbers[info.value],
            segment_label=info.name[:LO],
            segmented_property_category=_code("SCT", "Tissue"),
            segmented_property_type=_code("SCT", "Tissue"),
            algorithm_type="MANUAL" if uploaded else "AUTOMATIC",
            algorithm_identification=algorithm,
            tracking_uid=derived_uid(label_map.sha256, str(info.value)),
            tracking_id=info.name[:LO],
            display_color=hd.color.CIELabColor.from_rgb(*info.color),
        )
        for info in labels
    ]
    untrained = not uploaded and not model.trained
    if uploaded:
        what = "uploaded mask"
        content = "A mask made outside this app and uploaded for review"
    else:
        what = model.model_id
        content = "UNTRAINED: meaningless, interface testing only" if untrained else f"AI segmentation by {what}"
    if volume.dicom_source is None:
        content = f"{content[: LO - 12]}; from NIfTI"  # the referenced series is a stand-in
    series_description = f"AI SEG {what}"[: LO - 24] + (" untrained: meaningless" if untrained else "")
    identity = (label_map.sha256, model.model_id, model.weights_sha256, source.series_instance_uid)
    seg = hd.seg.Segmentation(
        source_images=_source_datasets(source, volume.patient_key),
        pixel_array=grid,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid("seg-series", *identity),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=derived_uid("seg", *identity),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_label="UNTRAINED" if untrained else "AI_SEGMENTATION",
        content_description=content[:LO],
        series_description=series_description,
        omit_empty_frames=True,
    )
    log.info(
        "DICOM SEG of %s: %d segments, %d frames%s",
        what,
        len(labels),
        int(seg.NumberOfFrames),
        "" if volume.dicom_source else " (stand-in source series for a NIfTI volume)",
    )
    return seg


def segment_numbers(label_map: LabelMap) -> dict[int, int]:
    """label value -> its segment number in the SEG: the labels in order, numbered from 1 (a label
    map's values may skip: BraTS uses 1, 2 and 4)."""
    return {info.value: number for number, info in enumerate((i for i in label_map.labels if i.value > 0), start=1)}


def seg_bytes(volume: Volume, segmentation: Segmentation) -> bytes:
    """The DICOM SEG as a Part 10 file's bytes (for a download or a STOW-RS request)."""
    return part10_bytes(seg_dataset(volume, segmentation))


def write_seg(path: Path, volume: Volume, segmentation: Segmentation) -> Path:
    """Writes the DICOM SEG of ``segmentation`` to ``path`` (atomically: no half-written file).

    Raises:
        SegExportError: nothing to export, or the file cannot be written.
    """
    seg = seg_dataset(volume, segmentation)
    try:
        return write_replacing(path, lambda partial: seg.save_as(partial, enforce_file_format=True), ".dcm")
    except ReviewError as exc:
        raise SegExportError(str(exc)) from None


def _stand_in_source(volume: Volume, shape: tuple[int, ...], original: np.ndarray) -> DicomSource:
    """For a volume without a DICOM source (NIfTI): its slices as stored (``shape`` and affine
    ``original`` in the file's own orientation), with UIDs derived from the volume's sha256, so the
    SEG has a frame of reference to sit in."""
    to_lps = np.array([-1.0, -1.0, 1.0])
    columns_step, rows_step, slice_step = (np.asarray(original)[:3, axis] * to_lps for axis in range(3))
    corner = np.asarray(original)[:3, 3] * to_lps
    spacing = (float(np.linalg.norm(rows_step)), float(np.linalg.norm(columns_step)))
    sha = volume.input_sha256
    modality = volume.modality if volume.modality in STORAGE_CLASSES else "OT"
    slices = range(int(shape[2]))
    return DicomSource(
        study_instance_uid=derived_uid("study", sha),
        series_instance_uid=derived_uid("series", sha),
        frame_of_reference_uid=derived_uid("frame-of-reference", sha),
        sop_class_uid=STORAGE_CLASSES.get(modality, SECONDARY_CAPTURE),
        modality=modality,
        sop_instance_uids=tuple(derived_uid("slice", sha, str(k)) for k in slices),
        frame_numbers=(0,) * len(slices),
        positions_lps=tuple(tuple(float(v) for v in corner + k * slice_step) for k in slices),  # type: ignore[misc]
        orientation=tuple(float(v) for v in (*(columns_step / spacing[1]), *(rows_step / spacing[0]))),
        pixel_spacing=spacing,
        rows=int(shape[1]),
        columns=int(shape[0]),
    )


def _source_datasets(source: DicomSource, patient_key: str | None) -> list:
    """Header-only stand-ins for the source images: their UIDs and geometry, the keyed patient hash,
    and nothing else (highdicom copies the patient and study modules from the first). A multi-frame
    source is one instance whose frames carry their positions."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    positions = np.asarray(source.positions_lps, dtype=np.float64)
    gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1) if len(positions) > 1 else np.ones(1)
    thickness = round(float(np.median(gaps)), 6)  # the slice gap: what the SEG's pixel measures need

    def header(uid: str) -> Dataset:
        ds = patient_and_study(
            source.sop_class_uid,
            uid,
            source.study_instance_uid,
            source.series_instance_uid,
            source.modality,
            patient_key,
        )
        ds.FrameOfReferenceUID = source.frame_of_reference_uid
        ds.Rows = source.rows
        ds.Columns = source.columns
        return ds

    def item(**values) -> Dataset:
        ds = Dataset()
        for key, value in values.items():
            setattr(ds, key, value)
        return ds

    if not any(source.frame_numbers):
        slices = []
        for uid, position in zip(source.sop_instance_uids, source.positions_lps):
            ds = header(uid)
            ds.ImagePositionPatient = list(position)
            ds.ImageOrientationPatient = list(source.orientation)
            ds.PixelSpacing = list(source.pixel_spacing)
            ds.SliceThickness = thickness
            slices.append(ds)
        return slices
    ds = header(source.sop_instance_uids[0])
    ds.NumberOfFrames = len(source.frame_numbers)
    by_frame = sorted(zip(source.frame_numbers, source.positions_lps))
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [item(PlanePositionSequence=Sequence([item(ImagePositionPatient=list(p))])) for _, p in by_frame]
    )
    ds.SharedFunctionalGroupsSequence = Sequence(
        [
            item(
                PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=list(source.orientation))]),
                PixelMeasuresSequence=Sequence(
                    [item(PixelSpacing=list(source.pixel_spacing), SliceThickness=thickness)]
                ),
            )
        ]
    )
    return [ds]


def _code(scheme: str, name: str):
    from pydicom.sr.codedict import codes

    return getattr(getattr(codes, scheme), name)
