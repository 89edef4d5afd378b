"""Does the model depend on what a heatmap highlights?

For a finding and a heatmap: blur the top 20% of the heatmap's pixels and measure how much the
score drops, against blurring the same number of random pixels. A faithful heatmap drops the
score more than chance; the score shown is the difference of the two drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from xai.cam import heatmap_problem
from xai.masking import Predict, composite, predict_in_batches, strongly_blurred

TOP_FRACTION = 0.2
RANDOM_DRAWS = 3


@dataclass(frozen=True)
class Faithfulness:
    method: str
    label_index: int
    full_score: float
    drop_top: float  # score with nothing hidden minus score with the top pixels blurred
    drop_random: float  # the same for random pixels of the same area (mean of draws)
    problem: str | None = None  # why no score could be given (flat or invalid heatmap)

    @property
    def score(self) -> float | None:
        return None if self.problem else self.drop_top - self.drop_random


def top_pixels(cam: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Boolean mask of the ``fraction`` highest-valued pixels (ties broken by position)."""
    count = max(1, int(round(fraction * cam.size)))
    order = np.argsort(cam, axis=None, kind="stable")[::-1][:count]
    mask = np.zeros(cam.size, dtype=bool)
    mask[order] = True
    return mask.reshape(cam.shape)


def random_pixels(shape: tuple[int, int], count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[rng.choice(mask.size, size=count, replace=False)] = True
    return mask.reshape(shape)


def faithfulness_of(
    predict: Predict,
    image: np.ndarray,
    cams: Mapping[str, np.ndarray],
    label_index: int,
    *,
    fraction: float = TOP_FRACTION,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, Faithfulness]:
    """Faithfulness of several heatmaps of one finding, from one batch of masked forward passes."""
    blurred = strongly_blurred(image)
    count = max(1, int(round(fraction * image.size)))
    randoms = [random_pixels(image.shape, count, seed + i) for i in range(draws)]
    usable = {m: c for m, c in cams.items() if heatmap_problem(c) is None}
    images = [image] + [composite(image, blurred, r) for r in randoms]
    images += [composite(image, blurred, top_pixels(cam, fraction)) for cam in usable.values()]
    scores = predict_in_batches(predict, np.stack(images), batch_size)[:, label_index]
    full, random_drop = float(scores[0]), float(np.mean(scores[0] - scores[1 : 1 + draws]))
    results = {
        method: Faithfulness(method, label_index, full, full - float(s), random_drop)
        for method, s in zip(usable, scores[1 + draws :])
    }
    for method, cam in cams.items():
        if method not in usable:
            results[method] = Faithfulness(method, label_index, full, 0.0, random_drop, heatmap_problem(cam))
    return {method: results[method] for method in cams}
