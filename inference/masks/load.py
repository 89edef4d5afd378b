"""Masks made by other tools (nnU-Net, TotalSegmentator, ITK-SNAP...) as a ``LabelMap`` on a scan's grid.

A NIfTI label map or one DICOM SEG file is accepted. Either must lie on the image's canonical
voxel grid: the mask is never resampled, because a resampled mask would no longer be the
segmentation under review. Names and colours come from the SEG, or a legend file, or a palette.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from core.errors import (
    CorruptImage,
    EmptyInput,
    GridMismatch,
    InputTooLarge,
    NotAVolume,
    UnsupportedFormat,
)
from inference.formats import Format, library_reason, one_line, reader_boundary, sniff
from inference.masks.dicom_seg import describe_grid, read_dicom_seg
from inference.masks.legend import MAX_LABEL_VALUE, LegendEntry, build_labels, parse_legend
from inference.volume.measure import memory_blocks, memory_order, structures_from_labels
from inference.volume.nifti import read_nifti_array
from inference.volume.types import LabelMap, Volume, read_only

log = logging.getLogger(__name__)

_EXPORT_AGAIN = "Export the mask again from the segmentation tool."

GRID_TOLERANCE_MM = 1e-3
# An integer "mask" with this many values that change between most neighbouring voxels is a
# scan or a probability map; real label maps (even TotalSegmentator's 117 classes) are blocky.
_MANY_VALUES = 20
_SMOOTH_FRACTION = 0.5
_SAMPLE_VOXELS = 4_000_000


def load_label_map(
    files: list[tuple[str, bytes]],
    volume: Volume,
    *,
    legend: tuple[str, bytes] | None = None,
    threshold: float | None = None,
    max_bytes: int,
    max_voxels: int,
) -> LabelMap:
    """Reads an uploaded mask onto ``volume``'s canonical grid.

    Args:
        files: One (file name, bytes): a NIfTI label map (.nii/.nii.gz) or a DICOM SEG.
        volume: The scan the mask was drawn on.
        legend: Optional (file name, bytes) naming the labels (JSON, CSV or ITK-SNAP); its names
            override a SEG's segment labels.
        threshold: For a NIfTI probability map: voxels >= threshold become label 1.
        max_bytes: Upload size limit per file.
        max_voxels: Voxel limit, checked from the header before any voxel is read.

    Raises:
        GridMismatch: the mask is not on the image's grid (the message gives both grids).
        NotAVolume: the file holds a probability map or an image rather than labels.
        InputRejected: any other unreadable, oversized or unsupported upload.
    """
    if not files:
        raise EmptyInput("No mask file was uploaded. Upload one NIfTI label map or one DICOM SEG file.")
    if len(files) > 1:
        listed = ", ".join(name for name, _ in files[:4]) + (", ..." if len(files) > 4 else "")
        raise UnsupportedFormat(
            f"{len(files)} files were uploaded as one mask ({listed}). Upload a single NIfTI label map "
            "or a single DICOM SEG file."
        )
    name, data = files[0]
    _check_size(name, data, max_bytes)
    names: dict[int, LegendEntry] = {}
    if legend is not None:
        _check_size(legend[0], legend[1], max_bytes)
        try:
            names = parse_legend(*legend)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise UnsupportedFormat(
                f"The legend {legend[0]} has a malformed entry ({one_line(str(exc), 160)}). Each entry needs a "
                "label value, a name "
                "and optionally a colour such as #ff0000."
            ) from None
    kind = sniff(data)
    with reader_boundary(name, "a DICOM SEG" if kind is Format.DICOM else "a NIfTI label map", _EXPORT_AGAIN):
        if kind is Format.DICOM:
            if threshold is not None:
                log.info("Threshold ignored: a DICOM SEG says itself which pixels are inside")
            try:
                labels, seg_names = read_dicom_seg(data, name, volume, max_voxels=max_voxels)
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                # pydicom raises these for a SEG missing a required attribute or holding a malformed one.
                raise CorruptImage(
                    f"{name} is a DICOM SEG with a missing or malformed attribute ({library_reason(exc)}). "
                    "Export the segmentation again from its tool."
                ) from None
            names = {**seg_names, **names}
        elif kind in (Format.GZIP, Format.NIFTI1, Format.NIFTI2):
            raw, affine = _read_nifti_labels(data, name, max_bytes=max_bytes, max_voxels=max_voxels)
            check_same_grid(name, raw.shape, affine, volume)
            labels = _as_labels(raw, name, threshold)
        else:
            raise UnsupportedFormat(
                f"{name} is not a NIfTI label map (.nii, .nii.gz) or a DICOM SEG. Export the mask from the "
                "segmentation tool in one of these formats."
            )
        return _label_map(name, data, volume, labels, names, kind, threshold, legend)


def probability_map_range(name: str, data: bytes, *, max_bytes: int, max_voxels: int) -> tuple[float, float]:
    """The lowest and highest value of a NIfTI probability map, so the reader sees its scale (0 to 1,
    0 to 100 or 0 to 255) before choosing a threshold in it.

    Raises:
        UnsupportedFormat: a DICOM SEG or another non-NIfTI file (a SEG needs no threshold).
        InputRejected: any other unreadable or oversized upload.
    """
    if sniff(data) not in (Format.GZIP, Format.NIFTI1, Format.NIFTI2):
        raise UnsupportedFormat(
            f"{name} is not a NIfTI file, so it is not a probability map to threshold. A DICOM SEG says itself "
            "which voxels are inside: untick 'It is a probability map'."
        )
    raw, _ = _read_nifti_labels(data, name, max_bytes=max_bytes, max_voxels=max_voxels)
    lo, hi = np.inf, -np.inf
    for _, block in _blocks(raw):
        finite = block[np.isfinite(block)] if block.dtype.kind == "f" else block
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if lo > hi:
        raise CorruptImage(f"{name} holds no finite value; it is not a usable probability map.")
    return lo, hi


def default_threshold(value_range: tuple[float, float]) -> float:
    """Half the map's scale: 0.5 for probabilities 0 to 1, half the maximum for 0-100 or 0-255 maps."""
    return 0.5 if value_range[1] <= 1.0 else value_range[1] / 2.0


def _label_map(
    name: str,
    data: bytes,
    volume: Volume,
    labels: np.ndarray,
    names: dict[int, LegendEntry],
    kind: Format | None,
    threshold: float | None,
    legend: tuple[str, bytes] | None,
) -> LabelMap:
    counts = _value_counts(labels)
    if kind is not Format.DICOM and threshold is None:
        _refuse_smooth_maps(labels, counts, name)
    present = np.flatnonzero(counts)
    infos = build_labels(present, names)
    missing = sorted(set(names) - set(int(v) for v in present))
    if missing:
        log.info("Legend labels %s have no voxels in the uploaded mask", missing)
    top = int(present[-1]) if present.size else 0
    # The LabelMap contract is uint8 or int16; uint16 only for values int16 cannot hold.
    dtype = np.uint8 if top <= 255 else np.int16 if top <= 32767 else np.uint16
    # Keep the memory layout as read: a C-order copy of a Fortran-ordered NIfTI costs seconds.
    # A reoriented (flipped) view is copied once, in that same order, so its strides are positive.
    contiguous = labels.flags.c_contiguous or labels.flags.f_contiguous
    return LabelMap(
        data=read_only(labels.astype(dtype, order="K", copy=not contiguous)),
        affine=volume.affine,
        labels=infos,
        structures=structures_from_labels(infos),
        source=f"uploaded:{name}",
        sha256=_identity(data, threshold if kind is not Format.DICOM else None, legend),
    )


def _identity(data: bytes, threshold: float | None, legend: tuple[str, bytes] | None) -> str:
    """The hash of everything that shaped the label map: the file, the threshold and the legend. Two
    thresholds of one probability map are two different masks, and are stored as two runs."""
    digest = hashlib.sha256(data)
    digest.update(f"|threshold={threshold!r}|".encode())
    if legend is not None:
        digest.update(hashlib.sha256(legend[1]).digest())
    return digest.hexdigest()


def _read_nifti_labels(data: bytes, name: str, *, max_bytes: int, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """The label map's voxels as stored, reoriented to nibabel's closest canonical (RAS+) order, and
    their affine. It is read by the one bounded NIfTI reader, with the scans' limits: the header is
    checked before any voxel is read, so a gzip bomb or a mislabelled scan is refused unpacked."""
    stored = read_nifti_array(data, name, max_bytes=max_bytes, max_voxels=max_voxels, role="label map")
    return stored.canonical()


def check_same_grid(name: str, shape: tuple[int, ...], affine: np.ndarray, volume: Volume) -> None:
    """Refuses a mask whose canonical grid is not the image's (shape, spacing, position, direction)."""
    mask_grid, image_grid = describe_grid(shape, affine), describe_grid(volume.shape, volume.affine)
    if tuple(shape) != volume.shape or mask_grid != image_grid:
        raise GridMismatch(
            f"The mask {name} is {mask_grid} but the image is {image_grid}; export the mask on the image's grid."
        )
    # The grids are affine, so the largest gap between them is at one of the eight corners.
    ends = [(0, n - 1) for n in shape]
    corners = np.array([[i, j, k, 1.0] for i in ends[0] for j in ends[1] for k in ends[2]]).T
    gap = float(np.linalg.norm((np.asarray(affine) @ corners - volume.affine @ corners)[:3], axis=0).max())
    if gap > GRID_TOLERANCE_MM:
        raise GridMismatch(
            f"The mask {name} has the image's size ({image_grid}) but lies up to {gap:.3g} mm away from it "
            "(a different origin or direction); export the mask on the image's grid."
        )


def _check_size(name: str, data: bytes, max_bytes: int) -> None:
    if not data:
        raise EmptyInput(f"{name} is empty (0 bytes). Upload the file again.")
    if len(data) > max_bytes:
        raise InputTooLarge(f"{name} is {len(data) / 1e6:.1f} MB, over the upload limit of {max_bytes / 1e6:.0f} MB.")


def _as_labels(raw: np.ndarray, name: str, threshold: float | None) -> np.ndarray:
    """Whole-number labels 0..65535 (integer dtype), or the thresholded probability map as label 1."""
    if raw.dtype.kind == "f" and not all(np.isfinite(b).all() for _, b in _blocks(raw)):
        raise CorruptImage(f"{name} holds NaN or infinite values; it is not a usable mask.")
    if threshold is not None:
        mask = (raw >= threshold).view(np.uint8)
        if not mask.any():
            raise NotAVolume(
                f"No voxel of {name} reaches the threshold {threshold:g} (its values run from "
                f"{float(raw.min()):g} to {float(raw.max()):g}); choose a threshold inside that range."
            )
        return mask
    if raw.dtype.kind == "b":
        return raw.view(np.uint8)
    lo, hi = float(raw.min()), float(raw.max())
    if raw.dtype.kind == "f":
        for _, block in _blocks(raw):
            fractional = block[block != np.round(block)]
            if fractional.size:
                raise NotAVolume(
                    f"{name} holds fractional values (e.g. {float(fractional[0]):g}; range {lo:g} to {hi:g}), so "
                    "it looks like a probability map, not a label map. Threshold it (e.g. at 0.5 for "
                    "probabilities 0 to 1) or upload the label map the tool exported."
                )
    if lo < 0:
        raise NotAVolume(
            f"{name} holds negative values (down to {lo:g}); a label map holds 0 for background and "
            "positive whole numbers for labels. Is this the scan rather than its mask?"
        )
    if hi > MAX_LABEL_VALUE:
        raise NotAVolume(f"{name} holds the value {hi:g}; label values above {MAX_LABEL_VALUE} are not supported.")
    if raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2:
        return raw
    return raw.astype(np.uint16, order="K")


def _refuse_smooth_maps(labels: np.ndarray, counts: np.ndarray, name: str) -> None:
    """Refuses an integer scan or 0..255 probability map uploaded as a mask.

    Label maps are blocky: neighbouring labelled voxels mostly share a value. Intensities and
    probabilities change between almost every pair. Checked on a sample of slabs for speed.
    """
    distinct = int(np.count_nonzero(counts[1:]))
    if distinct <= _MANY_VALUES:
        return
    view = labels.transpose(memory_order(labels))
    sample = view[:: max(1, view.size // _SAMPLE_VOXELS)]
    both = (sample[..., 1:] != 0) & (sample[..., :-1] != 0)
    pairs = int(np.count_nonzero(both))
    changing = int(np.count_nonzero(both & (sample[..., 1:] != sample[..., :-1]))) / pairs if pairs else 0.0
    if changing > _SMOOTH_FRACTION:
        raise NotAVolume(
            f"{name} has {distinct} different values that change between {changing:.0%} of neighbouring "
            "voxels: it looks like a scan or a probability map, not a label map. Set a threshold to turn "
            "a probability map into a mask, or upload the label map itself."
        )


def _value_counts(labels: np.ndarray) -> np.ndarray:
    """Voxels per value, counted in blocks so no full-size int64 copy is made."""
    counts = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int64)
    for _, block in _blocks(labels):
        counts += np.bincount(block.ravel(), minlength=counts.size)
    return counts


def _blocks(array: np.ndarray):
    """Slabs in memory order (NIfTI arrays are Fortran-ordered), so none is copied."""
    return memory_blocks(array.transpose(memory_order(array)))
