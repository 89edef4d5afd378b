from __future__ import annotations

import numpy as np
import pytest

from xai.overlay import COLORMAPS, colormap_lut, jpeg_bytes, legend_png, overlay


def test_opacity_blends_between_image_and_heatmap() -> None:
    gray = np.full((64, 64), 100, np.uint8)
    cam = np.ones((16, 16), np.float32)
    hot = colormap_lut("jet")[255].astype(int)
    low = overlay(gray, cam, "jet", 0.1).astype(int)
    high = overlay(gray, cam, "jet", 0.9).astype(int)
    assert np.abs(low[0, 0] - (0.9 * 100 + 0.1 * hot)).max() <= 1
    assert np.abs(high[0, 0] - (0.1 * 100 + 0.9 * hot)).max() <= 1


@pytest.mark.parametrize("opacity", [0.0, 0.95, 1.0])
def test_opacity_outside_range_is_refused(opacity: float) -> None:
    with pytest.raises(ValueError, match="opacity must be between 0.1 and 0.9"):
        overlay(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32), "jet", opacity)


def test_colormaps_and_encodings() -> None:
    assert {"jet", "hot", "viridis"} <= set(COLORMAPS)
    for name in COLORMAPS:
        assert colormap_lut(name).shape == (256, 3)
        assert legend_png(name).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="Unknown colormap"):
        colormap_lut("rainbow")
    assert jpeg_bytes(np.zeros((8, 8, 3), np.uint8)).startswith(b"\xff\xd8")
