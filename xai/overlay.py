"""Heatmap colouring and blending. Pure numpy/OpenCV: cheap enough to run on every slider move."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

COLORMAPS = ("jet", "hot", "viridis", "inferno")
OPACITY_RANGE = (0.1, 0.9)

CAM_MEANING = (
    "Coloured regions are where this score was most sensitive in the image; they show where the "
    "model looked, not where disease is, and a bright region is not a diagnosis."
)


@lru_cache(maxsize=len(COLORMAPS))
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table for a matplotlib colormap."""
    if name not in COLORMAPS:
        raise ValueError(f"Unknown colormap {name!r}; choose one of {COLORMAPS}.")
    from matplotlib import colormaps

    lut: np.ndarray = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    lut = np.rint(lut * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def resize_map(cam: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if cam.shape[0] == size:
        return cam
    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def colorize(cam: np.ndarray, colormap: str) -> np.ndarray:
    """RGB uint8 image of a [0, 1] heatmap."""
    import cv2

    index = np.clip(cam * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([index, index, index]), colormap_lut(colormap)[None, :, :])


def overlay(gray: np.ndarray, cam: np.ndarray, colormap: str, opacity: float, *, trained: bool) -> np.ndarray:
    """RGB uint8 blend of a grayscale uint8 image and a [0, 1] heatmap at the image's size.

    A heatmap from untrained weights carries the untrained banner in its pixels, so it stays
    labelled fullscreen, saved or pasted elsewhere."""
    import cv2

    from core.annotate import with_banner

    low, high = OPACITY_RANGE
    if not low <= opacity <= high:
        raise ValueError(f"opacity must be between {low} and {high}, got {opacity}.")
    heat = colorize(resize_map(cam, gray.shape[0]), colormap)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    blended: np.ndarray = cv2.addWeighted(base, 1.0 - opacity, heat, opacity, 0.0)
    return blended if trained else with_banner(blended)


def whole_image_overlay(
    pixels: np.ndarray, cam: np.ndarray, colormap: str, opacity: float, *, trained: bool, max_side: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The whole radiograph (grey uint8, reduced to ``max_side`` on its long side) and the same
    with the heatmap over the model's square centre crop and that square outlined: what a report
    shows, so that a landscape film's lateral chest wall is not cut off."""
    import cv2

    from core.annotate import with_banner
    from inference.images.preprocess import centre_crop_box

    rows, cols = int(pixels.shape[0]), int(pixels.shape[1])
    scale = min(1.0, max_side / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    grey = np.clip(
        np.rint(cv2.resize(np.asarray(pixels, dtype=np.float32), size, interpolation=cv2.INTER_AREA)), 0, 255
    )
    grey = grey.astype(np.uint8)
    box = centre_crop_box((rows, cols))
    top, left = round(box.top * scale), round(box.left * scale)
    side = max(1, min(round(box.size * scale), grey.shape[0] - top, grey.shape[1] - left))
    out = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    region = out[top : top + side, left : left + side]
    heat = colorize(resize_map(cam, side), colormap)
    out[top : top + side, left : left + side] = cv2.addWeighted(region, 1.0 - opacity, heat, opacity, 0.0)
    cv2.rectangle(out, (left, top), (left + side - 1, top + side - 1), (255, 214, 0), 2)
    return grey, (out if trained else with_banner(out))


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    """JPEG of an RGB uint8 overlay. Overlays are re-encoded on every opacity change, and PNG of
    a colour heatmap costs ~10x more; the grayscale image itself is always shown as PNG."""
    from core.encode import encode_jpeg

    return encode_jpeg(image, quality=quality, full_chroma=False)  # smooth heatmaps: 4:2:0 as before


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 grayscale or RGB image (encode once, show many times)."""
    from core.encode import encode_png

    return encode_png(image, compression=1)


@lru_cache(maxsize=len(COLORMAPS))
def legend_png(colormap: str, width: int = 256, height: int = 14) -> bytes:
    """A horizontal colour bar from 0 (left) to 1 (right), as PNG bytes."""
    row = colormap_lut(colormap)[np.linspace(0, 255, width).astype(np.uint8)]
    return png_bytes(np.ascontiguousarray(np.repeat(row[None, :, :], height, axis=0)))


REGION_COLORMAP = "RdBu_r"  # red raises the score, blue lowers it


def region_value_map(
    gray: np.ndarray, label_map: np.ndarray, values: np.ndarray, *, trained: bool, opacity: float = 0.5
) -> tuple[np.ndarray, float]:
    """RGB image with each region tinted by its value on a diverging scale centred on zero.

    Returns the image and the value at either end of the colour scale (+/- that value).
    """
    import cv2
    from matplotlib import colormaps

    from core.annotate import with_banner

    size = gray.shape[0]
    regions = cv2.resize(label_map.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    limit = float(np.abs(values).max()) or 1.0
    lut = np.rint(colormaps[REGION_COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    region_colours = lut[np.clip(np.rint((values / limit + 1.0) * 127.5), 0, 255).astype(np.uint8)]
    tint = region_colours[regions]
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    blended = cv2.addWeighted(base, 1.0 - opacity, tint, opacity, 0.0)
    edges = cv2.morphologyEx(regions, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    blended[edges] = (40, 40, 40)
    return (blended if trained else with_banner(blended)), limit


@lru_cache(maxsize=1)
def diverging_legend_png(width: int = 256, height: int = 14) -> bytes:
    from matplotlib import colormaps

    row = np.rint(colormaps[REGION_COLORMAP](np.linspace(0, 1, width))[:, :3] * 255).astype(np.uint8)
    return png_bytes(np.ascontiguousarray(np.repeat(row[None], height, axis=0)))
