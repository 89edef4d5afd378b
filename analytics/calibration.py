"""Site calibration from the readers' verdicts: how well the model's scores match what this site's
readers say, per finding, and the band thresholds those verdicts support.

A verdict gives a reader label (``agreement.reader_implied_presence``): present for an Agree on a
positive or critical band or a Disagree on a negative one, absent the other way round; Unsure and
indeterminate bands say nothing. A run judged by several readers counts once, by their majority
(a tie says nothing).

Per finding, from those labels and the scores the readers saw:
- a reliability diagram (the observed rate of "present" per score bin) and the expected
  calibration error (ECE);
- the ECE after temperature scaling (one parameter on the score's logit) and after isotonic
  regression (scikit-learn), each measured by 5-fold cross-fitting: fitted on four fifths of the
  cases, measured on the fifth it never saw, so the "after" is not flattered by fitting;
- proposed thresholds for the bands: ``high`` where the target share of the present cases scores at
  or above it (the sensitivity asked for), ``low`` where almost all do (rule-out, 0.98), ``critical``
  where almost no absent case does (rule-in, specificity 0.98); each with a bootstrap interval and
  the number of cases behind it.

Nothing here changes the bands in force: an admin reviews a proposal and saves it as a new bands
version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from analytics.agreement import reader_implied_presence
from storage.reporting import VerdictFact

RULE_OUT_SENSITIVITY = 0.98
RULE_IN_SPECIFICITY = 0.98
MIN_CASES = 20  # below this, or without both present and absent cases, nothing is fitted or proposed
FOLDS = 5
_EPS = 1e-6


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    cases: int
    mean_score: float | None
    observed: float | None  # the share of cases the readers called present


@dataclass(frozen=True)
class Threshold:
    value: float
    interval: tuple[float, float]  # 95 % bootstrap interval
    cases: int  # the cases it is set from (present ones for low and high, absent ones for critical)


@dataclass(frozen=True)
class FindingCalibration:
    finding: str
    model_id: str
    weights_sha256: str  # calibration is of one model's weights: other weights are other rows
    cases: int
    present: int
    reliability: tuple[ReliabilityBin, ...]
    ece: float | None
    temperature: float | None  # fitted on every case (> 1: the scores are overconfident)
    ece_temperature: float | None  # cross-fitted
    ece_isotonic: float | None  # cross-fitted
    low: Threshold | None
    high: Threshold | None
    critical: Threshold | None
    why_not: str = ""  # why nothing was fitted or proposed
    adjusted: str = ""  # a proposed cut moved to keep low < high < critical, and why


def reader_labels(facts: Iterable[VerdictFact]) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """(model, weights sha256, finding) -> (scores, labels 0/1), one per run: the majority of its
    readers' labels."""
    votes: dict[tuple[str, str, str, int], list[bool]] = defaultdict(list)
    scores: dict[tuple[str, str, str, int], float] = {}
    for fact in facts:
        label = reader_implied_presence(fact)
        if label is None:
            continue
        key = (fact.model_id, fact.weights_sha256, fact.finding, fact.run_id)
        votes[key].append(label)
        scores[key] = fact.score
    by_finding: dict[tuple[str, str, str], tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    for key, said in votes.items():
        present = sum(said)
        if present * 2 == len(said):
            continue  # a tie says nothing
        score_list, label_list = by_finding[key[:3]]
        score_list.append(scores[key])
        label_list.append(int(present * 2 > len(said)))
    return {k: (np.asarray(s, dtype=float), np.asarray(y, dtype=int)) for k, (s, y) in sorted(by_finding.items())}


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[ReliabilityBin, ...]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    found = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        found.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(scores[inside].mean()) if n else None,
                float(labels[inside].mean()) if n else None,
            )
        )
    return tuple(found)


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """The case-weighted mean gap between the mean score and the observed rate, over score bins."""
    total = len(scores)
    return float(
        sum(
            b.cases / total * abs(b.mean_score - b.observed)
            for b in reliability(scores, labels, bins)
            if b.mean_score is not None and b.observed is not None
        )
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the log loss of sigmoid(logit(score) / T) on these cases."""
    from scipy.optimize import minimize_scalar

    z = _logit(scores)

    def loss(log_t: float) -> float:
        p = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), _EPS, 1 - _EPS)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    return float(np.exp(minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def with_temperature(scores: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-_logit(scores) / temperature))


def _isotonic(train_scores: np.ndarray, train_labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(train_scores, train_labels)
    return np.asarray(fitted.predict(scores), dtype=float)


def _cross_fitted_ece(scores: np.ndarray, labels: np.ndarray, seed: int) -> tuple[float, float]:
    """ECE after temperature scaling and after isotonic regression, each case recalibrated by a fit
    on the folds it is not in."""
    order = np.random.default_rng(seed).permutation(len(scores))
    folds = np.array_split(order, FOLDS)
    by_temperature = np.empty(len(scores))
    by_isotonic = np.empty(len(scores))
    for held in folds:
        train = np.setdiff1d(order, held)
        by_temperature[held] = with_temperature(scores[held], fit_temperature(scores[train], labels[train]))
        by_isotonic[held] = _isotonic(scores[train], labels[train], scores[held])
    return expected_calibration_error(by_temperature, labels), expected_calibration_error(by_isotonic, labels)


def _sensitivity_cut(positive_scores: np.ndarray, sensitivity: float) -> float:
    """The highest threshold with at least ``sensitivity`` of these present cases at or above it."""
    ranked = np.sort(positive_scores)
    allowed_below = int(np.floor((1 - sensitivity) * len(ranked) + 1e-9))
    return float(ranked[min(allowed_below, len(ranked) - 1)])


def _specificity_cut(negative_scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold with at most 1 - ``specificity`` of these absent cases above it."""
    ranked = np.sort(negative_scores)[::-1]
    allowed_above = int(np.floor((1 - specificity) * len(ranked) + 1e-9))
    if allowed_above >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[allowed_above], 1.0))


def _threshold(cut, sample: np.ndarray, rng: np.random.Generator, repeats: int, upward: bool) -> Threshold:
    """``cut`` of ``sample`` to 4 decimals, rounded the safe way: down for a sensitivity cut (every
    case it kept at or above stays so), up for a specificity cut (no case it left below rises above)."""
    boot = [cut(sample[rng.integers(0, len(sample), len(sample))]) for _ in range(repeats)]
    low, high = np.percentile(boot, [2.5, 97.5])
    exact = cut(sample)
    value = float(np.ceil(exact * 1e4) / 1e4 if upward else np.floor(exact * 1e4) / 1e4)
    return Threshold(value, (min(round(float(low), 4), value), max(round(float(high), 4), value)), len(sample))


def calibrate_finding(
    model_id: str,
    weights_sha256: str,
    finding: str,
    scores: np.ndarray,
    labels: np.ndarray,
    target_sensitivity: float = 0.9,
    seed: int = 0,
    repeats: int = 1000,
) -> FindingCalibration:
    present = int(labels.sum())
    bins = reliability(scores, labels)
    ece = expected_calibration_error(scores, labels) if len(scores) else None
    if len(scores) < MIN_CASES or present == 0 or present == len(scores):
        why = (
            f"{len(scores)} case(s) with a reader label, {present} of them present: at least {MIN_CASES}, "
            "with both present and absent ones, are needed"
        )
        return FindingCalibration(
            finding, model_id, weights_sha256, len(scores), present, bins, ece, None, None, None, None, None, None, why
        )
    ece_temperature, ece_isotonic = _cross_fitted_ece(scores, labels, seed)
    rng = np.random.default_rng(seed)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    low = _threshold(lambda s: _sensitivity_cut(s, RULE_OUT_SENSITIVITY), positives, rng, repeats, upward=False)
    high = _threshold(lambda s: _sensitivity_cut(s, target_sensitivity), positives, rng, repeats, upward=False)
    critical = _threshold(lambda s: _specificity_cut(s, RULE_IN_SPECIFICITY), negatives, rng, repeats, upward=True)
    # The bands need 0 <= low < high < critical <= 1: where the verdicts put two cuts at the same
    # place (or critical below high), the lower is moved down, or the upper up, by one step of 0.0001.
    step = 1e-4
    adjusted = []
    if low.value >= high.value:
        adjusted.append(f"low moved just below high (the verdicts put it at {low.value:.4f})")
        low = Threshold(round(max(high.value - step, 0.0), 4), low.interval, low.cases)
    if critical.value <= high.value:
        adjusted.append(
            f"critical moved just above high: the verdicts put the rule-in cut at {critical.value:.4f}, "
            "below high, so no band between them is supported"
        )
        critical = Threshold(round(min(high.value + step, 1.0), 4), critical.interval, critical.cases)
    return FindingCalibration(
        finding,
        model_id,
        weights_sha256,
        len(scores),
        present,
        bins,
        ece,
        round(fit_temperature(scores, labels), 4),
        ece_temperature,
        ece_isotonic,
        low,
        high,
        critical,
        adjusted="; ".join(adjusted),
    )


def calibrate(
    facts: Iterable[VerdictFact], target_sensitivity: float = 0.9, seed: int = 0, repeats: int = 1000
) -> list[FindingCalibration]:
    """Every finding of every model (and its weights) the readers' verdicts give labels for."""
    return [
        calibrate_finding(model_id, weights, finding, scores, labels, target_sensitivity, seed, repeats)
        for (model_id, weights, finding), (scores, labels) in reader_labels(facts).items()
    ]
