"""What a model card says about a classifier of exclusive classes, from its test-split outputs.

``evaluate`` takes the predicted class probabilities (N, C) and the true classes (N,) and returns
the figures of item 3 of the training issue: accuracy, balanced accuracy (the mean of the
per-class sensitivities, which a class-imbalanced test split needs), per-class sensitivity,
specificity and positive predictive value, one-vs-rest ROC AUC with a 95% percentile-bootstrap
interval (cases resampled with replacement), the confusion matrix (rows: the truth, columns: the
prediction) and the expected calibration error of the top class. ``fit_temperature`` fits the one
scalar that divides the logits so that the validation split's negative log-likelihood is least
(Guo et al. 2017, "On calibration of modern neural networks"); it never sees the test split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import confusion_matrix, roc_auc_score

BOOTSTRAP_SAMPLES = 1000
ECE_BINS = 15


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class ClassFigures:
    label: str
    n: int  # test cases of this class
    sensitivity: float | None  # None: no case of this class in the split
    specificity: float | None
    ppv: float | None  # None: the model never predicted this class
    auc: float | None  # one-vs-rest; None when the split has only this class or none of it
    auc_95ci: Interval | None


@dataclass(frozen=True)
class Evaluation:
    split: str
    n: int
    accuracy: float
    balanced_accuracy: float
    macro_auc: float | None  # the mean of the classes' AUCs that are defined
    macro_auc_95ci: Interval | None
    ece: float  # expected calibration error of the top class, 15 equal-width bins
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # [truth][prediction]
    classes: tuple[ClassFigures, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T > 0 minimising the mean negative log-likelihood of softmax(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    if len(truth) == 0:
        raise ValueError("A temperature needs at least one validation case.")

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(truth)), truth].mean())

    found = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-class ECE: the case-weighted mean, over equal-width confidence bins, of |accuracy -
    mean confidence| in the bin."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(truth)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 cannot occur.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def _auc(truth_k: np.ndarray, score_k: np.ndarray) -> float | None:
    if truth_k.all() or not truth_k.any():
        return None
    return float(roc_auc_score(truth_k, score_k))


def _percentile_interval(values: list[float], resamples: int) -> Interval | None:
    if not values or len(values) < resamples / 2:  # most resamples lacked a class: no honest interval
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return Interval(float(low), float(high))


def evaluate(
    probabilities: np.ndarray,
    truth: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    *,
    split: str,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Evaluation:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    n, c = probabilities.shape
    if len(labels) != c or len(truth) != n or n == 0:
        raise ValueError(f"{n} cases of {c} probabilities, {len(truth)} true classes and {len(labels)} labels.")
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(truth, predicted, labels=list(range(c)))
    classes = []
    sensitivities = []
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, n) for _ in range(bootstrap)]
    aucs: list[float] = []
    boot_aucs: list[list[float | None]] = []
    for k, label in enumerate(labels):
        tp = int(matrix[k, k])
        positives = int(matrix[k].sum())
        predicted_k = int(matrix[:, k].sum())
        negatives = n - positives
        tn = negatives - (predicted_k - tp)
        sensitivity = tp / positives if positives else None
        if sensitivity is not None:
            sensitivities.append(sensitivity)
        truth_k = truth == k
        auc = _auc(truth_k, probabilities[:, k])
        per_resample = [_auc(truth_k[i], probabilities[i, k]) for i in resamples] if auc is not None else []
        defined = [a for a in per_resample if a is not None]
        if auc is not None:
            aucs.append(auc)
            boot_aucs.append(per_resample)
        classes.append(
            ClassFigures(
                label=label,
                n=positives,
                sensitivity=sensitivity,
                specificity=tn / negatives if negatives else None,
                ppv=tp / predicted_k if predicted_k else None,
                auc=auc,
                auc_95ci=_percentile_interval(defined, bootstrap) if auc is not None else None,
            )
        )
    # The macro AUC of each resample in which every class's AUC is defined.
    macro_boot = [float(np.mean(v)) for v in zip(*boot_aucs, strict=True) if None not in v] if boot_aucs else []
    return Evaluation(
        split=split,
        n=n,
        accuracy=float((predicted == truth).mean()),
        balanced_accuracy=float(np.mean(sensitivities)),
        macro_auc=float(np.mean(aucs)) if aucs else None,
        macro_auc_95ci=_percentile_interval(macro_boot, bootstrap) if aucs else None,
        ece=expected_calibration_error(probabilities, truth),
        labels=tuple(labels),
        confusion=tuple(tuple(int(x) for x in row) for row in matrix),
        classes=tuple(classes),
    )
