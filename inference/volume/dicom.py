"""A DICOM CT/MR series (or one enhanced multi-frame file) to a canonical (RAS+) ``Volume``.

Slices are placed by geometry alone: each one's ImagePositionPatient projected on the slice
normal (row cosines x column cosines). File names and InstanceNumber are ignored because exports
number and name files in ways that do not follow anatomy. Headers are read and checked first;
pixels are decoded one file at a time only once the whole series is known to fit the limits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from core.deid import patient_key
from core.errors import (
    CorruptImage,
    EmptyInput,
    InputTooLarge,
    MixedSeries,
    NotAVolume,
    UnsupportedFormat,
)
from inference.formats import (
    cannot_decode,
    dicom_count,
    dicom_errors,
    library_reason,
    one_line,
    read_dicom,
    reader_boundary,
)
from inference.volume.nifti import human_bytes, to_canonical
from inference.volume.types import DicomSource, Volume, read_only

log = logging.getLogger(__name__)

# Objects that may share an export with the images but are not slices of the volume.
_NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "DOC", "REG"}
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_GEOMETRY_TOL = 1e-3  # direction cosines and pixel spacing (mm) that differ less are the same
_DUPLICATE_MM = 0.01  # two slices closer than this along the normal are at the same position
_MAX_GAP_WARNINGS = 5


@dataclass(frozen=True)
class _Slice:
    """One 2D image of the series: a single-frame file or one frame of a multi-frame file."""

    file_index: int
    frame: int | None
    name: str  # for messages: the file name, plus the frame number in a multi-frame file
    orientation: np.ndarray  # ImageOrientationPatient: row cosines then column cosines
    position: np.ndarray  # ImagePositionPatient (LPS mm) of the first transmitted pixel
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    rows: int
    cols: int
    slope: float
    intercept: float


def load_dicom_series(
    files: list[tuple[str, bytes]],
    *,
    max_bytes: int,
    max_voxels: int,
    hash_key: bytes,
) -> Volume:
    """Decode the files of one DICOM series (or one multi-frame file) into a canonical ``Volume``.

    Files without an image (DICOMDIR, structured reports...) are skipped when images remain.

    Raises:
        InputRejected: (a subclass) naming the file, slice or series that is the problem.
    """
    if not files:
        raise EmptyInput("No DICOM files were uploaded.")
    total = sum(len(data) for _, data in files)
    if total > max_bytes:
        raise InputTooLarge(
            f"The {len(files)} DICOM file(s) total {human_bytes(total)}, over the {human_bytes(max_bytes)} limit."
        )
    headers = [(name, data, _read_header(name, data)) for name, data in files]
    images = [(name, data, ds) for name, data, ds in headers if _is_image(name, ds)]
    skipped = len(headers) - len(images)
    if not images:
        raise NotAVolume(
            f"None of the {len(files)} DICOM file(s) holds an image (e.g. {files[0][0]} is "
            f"{_sop_name(headers[0][2])}). Upload the CT or MR series itself."
        )
    if skipped:
        log.info("Skipped %d DICOM file(s) without an image (DICOMDIR, reports...)", skipped)
    _check_one_series(images)
    _check_one_patient(images)
    _check_size(images, max_voxels)

    multiframe = [name for name, _, ds in images if _frames(ds) > 1]
    if multiframe and len(images) > 1:
        raise NotAVolume(
            f"{multiframe[0]} is a multi-frame DICOM uploaded together with {len(images) - 1} other "
            "image file(s) of the same series; upload the multi-frame file on its own."
        )
    slices = _multiframe_slices(images[0][0], images[0][2]) if multiframe else _single_slices(images)
    _check_consistent(slices)
    slices, positions, spacing_warnings = _sort(slices)
    affine_ras = _affine_ras(slices, positions)
    values = _decode(slices, images, multiframe=bool(multiframe))
    import nibabel as nib

    codes = nib.aff2axcodes(affine_ras)
    if None in codes:
        raise CorruptImage(
            f"{slices[0].name} and the other slices give a degenerate geometry (an axis with no direction: "
            "pixel spacing or slice positions are damaged); the volume cannot be placed in space."
        )
    axcodes = "".join(str(code) for code in codes)
    data, affine = to_canonical(values, affine_ras)

    first = images[0][2]
    modality = _text(first, "Modality", 16).upper()
    digests = sorted(hashlib.sha256(data_).hexdigest() for _, data_, _ in images)
    description = _text(first, "SeriesDescription") or "DICOM series"
    log.info(
        "Loaded DICOM %s: %d slices, stored as %s", "multi-frame" if multiframe else "series", len(slices), axcodes
    )
    return Volume(
        data=read_only(data),
        affine=read_only(affine),
        modality=modality if modality in ("CT", "MR") else "OT",
        source_format="dicom-multiframe" if multiframe else "dicom-series",
        input_sha256=hashlib.sha256("".join(digests).encode("ascii")).hexdigest(),
        description=description,
        original_axcodes=axcodes,
        patient_key=patient_key(first.get("PatientID", None), hash_key),
        warnings=tuple(spacing_warnings),
        dicom_source=_source(slices, positions, images, modality),
    )


def _source(slices: list[_Slice], positions: np.ndarray, images, modality: str) -> DicomSource:
    """The series' UIDs and geometry, slice by slice in sorted order, for the DICOM objects that
    will reference it (SEG, SR)."""
    first = images[0][2]
    return DicomSource(
        study_instance_uid=_text(first, "StudyInstanceUID"),
        series_instance_uid=_text(first, "SeriesInstanceUID"),
        frame_of_reference_uid=_text(first, "FrameOfReferenceUID"),
        sop_class_uid=_text(first, "SOPClassUID"),
        modality=modality,
        sop_instance_uids=tuple(_text(images[s.file_index][2], "SOPInstanceUID") for s in slices),
        frame_numbers=tuple(0 if s.frame is None else s.frame + 1 for s in slices),
        positions_lps=tuple((float(x), float(y), float(z)) for x, y, z in positions),
        orientation=tuple(float(v) for v in slices[0].orientation),
        pixel_spacing=slices[0].pixel_spacing,
        rows=slices[0].rows,
        columns=slices[0].cols,
    )


# ---- headers -------------------------------------------------------------------------------


def _read_header(name: str, data: bytes):
    if not data:
        raise EmptyInput(f"{name} is empty (0 bytes). Upload the file again.")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise NotAVolume(
            f"{name} is not a DICOM file (no DICM marker). Upload only the DICOM files of one series, "
            "or a NIfTI file on its own."
        )
    with reader_boundary(name, "a DICOM file", "Export it again from PACS."):
        return read_dicom(data, name, stop_before_pixels=True)


def _text(ds, keyword: str, limit: int = 64) -> str:
    return one_line(str(ds.get(keyword, "") or ""), limit)


def _is_image(name: str, ds) -> bool:
    """True for an image, False for an object that is known not to be one (skipped)."""
    modality = _text(ds, "Modality", 16).upper()
    if modality in _NON_IMAGE_MODALITIES or _is_dicomdir(ds):
        return False
    if "Rows" in ds and "Columns" in ds:
        return True
    # Neither an image nor a known non-image object: most likely cut off before its image module.
    raise CorruptImage(
        f"{name} is a DICOM file without image attributes (Rows/Columns) that is not a report or "
        "DICOMDIR either; it is probably truncated. Export it again from PACS."
    )


def _is_dicomdir(ds) -> bool:
    sop = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    return sop == _DICOMDIR_SOP or "DirectoryRecordSequence" in ds


def _sop_name(ds) -> str:
    sop = getattr(ds.get("SOPClassUID", None), "name", None)
    if sop:
        return f"a {one_line(str(sop), 80)}"
    if _is_dicomdir(ds):
        return "a DICOMDIR"
    return "not an image"


def _frames(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError, OverflowError):
        return 1


def _check_one_series(images) -> None:
    series: dict[str, list] = {}
    for _, _, ds in images:
        series.setdefault(_text(ds, "SeriesInstanceUID"), []).append(ds)
    if len(series) < 2:
        return

    def number(group) -> int:
        try:
            return int(group[0].get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError):
            return 0

    parts = []
    for group in sorted(series.values(), key=number):
        text = _text(group[0], "SeriesDescription")
        label = f"'{text}'" if text else "(no description)"
        parts.append(f"series {one_line(str(group[0].get('SeriesNumber', '?')), 12)} {label} ({len(group)} file(s))")
    raise MixedSeries(
        f"The upload mixes {len(series)} DICOM series: {'; '.join(parts)}. Upload one series at a time "
        "(one folder of the PACS export)."
    )


def _check_one_patient(images) -> None:
    ids = {_text(ds, "PatientID") for _, _, ds in images} - {""}
    if len(ids) > 1:
        # The IDs themselves must not appear in a message: it may end up in a log or screenshot.
        raise MixedSeries(
            f"The files carry {len(ids)} different PatientIDs; a series belongs to one patient. "
            "Upload one patient's series."
        )


def _check_size(images, max_voxels: int) -> None:
    name, _, ds = images[0]
    rows, cols = dicom_count(ds, "Rows", name), dicom_count(ds, "Columns", name)
    slices = sum(_frames(d) for _, _, d in images)
    voxels = sum(dicom_count(d, "Rows", n) * dicom_count(d, "Columns", n) * _frames(d) for n, _, d in images)
    if voxels > max_voxels:
        raise InputTooLarge(
            f"The series holds {slices} slice(s) of {cols}x{rows} pixels ({voxels / 1e6:.0f} million "
            f"voxels), over the {max_voxels / 1e6:.0f} million voxel limit."
        )


# ---- geometry ------------------------------------------------------------------------------


def _floats(value, count: int, what: str, name: str) -> np.ndarray:
    if value is None:
        raise NotAVolume(
            f"{name} has no {what}, so it cannot be placed in 3D (a localiser, screenshot or "
            "secondary capture?). Upload a CT or MR series."
        )
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (count,) or not np.isfinite(out).all():
        raise CorruptImage(f"{name} has an invalid {what} ({one_line(repr(value), 120)}); expected {count} numbers.")
    if what == "PixelSpacing" and not (out > 0).all():
        # A zero or negative spacing would mirror or collapse an axis (left could become right).
        raise CorruptImage(
            f"{name} has PixelSpacing {one_line(repr(value), 80)}; both spacings must be greater than 0."
        )
    return out


def _rescale(item, name: str) -> tuple[float, float] | None:
    if item is None or ("RescaleSlope" not in item and "RescaleIntercept" not in item):
        return None
    slope, intercept = item.get("RescaleSlope", 1), item.get("RescaleIntercept", 0)
    try:
        values = float(slope or 1), float(intercept or 0)
    except (TypeError, ValueError, OverflowError):
        values = (float("nan"), float("nan"))
    if not np.isfinite(values).all():
        raise CorruptImage(
            f"{name} has an invalid rescale (RescaleSlope {one_line(repr(slope), 30)}, RescaleIntercept "
            f"{one_line(repr(intercept), 30)}); its pixel values cannot be converted. Export it again from PACS."
        )
    return values


def _single_slices(images) -> list[_Slice]:
    slices = []
    for index, (name, _, ds) in enumerate(images):
        spacing = _floats(ds.get("PixelSpacing", None), 2, "PixelSpacing", name)
        orientation = _floats(ds.get("ImageOrientationPatient", None), 6, "ImageOrientationPatient", name)
        position = _floats(ds.get("ImagePositionPatient", None), 3, "ImagePositionPatient", name)
        slices.append(_slice(ds, name, (index, None), orientation, position, spacing, _rescale(ds, name)))
    return slices


def _slice(ds, name: str, at: tuple[int, int | None], orientation, position, spacing, rescale) -> _Slice:
    """A slice of file ``at[0]`` (frame ``at[1]`` of a multi-frame file), named in messages as
    ``name`` (with its frame); its size from the file's Rows and Columns."""
    file_index, frame = at
    slope, intercept = rescale or (1.0, 0.0)
    return _Slice(
        file_index=file_index,
        frame=frame,
        name=name if frame is None else f"{name} frame {frame + 1}",
        orientation=orientation,
        position=position,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        rows=dicom_count(ds, "Rows", name),
        cols=dicom_count(ds, "Columns", name),
        slope=slope,
        intercept=intercept,
    )


def _group_item(groups, sequence: str):
    """The first item of a functional-group macro (e.g. PlanePositionSequence), or None."""
    items = getattr(groups, sequence, None) if groups is not None else None
    return items[0] if items else None


def _group_value(shared, per_frame, sequence: str, attribute: str):
    # Shared groups hold what all frames have in common; per-frame groups hold what varies.
    for groups in (shared, per_frame):
        item = _group_item(groups, sequence)
        if item is not None and attribute in item:
            return getattr(item, attribute)
    return None


def _multiframe_slices(name: str, ds) -> list[_Slice]:
    frames = _frames(ds)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
    if per_frame is None or len(per_frame) != frames:
        raise NotAVolume(
            f"{name} is a multi-frame DICOM with {frames} frames but without per-frame positions "
            "(PerFrameFunctionalGroupsSequence), so its frames cannot be placed in 3D. Export the "
            "series as enhanced CT/MR or as single-frame files."
        )
    shared_seq = ds.get("SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq is not None and len(shared_seq) else None
    top_rescale = _rescale(ds, name) or (1.0, 0.0)
    slices = []
    for frame, groups in enumerate(per_frame):
        label = f"{name} frame {frame + 1}"
        spacing = _floats(
            _group_value(shared, groups, "PixelMeasuresSequence", "PixelSpacing"), 2, "PixelSpacing", label
        )
        rescale = _rescale(_group_item(groups, "PixelValueTransformationSequence"), label) or _rescale(
            _group_item(shared, "PixelValueTransformationSequence"), label
        )
        orientation = _floats(
            _group_value(shared, groups, "PlaneOrientationSequence", "ImageOrientationPatient"),
            6,
            "ImageOrientationPatient",
            label,
        )
        position = _floats(
            _group_value(None, groups, "PlanePositionSequence", "ImagePositionPatient"),
            3,
            "ImagePositionPatient",
            label,
        )
        slices.append(_slice(ds, name, (0, frame), orientation, position, spacing, rescale or top_rescale))
    return slices


def _check_consistent(slices: list[_Slice]) -> None:
    ref = slices[0]
    row, col = ref.orientation[:3], ref.orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise CorruptImage(
            f"{ref.name} has an invalid ImageOrientationPatient {list(np.round(ref.orientation, 4))}: "
            "its row and column directions must be perpendicular unit vectors."
        )
    for other in slices[1:]:
        if (other.rows, other.cols) != (ref.rows, ref.cols):
            raise NotAVolume(
                f"{other.name} is {other.cols}x{other.rows} pixels but {ref.name} is {ref.cols}x{ref.rows}; "
                "all slices of a volume must be the same size."
            )
        if np.abs(other.orientation - ref.orientation).max() > _GEOMETRY_TOL:
            raise NotAVolume(
                f"{other.name} is oriented {list(np.round(other.orientation, 3))} but {ref.name} is oriented "
                f"{list(np.round(ref.orientation, 3))}; all slices of a volume must share one plane "
                "(is a localiser or a second plane in the same series?)."
            )
        if max(abs(a - b) for a, b in zip(other.pixel_spacing, ref.pixel_spacing)) > _GEOMETRY_TOL:
            raise NotAVolume(
                f"{other.name} has pixel spacing {other.pixel_spacing} mm but {ref.name} has "
                f"{ref.pixel_spacing} mm; all slices of a volume must share one pixel spacing."
            )


def _mm(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _sort(slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray, list[str]]:
    """Slices in order along the normal, their LPS positions, and warnings about irregular gaps."""
    if len(slices) < 2:
        raise NotAVolume(
            f"{slices[0].name} is a single slice; a 3D volume needs the whole series (all files of "
            "the series folder, or a zip of it)."
        )
    normal = np.cross(slices[0].orientation[:3], slices[0].orientation[3:])
    keys = np.array([s.position @ normal for s in slices])
    order = np.argsort(keys, kind="stable")
    slices = [slices[i] for i in order]
    keys = keys[order]
    gaps = np.diff(keys)
    duplicates = np.flatnonzero(gaps < _DUPLICATE_MM)
    if duplicates.size:
        k = int(duplicates[0])
        raise NotAVolume(
            f"{slices[k].name} and {slices[k + 1].name} are both at position {keys[k]:.2f} mm along the "
            "slice axis; the upload holds repeated slices (the same file twice, or several echoes, "
            "time points or acquisitions in one series). Upload a series with one slice per position."
        )
    return slices, np.array([s.position for s in slices]), _gap_warnings(keys, gaps)


def _gap_warnings(keys: np.ndarray, gaps: np.ndarray) -> list[str]:
    median = float(np.median(gaps))
    tolerance = max(0.01 * median, 0.01)
    irregular = np.flatnonzero(np.abs(gaps - median) > tolerance)
    warnings = []
    for k in irregular[:_MAX_GAP_WARNINGS]:
        gap = float(gaps[k])
        # One decimal is how radiologists read positions; more only when it hides the difference.
        digits = 1 if f"{gap:.1f}" != f"{median:.1f}" else 3
        where = (
            f"Slice gap of {_mm(gap, digits)} mm between positions {_mm(keys[k], digits)} and "
            f"{_mm(keys[k + 1], digits)} mm (slices {k + 1}-{k + 2})"
        )
        if gap > 1.5 * median:
            missing = max(1, int(round(gap / median)) - 1)
            what = "a slice" if missing == 1 else f"{missing} slices"
            warnings.append(f"{where}; the series may be missing {what}; the median gap is {_mm(median, digits)} mm.")
        else:
            warnings.append(
                f"{where}; the spacing is uneven (the median gap is {_mm(median, digits)} mm), so distances "
                "and volumes along the slice axis are approximate."
            )
    if len(irregular) > _MAX_GAP_WARNINGS:
        warnings.append(f"... and {len(irregular) - _MAX_GAP_WARNINGS} more irregular slice gaps.")
    return warnings


def _affine_ras(slices: list[_Slice], positions: np.ndarray) -> np.ndarray:
    """Voxel (i along the row direction, j along the column direction, k slice) -> RAS+ mm."""
    ref = slices[0]
    row, col = ref.orientation[:3], ref.orientation[3:]
    row_spacing, col_spacing = ref.pixel_spacing
    # The median step keeps most slices exact when one gap is irregular; with a gantry tilt it
    # is not along the normal, which the affine then carries as a shear.
    step = np.median(np.diff(positions, axis=0), axis=0)
    lps = np.eye(4)
    lps[:3, 0] = row * col_spacing  # moving one column (i) goes along the row direction
    lps[:3, 1] = col * row_spacing  # moving one row (j) goes along the column direction
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS -> RAS


# ---- pixels --------------------------------------------------------------------------------


def _decode(slices: list[_Slice], images, *, multiframe: bool) -> np.ndarray:
    ref = slices[0]
    out = np.empty((ref.cols, ref.rows, len(slices)), dtype=np.float32)
    if multiframe:
        name, data, _ = images[0]
        frames = _pixels(name, data, ref, expected=(len(slices), ref.rows, ref.cols))
        for k, s in enumerate(slices):
            out[:, :, k] = frames[s.frame].T * np.float32(s.slope) + np.float32(s.intercept)
    else:
        for k, s in enumerate(slices):
            name, data, _ = images[s.file_index]
            # pixel_array is (rows, cols) = [j, i]; the volume is indexed [i, j, k].
            out[:, :, k] = _pixels(name, data, s, expected=(s.rows, s.cols)).T * np.float32(s.slope) + np.float32(
                s.intercept
            )
    finite = np.isfinite(out)
    if not finite.all():
        k = int(np.flatnonzero(~finite.all(axis=(0, 1)))[0])
        raise CorruptImage(f"{slices[k].name} has invalid pixel values (NaN or infinity) after rescaling.")
    return out


def _pixels(name: str, data: bytes, ref: _Slice, expected: tuple[int, ...]) -> np.ndarray:
    with reader_boundary(name, "a DICOM file", "Export it again from PACS."):
        return _decode_pixels(name, data, ref, expected)


def _decode_pixels(name: str, data: bytes, ref: _Slice, expected: tuple[int, ...]) -> np.ndarray:
    ds = read_dicom(data, name)
    if dicom_count(ds, "SamplesPerPixel", name, 1) != 1:
        raise UnsupportedFormat(f"{name} is a colour image; a CT or MR series must be grayscale.")
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise CorruptImage(
            f"{name} describes a {ref.cols}x{ref.rows} image but its pixel data is missing (a truncated "
            "file?). Export it again from PACS."
        )
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if not cannot_decode(exc):
            raise CorruptImage(
                f"{name} has damaged compressed pixel data that could not be decoded. Export it again from PACS."
            ) from None
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise UnsupportedFormat(
            f"{name} is compressed as {one_line(str(getattr(syntax, 'name', syntax)), 80)}, which this "
            "installation cannot decode. Export the series uncompressed (Explicit VR Little Endian) from PACS."
        ) from None
    except dicom_errors() as exc:
        raise CorruptImage(
            f"{name} has damaged or truncated pixel data ({library_reason(exc)}). Export it again from PACS."
        ) from None
    if array.shape != expected:
        raise CorruptImage(f"{name} decodes to pixels of shape {array.shape}, but its header says {expected}.")
    return array
