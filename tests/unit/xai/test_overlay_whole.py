"""The report's picture: the whole film, the heatmap over the square the model sees."""

from __future__ import annotations

import numpy as np

from inference.images.preprocess import centre_crop_box
from xai.overlay import whole_image_overlay


def test_a_landscape_film_keeps_its_sides_and_the_heatmap_sits_on_the_crop() -> None:
    rows, cols = 885, 1000
    pixels = np.tile(np.linspace(0, 255, cols, dtype=np.float32), (rows, 1))
    pixels[:, :40] = 7.0  # the lateral chest wall at the left edge: outside the model's crop
    cam = np.zeros((224, 224), dtype=np.float32)
    cam[100:124, 100:124] = 1.0
    grey, heat = whole_image_overlay(pixels, cam, "jet", 0.45, trained=True)
    assert grey.shape == (rows, cols), "at most 1024 on a side: this one is kept whole"
    assert (grey[:, :30] == 7).all(), "the side of the film outside the crop is in the picture"
    box = centre_crop_box((rows, cols))
    outside = heat[:, : box.left - 3]
    assert (outside == grey[:, : box.left - 3, None]).all(), "no heat outside the crop"
    middle = heat[box.top + box.size // 2, box.left + box.size // 2]
    assert middle[0] > middle[2], "the peak in the crop's middle is hot (red over blue)"


def test_a_large_film_is_reduced_for_the_report() -> None:
    grey, heat = whole_image_overlay(
        np.zeros((2400, 3000), np.float32), np.zeros((8, 8), np.float32), "jet", 0.45, trained=False
    )
    # Untrained: the red band goes above the film (819 / 14 = 58 rows), not over it.
    assert grey.shape == (819, 1024) and heat.shape == (819 + 58, 1024, 3)
