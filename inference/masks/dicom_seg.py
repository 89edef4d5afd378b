"""DICOM SEG (Segmentation Storage) to a label map on a volume's canonical grid, with pydicom only.

Each frame is one segment on one plane. Its pixels are placed through their patient coordinates
(DICOM LPS -> RAS -> the volume's voxel indices), never by frame order, so a SEG whose frames
are sorted differently from the image still lands right, and one made on another grid is refused.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
from pydicom.pixels import iter_pixels

from core.errors import CorruptImage, GridMismatch, InputTooLarge, UnsupportedFormat
from inference.formats import library_reason, one_line
from inference.masks.legend import LegendEntry, cielab_to_rgb
from inference.volume.types import Volume, spacing_from_affine

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_GRID_TOLERANCE_VOXELS = 0.01
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def read_dicom_seg(
    data: bytes, filename: str, volume: Volume, *, max_voxels: int
) -> tuple[np.ndarray, dict[int, LegendEntry]]:
    """Decodes a DICOM SEG onto ``volume``'s grid.

    Returns:
        (labels, names): a uint16 (X, Y, Z) array of segment numbers (0 = none; where segments
        overlap the higher number wins) and {segment number: SegmentLabel and colour}.

    Raises:
        UnsupportedFormat: a DICOM file that is not a BINARY or FRACTIONAL SEG.
        GridMismatch: a frame whose pixels do not fall on the volume's voxels.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise CorruptImage(
            f"{filename} is a damaged DICOM file and could not be read ({library_reason(exc)})."
        ) from None
    sop_class = one_line(str(ds.get("SOPClassUID", "")), 64)
    if sop_class != SEG_SOP_CLASS:
        modality = one_line(str(ds.get("Modality", "file")), 16)
        raise UnsupportedFormat(
            f"{filename} is a DICOM {modality} (SOP class {sop_class or 'missing'}), not a "
            "DICOM SEG. Upload the segmentation as a DICOM SEG or a NIfTI label map; RT structure sets "
            "(contours) are not supported."
        )
    kind = one_line(str(ds.get("SegmentationType", "")), 16).upper()
    if kind not in ("BINARY", "FRACTIONAL"):
        raise UnsupportedFormat(
            f"{filename} is a DICOM SEG of type {kind or 'missing'}; only BINARY and FRACTIONAL SEGs are supported."
        )
    names = _segment_names(ds, filename)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    # Each segment may cover the whole grid, no more; this bounds decoding before it starts.
    if frames * rows * cols > max_voxels * max(1, len(names)):
        raise InputTooLarge(
            f"{filename} holds {frames} frames of {rows}x{cols} pixels for {len(names)} segments, more than "
            f"{max_voxels / 1e6:.0f} million voxels per segment. Export only the segments under review."
        )
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
    if len(per_frame) < frames:
        raise CorruptImage(
            f"{filename} has {frames} frames but position information for only {len(per_frame)}; export the SEG again."
        )
    if len(per_frame) > frames:
        log.warning("DICOM SEG: %d per-frame groups for %d frames; using the first %d", len(per_frame), frames, frames)
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    placements = [_placement(ds, shared, per_frame[i], i, volume, filename) for i in range(frames)]
    for i, (segment, *_) in enumerate(placements):
        if segment not in names:
            raise CorruptImage(
                f"{filename}: frame {i + 1} refers to segment {segment}, which the SEG does not describe."
            )
    cut = 1.0 if kind == "BINARY" else 0.5 * float(ds.get("MaximumFractionalValue", 255) or 255)
    labels = np.zeros(volume.shape, dtype=np.uint16)
    overlaps = 0
    decoded = 0
    # One frame at a time: a SEG with many segments can be far larger decoded than packed.
    for i, frame in enumerate(_frames(ds, filename)):
        if i >= frames:
            break
        decoded += 1
        segment, origin, step_col, step_row = placements[i]
        r, c = np.nonzero((frame >= cut) & (frame > 0))
        if not r.size:
            continue
        x, y, z = (origin + c[:, None] * step_col + r[:, None] * step_row).T
        previous = labels[x, y, z]
        overlaps += int(np.count_nonzero((previous != 0) & (previous != segment)))
        # The higher segment number wins whatever the frame order.
        labels[x, y, z] = np.maximum(previous, segment)
    if decoded < frames:
        raise CorruptImage(f"{filename} declares {frames} frames but holds {decoded}; export the SEG again.")
    if overlaps:
        log.warning(
            "DICOM SEG: %d voxels belong to more than one segment; the higher segment number was kept", overlaps
        )
    return labels, names


def _frames(ds: pydicom.Dataset, filename: str):
    """The decoded frames, with a decoding failure (no codec, truncated data) said plainly."""
    if int(ds.get("BitsAllocated", 0) or 0) == 1 and not ds.file_meta.TransferSyntaxUID.is_compressed:
        yield from _bit_frames(ds, filename)
        return
    frames = iter_pixels(ds)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many types
            raise CorruptImage(
                f"{filename}: the segmentation pixels could not be decoded ({library_reason(exc)})."
            ) from None
        yield np.asarray(frame)


def _bit_frames(ds: pydicom.Dataset, filename: str):
    """The frames of an uncompressed BINARY SEG, unpacked one at a time. Their bits run on from one
    frame to the next (DICOM pads only the end of the pixel data), so a frame whose size is not a
    multiple of 8 starts inside a byte: pydicom 3.0's frame iterator misreads those (a 197 x 233
    frame), its whole-array decoding would hold every segment's frames at once."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    size = rows * cols
    data = ds.get("PixelData") or b""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(data) * 8 < frames * size:
        raise CorruptImage(
            f"{filename}: the segmentation pixels are truncated ({len(data)} bytes for {frames} frames of "
            f"{rows}x{cols} pixels); export the SEG again."
        )
    for index in range(frames):
        start = index * size
        first, skip = divmod(start, 8)
        chunk = np.frombuffer(data, dtype=np.uint8, count=(skip + size + 7) // 8, offset=first)
        bits = np.unpackbits(chunk, bitorder="little")[skip : skip + size]
        yield bits.reshape(rows, cols)


def _segment_names(ds: pydicom.Dataset, filename: str) -> dict[int, LegendEntry]:
    names: dict[int, LegendEntry] = {}
    for item in ds.get("SegmentSequence") or []:
        number = int(item.SegmentNumber)
        label = " ".join(str(item.get("SegmentLabel", "") or "").split()) or f"Segment {number}"
        lab = item.get("RecommendedDisplayCIELabValue")
        color = cielab_to_rgb(lab) if lab is not None and len(lab) == 3 else None
        names[number] = LegendEntry(label, color)
    if not names:
        raise CorruptImage(f"{filename} is a DICOM SEG without a segment list (SegmentSequence); export it again.")
    return names


def _functional(shared, frame, sequence: str):
    """A functional group item, per-frame first and shared second (DICOM allows either)."""
    for group in (frame, shared):
        items = group.get(sequence) if group is not None else None
        if items:
            return items[0]
    return None


def _placement(ds, shared, frame, index: int, volume: Volume, filename: str):
    """(segment, voxel of pixel (0, 0), voxel step per column, voxel step per row) as int arrays."""
    ident = _functional(shared, frame, "SegmentIdentificationSequence")
    position = _functional(shared, frame, "PlanePositionSequence")
    orientation = _functional(shared, frame, "PlaneOrientationSequence")
    measures = _functional(shared, frame, "PixelMeasuresSequence")
    if ident is None or position is None or orientation is None or measures is None:
        raise CorruptImage(
            f"{filename}: frame {index + 1} lacks its segment number, position, orientation or pixel spacing; "
            "export the SEG again."
        )
    segment = int(ident.ReferencedSegmentNumber)
    ipp = np.array([float(v) for v in position.ImagePositionPatient])
    iop = np.array([float(v) for v in orientation.ImageOrientationPatient])
    spacing_row, spacing_col = (float(v) for v in measures.PixelSpacing)
    # Pixel (r, c) lies at IPP + c * spacing_col * row_cosine + r * spacing_row * col_cosine (LPS).
    to_voxel = np.linalg.inv(volume.affine)[:3, :3]
    origin = np.linalg.inv(volume.affine) @ np.append(ipp * _LPS_TO_RAS, 1.0)
    step_col = to_voxel @ (iop[:3] * spacing_col * _LPS_TO_RAS)
    step_row = to_voxel @ (iop[3:] * spacing_row * _LPS_TO_RAS)
    rows, cols = int(ds.Rows), int(ds.Columns)
    exact = [np.rint(v) for v in (origin[:3], step_col, step_row)]
    # The map is affine in (r, c), so its largest miss from integers is at a corner.
    miss = (
        np.abs(origin[:3] - exact[0])
        + (cols - 1) * np.abs(step_col - exact[1])
        + (rows - 1) * np.abs(step_row - exact[2])
    )
    corners = [exact[0] + a * (cols - 1) * exact[1] + b * (rows - 1) * exact[2] for a in (0, 1) for b in (0, 1)]
    # Each pixel step must be one voxel along its own axis: no gaps, no two pixels on one voxel.
    unit = [np.abs(step).sum() == 1 for step in exact[1:]] + [float(np.abs(exact[1]) @ np.abs(exact[2])) == 0.0]
    inside = all(np.all(c >= 0) and np.all(c < np.array(volume.shape)) for c in corners)
    if not all(unit):
        where = "does not step one voxel per pixel (a different pixel spacing or direction)"
    elif miss.max() > _GRID_TOLERANCE_VOXELS:
        where = f"misses the image's voxel centres by up to {miss.max():.2f} voxel (a shifted or tilted grid)"
    elif not inside:
        where = "falls outside the image"
    else:
        return segment, exact[0].astype(np.intp), exact[1].astype(np.intp), exact[2].astype(np.intp)
    raise GridMismatch(
        f"The DICOM SEG {filename} does not fit the image: its frame {index + 1} ({rows}x{cols} at "
        f"{spacing_row:g}x{spacing_col:g} mm) {where}, and the image is "
        f"{describe_grid(volume.shape, volume.affine)}. "
        "Export the SEG from this image series."
    )


def describe_grid(shape, affine: np.ndarray) -> str:
    """'197x233x189 at 1.0 mm' or '512x512x120 at 0.78x0.78x2.5 mm', as a reviewer reads a grid."""
    spacing = [_mm(s) for s in spacing_from_affine(affine)]
    size = "x".join(str(int(n)) for n in shape)
    return f"{size} at {spacing[0] if len(set(spacing)) == 1 else 'x'.join(spacing)} mm"


def _mm(value: float) -> str:
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
