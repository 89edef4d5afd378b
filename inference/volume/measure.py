"""Volumes, axial slice ranges and longest in-plane diameters of the structures in a label map.

This runs on every new mask, so the whole label map is read once, block by block in memory
order: its non-zero voxels are counted per (label, index) along each of the three axes with
``np.bincount``. That gives every label's voxel count, axial slice range and 3D bounding box at
once; only a structure's bounding box is looked at again, to find its diameter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inference.volume.types import LabelInfo, Structure, StructureMeasurement, voxel_volume_ml

log = logging.getLogger(__name__)

# Voxels per block of the counting pass: keeps the int64 temporaries to tens of MB whatever the scan.
_BLOCK_VOXELS = 4_000_000
# Above this many (label x axis position) bins the label values are first packed to 0..K-1.
_MAX_DIRECT_BINS = 1 << 22


@dataclass(frozen=True)
class _Profiles:
    """Per-label voxel counts along each axis; row ``lut[value]`` belongs to ``value``."""

    lut: np.ndarray  # value -> row, -1 where the value is absent
    per_z: np.ndarray  # (K, Z) voxel counts per axial slice
    has_x: np.ndarray  # (K, X) bool
    has_y: np.ndarray  # (K, Y) bool


def measure_structures(
    label_map: np.ndarray, affine: np.ndarray, structures: Sequence[Structure]
) -> tuple[StructureMeasurement, ...]:
    """Measures each structure (the union of its label values) of a canonical label map.

    Args:
        label_map: Non-negative integer array (X, Y, Z), axis 2 axial.
        affine: Canonical voxel index -> RAS+ mm; oblique grids are measured in true mm.
        structures: What to measure; values absent from the map give an empty measurement.

    Returns:
        One ``StructureMeasurement`` per structure, in the given order.
    """
    if label_map.ndim != 3:
        raise ValueError(f"label map must be 3D, got shape {label_map.shape}")
    if not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"label map must hold integers, got {label_map.dtype}")
    affine = np.asarray(affine, dtype=np.float64)
    ml_per_voxel = voxel_volume_ml(affine)
    profiles = _profiles(label_map)
    return tuple(_measure_one(label_map, affine, ml_per_voxel, profiles, s) for s in structures)


def measurements_table(measurements: Sequence[StructureMeasurement]) -> list[dict]:
    """Rows for display and JSON, at full precision (the UI rounds)."""
    return [
        {
            "name": m.name,
            "values": list(m.values),
            "voxels": m.voxels,
            "volume_ml": m.volume_ml,
            "axial_first": m.axial_first,
            "axial_last": m.axial_last,
            "max_axial_extent_mm": m.max_axial_extent_mm,
        }
        for m in measurements
    ]


def structures_from_labels(labels: Sequence[LabelInfo]) -> tuple[Structure, ...]:
    """One structure per non-zero label value, in ascending value order."""
    ordered = sorted(labels, key=lambda info: info.value)
    return tuple(Structure(name=info.name, values=(info.value,)) for info in ordered if info.value)


def _profiles(label_map: np.ndarray) -> _Profiles:
    # Walk the array in memory order (NIfTI data arrives Fortran-ordered): a view whose axes run
    # slowest to fastest makes every block contiguous, so nothing is copied.
    order = memory_order(label_map)
    view = label_map.transpose(order)
    top = int(view.max()) if view.size else 0
    if view.size and int(view.min()) < 0:
        raise ValueError("label map holds negative values")
    lut = np.arange(top + 1, dtype=np.intp)
    if (top + 1) * max(view.shape) > _MAX_DIRECT_BINS:
        # Sparse large values (e.g. 1000, 2000): pack to 0..K-1 so the bins stay few.
        counts = np.zeros(top + 1, dtype=np.int64)
        for _, block in memory_blocks(view):
            counts += np.bincount(block.ravel(), minlength=top + 1)
        present = np.flatnonzero(counts)
        lut = np.full(top + 1, -1, dtype=np.intp)
        lut[present] = np.arange(present.size)
    k = int(lut.max()) + 1
    n0, n1, n2 = view.shape
    per_axis = [np.zeros(k * n, dtype=np.int64) for n in view.shape]
    for start, block in memory_blocks(view):
        # Background is most of a scan and is never measured: count only the labelled voxels.
        flat = np.flatnonzero(block)
        if not flat.size:
            continue
        rows = lut[block.ravel()[flat]]
        i0, rest = np.divmod(flat, n1 * n2)
        i1, i2 = np.divmod(rest, n2)
        for counts, index, n in zip(per_axis, (i0 + start, i1, i2), view.shape):
            counts += np.bincount(rows * n + index, minlength=k * n)
    by_axis = {axis: per_axis[i].reshape(k, view.shape[i]) for i, axis in enumerate(order)}
    return _Profiles(lut=lut, per_z=by_axis[2], has_x=by_axis[0] > 0, has_y=by_axis[1] > 0)


def memory_order(array: np.ndarray) -> tuple[int, ...]:
    """The axes from the largest stride to the smallest: C order (0, 1, 2), Fortran (2, 1, 0)."""
    return tuple(int(a) for a in np.argsort([-abs(s) for s in array.strides], kind="stable"))


def memory_blocks(view: np.ndarray):
    """(first index, block) slabs along axis 0 of about ``_BLOCK_VOXELS`` voxels each."""
    step = max(1, _BLOCK_VOXELS // max(1, int(np.prod(view.shape[1:]))))
    for start in range(0, view.shape[0], step):
        yield start, view[start : start + step]


def _measure_one(
    label_map: np.ndarray,
    affine: np.ndarray,
    ml_per_voxel: float,
    profiles: _Profiles,
    structure: Structure,
) -> StructureMeasurement:
    values = tuple(sorted(set(int(v) for v in structure.values)))
    rows = [int(profiles.lut[v]) for v in values if 0 < v < profiles.lut.size and profiles.lut[v] >= 0]
    per_z = profiles.per_z[rows].sum(axis=0) if rows else np.zeros(label_map.shape[2], dtype=np.int64)
    voxels = int(per_z.sum())
    if voxels == 0:
        return StructureMeasurement(structure.name, tuple(structure.values), 0, 0.0, None, None, 0.0)
    z_range = _span(np.asarray(per_z > 0))
    x_range = _span(np.asarray(profiles.has_x[rows].any(axis=0)))
    y_range = _span(np.asarray(profiles.has_y[rows].any(axis=0)))
    crop = label_map[x_range[0] : x_range[1] + 1, y_range[0] : y_range[1] + 1, z_range[0] : z_range[1] + 1]
    mask: np.ndarray = np.asarray(crop == values[0]) if len(values) == 1 else np.isin(crop, values)
    extent = _max_axial_extent(mask, affine)
    return StructureMeasurement(
        name=structure.name,
        values=tuple(structure.values),
        voxels=voxels,
        volume_ml=voxels * ml_per_voxel,
        axial_first=z_range[0],
        axial_last=z_range[1],
        max_axial_extent_mm=extent,
    )


def _span(present: np.ndarray) -> tuple[int, int]:
    hits = np.flatnonzero(present)
    return int(hits[0]), int(hits[-1])


def _max_axial_extent(mask: np.ndarray, affine: np.ndarray) -> float:
    """Longest distance between voxel centres of the mask on any one axial slice, in mm.

    The hull of a slice is the hull of each row's first and last voxel, found for all slices at
    once. Slices are visited from the largest bounding-box diagonal down; one whose diagonal
    cannot beat the best diameter so far ends the search.
    """
    col_x, col_y = affine[:3, 0], affine[:3, 1]
    slices = np.ascontiguousarray(mask.transpose(2, 0, 1))  # (Z, X, Y)
    row_hit: np.ndarray = np.asarray(slices.any(axis=2))  # (Z, X)
    y_first, y_last = _first_last(slices)  # (Z, X) each
    x_first, x_last = _first_last(row_hit)  # (Z,) each
    y_lo = np.where(row_hit, y_first, np.iinfo(np.intp).max).min(axis=1)
    y_hi = np.where(row_hit, y_last, -1).max(axis=1)
    dx = (x_last - x_first)[:, None].astype(np.float64)
    dy = (y_hi - y_lo)[:, None].astype(np.float64)
    # On a sheared grid the box is a parallelogram; its longer diagonal bounds any chord.
    bound = np.maximum(np.linalg.norm(dx * col_x + dy * col_y, axis=1), np.linalg.norm(dx * col_x - dy * col_y, axis=1))
    bound[~row_hit.any(axis=1)] = -1.0
    best = 0.0
    for k in np.argsort(-bound, kind="stable"):
        if bound[k] <= best:
            break
        xs = np.flatnonzero(row_hit[k])
        ends = np.concatenate([np.stack([y_first[k, xs], xs], axis=1), np.stack([y_last[k, xs], xs], axis=1)]).astype(
            np.int32
        )
        hull = cv2.convexHull(ends).reshape(-1, 2).astype(np.float64)  # (y, x) pairs
        points = hull[:, 1:2] * col_x + hull[:, 0:1] * col_y
        gaps = points[:, None, :] - points[None, :, :]
        best = max(best, float(np.sqrt((gaps**2).sum(axis=2).max())))
    return best


def _first_last(present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last True index along the last axis (meaningless where there is none)."""
    first = present.argmax(axis=-1)
    last = present.shape[-1] - 1 - present[..., ::-1].argmax(axis=-1)
    return first, last
