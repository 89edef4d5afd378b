from __future__ import annotations

import numpy as np
import pytest

from xai.overlay import COLORMAPS, colormap_lut, jpeg_bytes, legend_png, overlay, region_value_map


def test_opacity_blends_between_image_and_heatmap() -> None:
    gray = np.full((64, 64), 100, np.uint8)
    cam = np.ones((16, 16), np.float32)
    hot = colormap_lut("jet")[255].astype(int)
    low = overlay(gray, cam, "jet", 0.1, trained=True).astype(int)
    high = overlay(gray, cam, "jet", 0.9, trained=True).astype(int)
    assert np.abs(low[0, 0] - (0.9 * 100 + 0.1 * hot)).max() <= 1
    assert np.abs(high[0, 0] - (0.1 * 100 + 0.9 * hot)).max() <= 1


def test_untrained_heatmaps_carry_their_label_in_the_pixels() -> None:
    """Fullscreen, saved or pasted, an untrained heatmap still says so: the banner is in the pixels."""
    from core.annotate import BANNER_RGB

    gray = np.full((224, 224), 100, np.uint8)
    cam = np.zeros((7, 7), np.float32)
    trained = overlay(gray, cam, "jet", 0.45, trained=True)
    untrained = overlay(gray, cam, "jet", 0.45, trained=False)
    band = untrained[:16]
    red = np.all(band == BANNER_RGB, axis=2).mean()
    white = np.all(band > 200, axis=2).mean()
    assert red > 0.5 and white > 0.02  # a red band with white text across the top
    # Above the heatmap, not over it: the whole heatmap is there under the band.
    assert np.array_equal(untrained[untrained.shape[0] - trained.shape[0] :], trained)
    assert not np.all(trained[:16] == BANNER_RGB, axis=2).any()

    values = np.array([0.2, -0.1], np.float32)
    regions = np.zeros((224, 224), np.int32)
    regions[:, 112:] = 1
    tinted, _ = region_value_map(gray, regions, values, trained=False)
    assert np.all(tinted[:16] == BANNER_RGB, axis=2).mean() > 0.5


@pytest.mark.parametrize("opacity", [0.0, 0.95, 1.0])
def test_opacity_outside_range_is_refused(opacity: float) -> None:
    with pytest.raises(ValueError, match="opacity must be between 0.1 and 0.9"):
        overlay(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), "jet", opacity, trained=True)


def test_colormaps_and_encodings() -> None:
    assert {"jet", "hot", "viridis"} <= set(COLORMAPS)
    for name in COLORMAPS:
        assert colormap_lut(name).shape == (256, 3)
        assert legend_png(name).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="Unknown colormap"):
        colormap_lut("rainbow")
    assert jpeg_bytes(np.zeros((8, 8, 3), np.uint8)).startswith(b"\xff\xd8")
