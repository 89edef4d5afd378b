"""Hiding parts of a model input by replacing them with a strongly blurred copy of themselves.

Blurring (rather than a black or grey fill) keeps the image's overall intensity and texture
statistics, so a masked region removes local detail without adding an artificial edge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Model inputs (N, 1, S, S) -> scores (N, C). Batched by the caller.
Predict = Callable[[np.ndarray], np.ndarray]

MASKING_DESCRIPTION = (
    "hidden regions are replaced by a strongly blurred copy of themselves (Gaussian, sigma = 1/8 of the image)"
)


def strongly_blurred(image: np.ndarray) -> np.ndarray:
    """A heavily blurred copy of a (S, S) image (sigma = S / 8)."""
    import cv2

    sigma = image.shape[0] / 8.0
    return cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def composite(image: np.ndarray, blurred: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``image`` with the pixels where ``hidden`` is True taken from ``blurred``."""
    return np.where(hidden, blurred, image).astype(np.float32)


def predict_in_batches(
    predict: Predict, images: np.ndarray, batch_size: int, on_batch: Callable[[int], None] | None = None
) -> np.ndarray:
    """Scores for (N, S, S) images, run ``batch_size`` at a time."""
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size][:, None]
        outputs.append(np.asarray(predict(chunk), dtype=np.float64))
        if on_batch is not None:
            on_batch(len(chunk))
    return np.concatenate(outputs, axis=0)
