"""Structure measurements on synthetic label maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.volume.measure import measure_structures, measurements_table, structures_from_labels
from inference.volume.types import LabelInfo, Structure


def _affine(spacing, rotation=None) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = (np.eye(3) if rotation is None else rotation) @ np.diag(spacing)
    affine[:3, 3] = (-90.0, 12.5, -40.0)
    return affine


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = math.cos(ax), math.sin(ax), math.cos(az), math.sin(az)
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return about_z @ about_x


def _sphere(radius_mm: float, spacing) -> np.ndarray:
    """A ball whose centre sits off the voxel centres (less voxelisation bias than a centred one)."""
    shape = [2 * math.ceil(radius_mm / s) + 5 for s in spacing]
    axes = [(np.arange(n) - (n // 2 + off)) * s for n, s, off in zip(shape, spacing, (0.3, 0.1, 0.2))]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return (x**2 + y**2 + z**2 <= radius_mm**2).astype(np.uint8)


def _one(label_map, affine, values=(1,), name="s"):
    return measure_structures(label_map, affine, [Structure(name, tuple(values))])[0]


@pytest.mark.parametrize("radius", [10.0, 15.0, 20.0])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (0.5, 0.5, 3.0)])
def test_sphere_volume_and_diameter(radius, spacing):
    m = _one(_sphere(radius, spacing), _affine(spacing))
    expected_ml = 4 / 3 * math.pi * radius**3 / 1000
    assert m.volume_ml == pytest.approx(expected_ml, rel=0.01)
    assert abs(m.max_axial_extent_mm - 2 * radius) <= max(spacing[:2])


def test_box_is_exact_with_slice_range_and_diagonal():
    spacing = (0.8, 0.7, 2.5)
    label_map = np.zeros((60, 50, 30), dtype=np.int16)
    label_map[10:30, 5:45, 7:19] = 3  # 20 x 40 x 12 voxels
    m = _one(label_map, _affine(spacing), values=(3,))
    assert m.voxels == 20 * 40 * 12
    assert m.volume_ml == pytest.approx(20 * 0.8 * 40 * 0.7 * 12 * 2.5 / 1000, rel=1e-12)
    assert (m.axial_first, m.axial_last) == (7, 18)
    assert m.max_axial_extent_mm == pytest.approx(math.hypot(19 * 0.8, 39 * 0.7), rel=1e-9)


def test_oblique_grid_gives_the_same_ml_and_extent():
    spacing = (0.8, 0.8, 2.5)
    ball = _sphere(15.0, spacing)
    straight = _one(ball, _affine(spacing))
    oblique = _one(ball, _affine(spacing, _rotation(0.3, 0.5)))
    assert oblique.voxels == straight.voxels
    assert oblique.volume_ml == pytest.approx(straight.volume_ml, rel=1e-9)
    assert oblique.max_axial_extent_mm == pytest.approx(straight.max_axial_extent_mm, rel=1e-9)


def test_extent_matches_brute_force_on_irregular_shapes():
    rng = np.random.default_rng(7)
    label_map = (rng.random((25, 30, 6)) > 0.93).astype(np.uint8)
    label_map[3:9, 4:20, 2] = 1
    sheared = _affine((0.6, 0.9, 2.0))
    sheared[:3, 1] += (0.3, 0.0, 0.1)  # a sheared grid: columns not orthogonal
    best = 0.0
    for z in range(label_map.shape[2]):
        ij = np.argwhere(label_map[:, :, z])
        points = ij @ sheared[:3, :2].T
        if len(points):
            best = max(best, float(np.linalg.norm(points[:, None] - points[None], axis=2).max()))
    assert _one(label_map, sheared).max_axial_extent_mm == pytest.approx(best, rel=1e-9)


def test_memory_layout_does_not_change_results():
    """NIfTI arrays arrive Fortran-ordered and reoriented ones as flipped views."""
    rng = np.random.default_rng(3)
    label_map = rng.integers(0, 4, size=(30, 20, 12)).astype(np.uint8) * (rng.random((30, 20, 12)) > 0.6)
    structures = [Structure("a", (1,)), Structure("b", (2, 3))]
    expected = measure_structures(label_map, _affine((0.9, 0.8, 2.0)), structures)
    flipped = np.asfortranarray(label_map[::-1, :, ::-1])[::-1, :, ::-1]
    permuted = np.ascontiguousarray(label_map.transpose(2, 0, 1)).transpose(1, 2, 0)
    for layout in (np.asfortranarray(label_map), flipped, permuted):
        assert measure_structures(layout, _affine((0.9, 0.8, 2.0)), structures) == expected


def test_union_structure_sums_its_values():
    label_map = np.zeros((20, 20, 10), dtype=np.uint8)
    label_map[2:6, 2:6, 1:3] = 1  # 32 voxels
    label_map[10:12, 10:15, 5:9] = 2  # 40 voxels
    label_map[15, 15, 2] = 4  # 1 voxel, on a slice of label 1
    whole, core, single = measure_structures(
        label_map,
        _affine((1.0, 1.0, 1.0)),
        [Structure("Whole", (1, 2, 4)), Structure("Core", (1, 4)), Structure("Dot", (4,))],
    )
    assert (whole.voxels, whole.axial_first, whole.axial_last) == (73, 1, 8)
    assert whole.volume_ml == pytest.approx(0.073)
    assert (core.voxels, core.axial_first, core.axial_last) == (33, 1, 2)
    # On slice 2 the union spans from label 1's corner (2, 2) to label 4's voxel (15, 15).
    assert whole.max_axial_extent_mm == pytest.approx(math.hypot(13, 13))
    assert core.max_axial_extent_mm == pytest.approx(math.hypot(13, 13))
    assert single.max_axial_extent_mm == 0.0 and single.voxels == 1


def test_empty_and_absent_structures():
    label_map = np.zeros((8, 8, 4), dtype=np.uint8)
    label_map[1, 1, 1] = 1
    empty, absent = measure_structures(
        label_map, _affine((1.0, 1.0, 1.0)), [Structure("Empty", (2,)), Structure("Absent", (300,))]
    )
    for m in (empty, absent):
        assert (m.voxels, m.volume_ml, m.axial_first, m.axial_last, m.max_axial_extent_mm) == (0, 0.0, None, None, 0.0)


def test_many_labels_in_one_counting_pass(monkeypatch):
    label_map = np.zeros((40, 40, 20), dtype=np.int16)
    for value in range(1, 101):
        x, y = divmod(value - 1, 10)
        label_map[4 * x : 4 * x + 2, 4 * y : 4 * y + 3, value % 20] = value  # 6 voxels on slice value % 20
    calls = []
    real = np.bincount
    monkeypatch.setattr(np, "bincount", lambda *a, **k: calls.append(1) or real(*a, **k))
    measured = measure_structures(label_map, _affine((1, 1, 1)), [Structure(f"L{v}", (v,)) for v in range(1, 101)])
    assert len(calls) == 3  # one block: per-slice, per-row and per-column counts for all labels at once
    assert [m.voxels for m in measured] == [6] * 100
    assert all(m.axial_first == m.axial_last == v % 20 for v, m in zip(range(1, 101), measured))


def test_sparse_large_label_values_are_packed():
    label_map = np.zeros((30, 30, 30), dtype=np.uint16)
    label_map[1:3, 1:3, 1:3] = 60000
    label_map[5, 5, 5:10] = 1000
    big, small = measure_structures(label_map, _affine((1, 1, 1)), [Structure("a", (60000,)), Structure("b", (1000,))])
    assert (big.voxels, small.voxels, small.axial_first, small.axial_last) == (8, 5, 5, 9)


def test_table_and_structures_from_labels():
    labels = [
        LabelInfo(2, "Kidney", (0, 0, 255)),
        LabelInfo(0, "Background", (0, 0, 0)),
        LabelInfo(1, "Liver", (255, 0, 0)),
    ]
    structures = structures_from_labels(labels)
    assert structures == (Structure("Liver", (1,)), Structure("Kidney", (2,)))
    label_map = np.zeros((5, 5, 5), dtype=np.uint8)
    label_map[0:3, 0, 0] = 1
    rows = measurements_table(measure_structures(label_map, _affine((0.7, 0.7, 0.7)), structures))
    assert rows[0] == {
        "name": "Liver",
        "values": [1],
        "voxels": 3,
        "volume_ml": pytest.approx(3 * 0.343 / 1000, rel=1e-12),
        "axial_first": 0,
        "axial_last": 0,
        "max_axial_extent_mm": pytest.approx(1.4),
    }
    assert rows[1]["voxels"] == 0 and rows[1]["axial_first"] is None
