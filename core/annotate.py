"""Text burned into a picture, so it travels with the pixels.

A caption disappears when a reader opens a picture fullscreen, saves it or pastes it into a slide;
a banner drawn into the pixels does not. Heatmaps and masks from untrained weights carry one.
"""

from __future__ import annotations

import numpy as np

UNTRAINED_BANNER = "UNTRAINED WEIGHTS - MEANINGLESS"
BANNER_RGB = (176, 0, 32)  # the app's error red


def with_banner(picture: np.ndarray, text: str = UNTRAINED_BANNER) -> np.ndarray:
    """The RGB uint8 picture under a red band with ``text`` in white: the band is added above the
    picture, never drawn over it (it hid the apices of a radiograph).

    The band is about 1/14 of the height (at least 14 px) and the text is scaled to fit the width.
    """
    import cv2

    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"A banner needs an RGB uint8 picture, got {picture.dtype} of shape {picture.shape}.")
    height, width = picture.shape[:2]
    band = max(14, height // 14)
    out = np.empty((height + band, width, 3), dtype=np.uint8)
    out[:band] = BANNER_RGB
    out[band:] = picture
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = min((band * 0.6) / text_h, (width * 0.94) / text_w)
    thickness = max(1, int(round(scale * 1.6)))
    (text_w, text_h), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = (max(0, (width - text_w) // 2), (band + text_h) // 2)
    cv2.putText(out, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
