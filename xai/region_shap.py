"""Shapley values of image regions for every finding, from one shared set of masked forward passes.

With R regions every coalition (2^R, 256 for R = 8) is scored once, in batches, for all findings
at the same time, and the Shapley values follow exactly from that table by their definition (a
weighted sum of each region's marginal contributions; no sampling). The base value is the score
with every region hidden; the values add up to score minus base value.

shap's ``Exact`` explainer computes the same values from the same table
(``shap_exact_reference``); the tests and the benchmark check the two agree (to 1e-15 here). The
app does not call it: its numba kernels compile for ~10 s in every new process (one of them takes
a jitted function as an argument, so numba's disk cache cannot keep it), which the first
explanation in a server would wait for.
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


def coalition_table(
    predict: Predict,
    image: np.ndarray,
    regions: RegionSet,
    *,
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Scores (2^R, C) of every coalition: row k has region i shown where bit i of k is set, and
    the hidden regions replaced by a strongly blurred copy of the image."""
    n_regions = len(regions.names)
    if image.shape != regions.label_map.shape:
        raise ValueError(f"image is {image.shape} but the regions are on a {regions.label_map.shape} grid.")
    total = 2**n_regions
    blurred = strongly_blurred(image)
    shown = np.stack([regions.mask(i) for i in range(n_regions)])
    done = 0

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done / total, f"{done} of {total} masked images scored")

    images = np.stack(
        [
            composite(image, blurred, ~np.any(shown[[i for i in range(n_regions) if key >> i & 1]], axis=0))
            for key in range(total)
        ]
    )
    return predict_in_batches(predict, images, batch_size, on_batch)


def shapley_from_table(table: np.ndarray, n_regions: int) -> np.ndarray:
    """Exact Shapley values (R, C) from the scores (2^R, C) of all coalitions (bit i = region i shown)."""
    table = np.asarray(table, dtype=np.float64)
    if table.shape[0] != 2**n_regions:
        raise ValueError(f"{table.shape[0]} coalition scores given; {n_regions} regions have {2**n_regions}.")
    keys = np.arange(2**n_regions)
    sizes = np.array([bin(k).count("1") for k in keys])
    weights = np.array(
        [math.factorial(k) * math.factorial(n_regions - k - 1) / math.factorial(n_regions) for k in range(n_regions)]
    )
    values = np.zeros((n_regions, table.shape[1]), dtype=np.float64)
    for region in range(n_regions):
        without = keys[(keys >> region & 1) == 0]  # coalitions the region can join
        gains = table[without | 1 << region] - table[without]
        values[region] = weights[sizes[without]] @ gains
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
    started = time.perf_counter()
    if progress is not None:
        progress(0.0, "masking the regions")
    table = coalition_table(predict, image, regions, batch_size=batch_size, progress=progress)
    n_regions = len(regions.names)
    values = shapley_from_table(table, n_regions).T  # (C, R)
    base, scores = table[0], table[-1]
    return RegionExplanation(
        labels=tuple(labels),
        region_names=regions.names,
        values=values,
        base_values=base,
        scores=scores,
        evaluations=len(table),
        regions_source=regions.source,
        masking=MASKING_DESCRIPTION,
        timing_ms=(time.perf_counter() - started) * 1000.0,
        max_err=float(np.abs(values.sum(axis=1) - (scores - base)).max()),
    )


def shap_exact_reference(table: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """shap's ``Exact`` explainer on the same coalition scores: values (C, R) and base values (C,).

    The reference implementation ``explain_regions`` is checked against (tests, benchmark); it
    compiles shap's numba kernels on first use in a process.
    """
    import shap

    table = np.asarray(table, dtype=np.float64)

    def lookup(coalitions: np.ndarray) -> np.ndarray:
        keys = [sum(1 << i for i, present in enumerate(row) if present >= 0.5) for row in coalitions]
        return table[keys]

    explainer = shap.explainers.Exact(lookup, shap.maskers.Independent(np.zeros((1, n_regions))))
    explanation = explainer(np.ones((1, n_regions)), max_evals=2**n_regions, silent=True)
    # shap drops the output axis for a single output; put it back.
    values = np.asarray(explanation.values[0], dtype=np.float64).reshape(n_regions, -1).T
    return values, np.atleast_1d(np.asarray(explanation.base_values[0], dtype=np.float64))


def shap_explanation(result: RegionExplanation, label: str) -> Any:
    """A ``shap.Explanation`` for one finding (for shap's own plots and tooling; shap ships no
    type information, hence ``Any``)."""
    import shap

    values, base, _ = result.for_label(label)
    return shap.Explanation(
        values=values, base_values=base, data=np.ones(len(values)), feature_names=list(result.region_names)
    )


__all__ = [
    "METHOD",
    "RegionExplanation",
    "coalition_table",
    "explain_regions",
    "shap_exact_reference",
    "shap_explanation",
    "shapley_from_table",
]
