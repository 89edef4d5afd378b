"""Grayscale image to the (1, 1, S, S) model input a registered classifier expects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

XRV_MAX = 1024.0  # torchxrayvision scales 0..255 images to [-1024, 1024]


@dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    size: int


def centre_crop_box(shape: tuple[int, int]) -> CropBox:
    """The largest centred square, as torchxrayvision's ``XRayCenterCrop`` takes it."""
    height, width = shape
    size = min(height, width)
    return CropBox(top=(height - size) // 2, left=(width - size) // 2, size=size)


def crop(pixels: np.ndarray, box: CropBox) -> np.ndarray:
    return pixels[box.top : box.top + box.size, box.left : box.left + box.size]


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if pixels.shape[0] == size:
        return pixels.astype(np.float32, copy=False)
    interpolation = cv2.INTER_AREA if pixels.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(pixels.astype(np.float32, copy=False), (size, size), interpolation=interpolation)


# How a registry entry's ``normalisation`` turns 0..255 pixels into model input values.
NORMALISATIONS = {
    "xrv": lambda x: (x / 255.0 * 2.0 - 1.0) * XRV_MAX,  # torchxrayvision: [-1024, 1024]
    "unit": lambda x: x / 255.0,  # [0, 1]
    "imagenet-gray": lambda x: (x / 255.0 - 0.449) / 0.226,  # the mean of ImageNet's channel statistics
}


def model_input(pixels: np.ndarray, input_size: int, normalisation: str = "xrv") -> np.ndarray:
    """(1, 1, S, S) float32 from a 0..255 grayscale image: the centred square, resized, normalised
    as the model's registry entry says (torchxrayvision's [-1024, 1024] by default)."""
    try:
        scale = NORMALISATIONS[normalisation]
    except KeyError:
        raise KeyError(f"Unknown normalisation {normalisation!r}; known: {sorted(NORMALISATIONS)}.") from None
    return scale(model_square(pixels, input_size))[None, None].astype(np.float32)


def model_square(pixels: np.ndarray, input_size: int) -> np.ndarray:
    """(S, S) float32 0..255: the centred square the model sees, resized, before normalisation."""
    return resize_square(crop(pixels, centre_crop_box(pixels.shape)), input_size)


def display_crop(pixels: np.ndarray, max_size: int = 512) -> np.ndarray:
    """The square the model sees, as uint8 for display, at most ``max_size`` pixels wide."""
    square = crop(pixels, centre_crop_box(pixels.shape))
    if square.shape[0] > max_size:
        square = resize_square(square, max_size)
    return np.clip(np.rint(square), 0, 255).astype(np.uint8)
