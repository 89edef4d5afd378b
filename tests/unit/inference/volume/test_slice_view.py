"""The viewer's geometry: radiological orientation, true aspect ratio, positions in mm, and masks
drawn only where they are and only when visible."""

from __future__ import annotations

import numpy as np
import pytest

from inference.volume.slices import (
    colour_table,
    display_size,
    orientation_marks,
    oriented_slice,
    pixel_size_mm,
    position_text,
    render_pair,
)
from inference.volume.types import LabelInfo

SHAPE = (40, 50, 30)  # canonical: x towards the patient's right, y anterior, z superior


def _marker_volume() -> np.ndarray:
    data = np.zeros(SHAPE, dtype=np.float32)
    data[35:, 20:25, 10:15] = 1.0  # patient's right (high x)
    data[15:20, 45:, 10:15] = 2.0  # anterior (high y)
    data[15:20, 20:25, 27:] = 3.0  # superior (high z)
    return data


def _where(picture: np.ndarray, value: float) -> tuple[float, float]:
    rows, cols = np.nonzero(picture == value)
    return rows.mean() / picture.shape[0], cols.mean() / picture.shape[1]


def test_axial_shows_the_patients_right_on_the_left_and_anterior_at_the_top():
    axial = oriented_slice(_marker_volume(), "Axial", 12)
    assert axial.shape == (50, 40)
    assert _where(axial, 1.0)[1] < 0.2  # right side of the patient: screen left
    assert _where(axial, 2.0)[0] < 0.2  # anterior: top
    assert orientation_marks("Axial").left == "R" and orientation_marks("Axial").top == "A"


def test_coronal_and_sagittal_put_superior_at_the_top_and_sagittal_anterior_left():
    volume = _marker_volume()
    coronal = oriented_slice(volume, "Coronal", 22)
    assert coronal.shape == (30, 40)
    assert _where(coronal, 3.0)[0] < 0.2 and _where(coronal, 1.0)[1] < 0.2
    sagittal = oriented_slice(volume, "Sagittal", 17)
    assert sagittal.shape == (30, 50)
    assert _where(sagittal, 2.0)[1] < 0.2 and _where(sagittal, 3.0)[0] < 0.2
    assert orientation_marks("Sagittal").left == "A"


def test_anisotropic_voxels_keep_their_true_aspect_and_positions_are_in_mm():
    spacing = (0.5, 0.5, 3.0)
    assert pixel_size_mm(spacing, "Coronal") == (3.0, 0.5)
    # 30 slices x 3 mm = 90 mm high, 40 x 0.5 mm = 20 mm wide
    assert display_size((30, 40), pixel_size_mm(spacing, "Coronal"), 200) == (900, 200)
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    affine[:3, 3] = (-10.0, -12.5, -45.0)
    assert position_text(affine, SHAPE, "Axial", 15).startswith("Axial 16 of 30 · z = 0.0 mm (RAS, + is superior)")


def test_slices_outside_the_volume_are_refused():
    with pytest.raises(IndexError, match="Axial slice 30 is outside 0..29"):
        oriented_slice(_marker_volume(), "Axial", 30)
    with pytest.raises(ValueError, match="view must be one of"):
        oriented_slice(_marker_volume(), "Oblique", 0)


def test_masks_are_drawn_only_where_they_are_and_hidden_labels_not_at_all():
    image = np.full((20, 20), 100, dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:10, 5:10] = 1
    mask[12:15, 12:15] = 2
    labels = (LabelInfo(1, "Liver", (255, 0, 0)), LabelInfo(2, "Spleen", (0, 0, 255)))
    grey, overlay = render_pair(image, mask, colour_table(labels, {1}), 0.5, (200, 200), orientation_marks("Axial"))
    assert grey.shape == (200, 200) and overlay.shape == (200, 200, 3)
    liver = overlay[70, 70]
    assert liver[0] > liver[1] and liver[0] > liver[2]  # tinted red inside label 1
    assert tuple(overlay[130, 130]) == (100, 100, 100)  # label 2 hidden: untouched grey
    assert tuple(overlay[100, 50]) == (100, 100, 100)  # background untouched
    assert grey[70, 70] == 100  # the plain image never carries the mask
