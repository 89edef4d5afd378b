"""Shapley values of image regions for every finding, from one shared set of masked forward passes.

With R regions every coalition (2^R, 256 for R = 8) is evaluated once, in batches, for all
findings at the same time; shap's ``Exact`` explainer turns those evaluations into values. The
base value is the score with every region hidden; the values add up to score minus base value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.results import REGION_SHAP_METHOD, RegionExplanation
from xai.masking import MASKING_DESCRIPTION, Predict, composite, predict_in_batches, strongly_blurred
from xai.regions import RegionSet

ProgressCallback = Callable[[float, str], None]
# The result is a core type, so storage can keep it without importing xai; METHOD is the name it
# is stored under.
METHOD = REGION_SHAP_METHOD


def _coalition_key(row: Sequence[float]) -> int:
    return sum(1 << i for i, present in enumerate(row) if present >= 0.5)


def shapley_from_table(table: dict[int, np.ndarray], n_regions: int) -> np.ndarray:
    """Exact Shapley values (R, C) from the scores of all 2^R coalitions (bit i = region i shown)."""
    full = (1 << n_regions) - 1
    values = np.zeros((n_regions, len(table[0])), dtype=np.float64)
    weights = [
        math.factorial(k) * math.factorial(n_regions - k - 1) / math.factorial(n_regions) for k in range(n_regions)
    ]
    for coalition in range(full + 1):
        size = bin(coalition).count("1")
        for region in range(n_regions):
            if not coalition >> region & 1:
                values[region] += weights[size] * (table[coalition | 1 << region] - table[coalition])
    return values


def explain_regions(
    predict: Predict,
    image: np.ndarray,
    regions: RegionSet,
    labels: Sequence[str],
    *,
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
) -> RegionExplanation:
    """Shapley values of ``regions`` for every output of ``predict`` on one (S, S) model input."""
    import shap

    started = time.perf_counter()
    n_regions = len(regions.names)
    if image.shape != regions.label_map.shape:
        raise ValueError(f"image is {image.shape} but the regions are on a {regions.label_map.shape} grid.")
    blurred = strongly_blurred(image)
    region_masks = np.stack([regions.mask(i) for i in range(n_regions)])
    total = 2**n_regions
    table: dict[int, np.ndarray] = {}
    done = 0

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done / total, f"{done} of {total} masked images scored")

    def coalition_scores(coalitions: np.ndarray) -> np.ndarray:
        keys = [_coalition_key(row) for row in coalitions]
        todo = sorted({k for k in keys if k not in table})
        if todo:
            hidden = [~np.any(region_masks[[i for i in range(n_regions) if k >> i & 1]], axis=0) for k in todo]
            images = np.stack([composite(image, blurred, h) for h in hidden])
            for key, scores in zip(todo, predict_in_batches(predict, images, batch_size, on_batch)):
                table[key] = scores
        return np.stack([table[k] for k in keys])

    if progress is not None:
        progress(0.0, "preparing the SHAP explainer")
    explainer = shap.explainers.Exact(coalition_scores, shap.maskers.Independent(np.zeros((1, n_regions))))
    explanation = explainer(np.ones((1, n_regions)), max_evals=total, silent=True)
    # shap drops the output axis for a single output; put it back: values (C, R), base (C,).
    values = np.asarray(explanation.values[0], dtype=np.float64).reshape(n_regions, -1).T
    base = np.atleast_1d(np.asarray(explanation.base_values[0], dtype=np.float64))
    direct = shapley_from_table(table, n_regions).T
    return RegionExplanation(
        labels=tuple(labels),
        region_names=regions.names,
        values=values,
        base_values=base,
        scores=table[total - 1],
        evaluations=len(table),
        regions_source=regions.source,
        masking=MASKING_DESCRIPTION,
        timing_ms=(time.perf_counter() - started) * 1000.0,
        max_err=float(np.abs(values - direct).max()),
    )


def shap_explanation(result: RegionExplanation, label: str) -> Any:
    """A ``shap.Explanation`` for one finding (for shap's own plots and tooling; shap ships no
    type information, hence ``Any``)."""
    import shap

    values, base, _ = result.for_label(label)
    return shap.Explanation(
        values=values, base_values=base, data=np.ones(len(values)), feature_names=list(result.region_names)
    )


def warm_up() -> None:
    """Compile shap's numba kernels once per process (several seconds on first use)."""
    import shap

    explainer = shap.explainers.Exact(lambda z: np.asarray(z, dtype=float), shap.maskers.Independent(np.zeros((1, 2))))
    explainer(np.ones((1, 2)), silent=True)


__all__ = ["METHOD", "RegionExplanation", "explain_regions", "shap_explanation", "shapley_from_table", "warm_up"]
