"""The model card's figures on outputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training.evaluation import evaluate, expected_calibration_error, fit_temperature, softmax

LABELS = ("Glioma", "Meningioma", "No tumour")


def one_hot(classes: list[int], c: int = 3, sure: float = 1.0) -> np.ndarray:
    out = np.full((len(classes), c), (1 - sure) / (c - 1))
    out[np.arange(len(classes)), classes] = sure
    return out


def test_counts_from_a_confusion_matrix_worked_by_hand() -> None:
    truth = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0]
    figures = evaluate(one_hot(predicted, sure=0.8), truth, LABELS, split="test", bootstrap=50)
    assert figures.confusion == ((1, 1, 0), (0, 2, 0), (1, 0, 1))
    assert figures.accuracy == pytest.approx(4 / 6)
    assert figures.balanced_accuracy == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    glioma, meningioma, none = figures.classes
    # Glioma: 1 of 2 found; of the 4 others, 1 called glioma; 1 of the 2 called glioma is one.
    assert (glioma.n, glioma.sensitivity, glioma.specificity, glioma.ppv) == (2, 0.5, 0.75, 0.5)
    assert (meningioma.sensitivity, meningioma.specificity, meningioma.ppv) == (1.0, 0.75, pytest.approx(2 / 3))
    assert (none.sensitivity, none.specificity, none.ppv) == (0.5, 1.0, 1.0)


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right() -> None:
    # Class 0's scores: positives 0.9 and 0.8; negatives 0.7, 0.85, 0.1, 0.2. 0.9 outranks all 4
    # negatives, 0.8 outranks 3: AUC 7/8.
    scores0 = np.array([0.9, 0.8, 0.7, 0.85, 0.1, 0.2])
    probabilities = np.stack([scores0, (1 - scores0) / 2, (1 - scores0) / 2], axis=1)
    figures = evaluate(probabilities, [0, 0, 1, 1, 2, 2], LABELS, split="test", bootstrap=200)
    assert figures.classes[0].auc == pytest.approx(7 / 8)
    interval = figures.classes[0].auc_95ci
    assert interval is None or interval.low <= 7 / 8 <= interval.high


def test_the_bootstrap_interval_narrows_with_more_cases_and_holds_the_estimate() -> None:
    rng = np.random.default_rng(1)

    def noisy(n: int):
        truth = rng.integers(0, 3, n)
        logits = rng.normal(size=(n, 3))
        logits[np.arange(n), truth] += 1.5
        return softmax(logits), truth

    small = evaluate(*noisy(60), LABELS, split="test", bootstrap=300)
    large = evaluate(*noisy(1500), LABELS, split="test", bootstrap=300)
    for figures in (small, large):
        assert figures.macro_auc_95ci.low <= figures.macro_auc <= figures.macro_auc_95ci.high
    width = lambda i: i.high - i.low  # noqa: E731
    assert width(large.macro_auc_95ci) < width(small.macro_auc_95ci) / 2


def test_a_class_missing_from_the_split_has_no_sensitivity_or_auc_rather_than_a_made_up_one() -> None:
    figures = evaluate(one_hot([0, 1, 1, 0]), [0, 1, 1, 0], LABELS, split="test", bootstrap=20)
    assert figures.classes[2].sensitivity is None and figures.classes[2].auc is None
    assert figures.classes[2].ppv is None and figures.classes[2].specificity == 1.0
    assert figures.balanced_accuracy == 1.0 and figures.macro_auc == 1.0


def test_ece_of_sure_right_answers_is_zero_and_of_overconfidence_is_the_gap() -> None:
    assert expected_calibration_error(one_hot([0, 1, 2]), [0, 1, 2]) == 0.0
    # Always 90% sure, right half the time: a gap of 0.4 in the one bin used.
    assert expected_calibration_error(one_hot([0, 1, 2, 0], sure=0.9), [0, 1, 0, 1]) == pytest.approx(0.4)


def test_the_fitted_temperature_recovers_the_one_the_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(20_000, 4))
    # Labels drawn from softmax(logits / 2): a model whose logits are twice too confident.
    p = softmax(logits, 2.0)
    truth = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    temperature = fit_temperature(logits, truth)
    assert temperature == pytest.approx(2.0, rel=0.05)
    before = expected_calibration_error(softmax(logits), truth)
    after = expected_calibration_error(softmax(logits, temperature), truth)
    assert after < before / 3


def test_inconsistent_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="3 labels"):
        evaluate(np.ones((2, 2)) / 2, [0, 1], LABELS, split="test")
    with pytest.raises(ValueError, match="validation"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
