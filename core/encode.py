"""The one set of image encoders: uint8 pictures (grey or RGB) to PNG or JPEG bytes.

Every picture the app shows or writes (radiographs, heatmap overlays, volume slices, legends) is
encoded here, with OpenCV (imported on first use, not at import).
"""

from __future__ import annotations

import numpy as np


def _bgr(picture: np.ndarray, fmt: str) -> np.ndarray:
    """OpenCV's channel order for a grey (H, W) or RGB (H, W, 3) uint8 picture."""
    import cv2

    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[2] != 3):
        raise ValueError(
            f"Could not encode an image of shape {picture.shape} as {fmt}: a grey (H, W) or RGB (H, W, 3) "
            "picture is expected."
        )
    if picture.ndim == 2:
        return picture
    bgr: np.ndarray = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    return bgr


def encode_png(picture: np.ndarray, *, compression: int = 1) -> bytes:
    """Lossless PNG of a grey or RGB picture (uint8, or uint16 for 16-bit); compression level 1
    (fast) unless asked.

    Raises:
        ValueError: not a grey or RGB picture, or a type PNG cannot hold.
    """
    import cv2

    try:
        ok, buffer = cv2.imencode(".png", _bgr(picture, "PNG"), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"Could not encode an image of shape {picture.shape} ({picture.dtype}) as PNG.")
    return bytes(buffer.tobytes())


def encode_jpeg(picture: np.ndarray, *, quality: int = 92, full_chroma: bool = True) -> bytes:
    """JPEG of a grey or RGB uint8 picture.

    ``full_chroma`` keeps colour at full resolution (4:4:4, no chroma subsampling), so thin coloured
    edges such as mask outlines stay sharp; without it OpenCV's default (4:2:0) is used.

    Raises:
        ValueError: not a grey or RGB picture, or not uint8.
    """
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if full_chroma:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    try:
        ok, buffer = cv2.imencode(".jpg", _bgr(picture, "JPEG"), params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"Could not encode an image of shape {picture.shape} ({picture.dtype}) as JPEG.")
    return bytes(buffer.tobytes())
