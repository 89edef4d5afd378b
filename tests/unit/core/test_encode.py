"""The one set of encoders: what they write decodes back to the picture, and bad arrays are refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.encode import encode_jpeg, encode_png
from inference.volume.slices import encode_jpeg as slice_jpeg
from inference.volume.slices import encode_png as slice_png
from xai.overlay import jpeg_bytes, png_bytes


def _picture(channels: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (40, 52) if channels == 1 else (40, 52, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_is_lossless_and_rgb_stays_rgb(channels: int) -> None:
    picture = _picture(channels)
    data = encode_png(picture)
    assert data.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, picture)


def test_jpeg_keeps_colour_order_and_full_chroma_only_when_asked() -> None:
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:, :32] = (255, 0, 0)  # red left half: a BGR mix-up would make it blue
    full, sub = encode_jpeg(picture, full_chroma=True), encode_jpeg(picture, full_chroma=False)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(full, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert decoded[32, 8, 0] > 200 and decoded[32, 8, 2] < 50
    assert full != sub  # 4:4:4 against 4:2:0


def test_callers_keep_their_names_and_output() -> None:
    rgb, grey = _picture(3), _picture(1)
    assert png_bytes(rgb) == encode_png(rgb) == slice_png(rgb)
    assert slice_png(grey) == encode_png(grey)
    assert slice_jpeg(rgb) == encode_jpeg(rgb, full_chroma=True)
    assert jpeg_bytes(rgb) == encode_jpeg(rgb, full_chroma=False)


@pytest.mark.parametrize("shape", [(4, 4, 4), (4, 4, 2), (4,), (2, 4, 4, 3)])
def test_pictures_that_are_not_grey_or_rgb_are_refused(shape) -> None:
    for encode in (encode_png, encode_jpeg):
        with pytest.raises(ValueError, match="grey"):
            encode(np.zeros(shape, np.uint8))
