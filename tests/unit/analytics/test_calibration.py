"""Site calibration from verdicts, on synthetic verdict sets with known answers: an overconfident
model (its true probabilities are its scores' logits halved) gives a fitted temperature of 2 and a
smaller error after recalibration; the proposed thresholds are where the cases put them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from analytics import calibration
from core.vocabulary import Band, Verdict
from storage.reporting import VerdictFact

WHEN = datetime(2026, 12, 1, tzinfo=UTC)


def fact(
    run: int, score: float, present: bool, reader: str = "A", verdict: str | None = None, band: Band | None = None
):
    """The verdict a reader who thinks the finding ``present`` gives on the band the score falls in."""
    band = band or (Band.POSITIVE if score >= 0.5 else Band.NEGATIVE)
    if verdict is None:
        verdict = "agree" if present == (band in (Band.POSITIVE, Band.CRITICAL)) else "disagree"
    return VerdictFact(1, run, run, "Effusion", score, band, "m", "w", True, "v", reader, Verdict(verdict), "", WHEN)


def overconfident(n: int, temperature: float, seed: int = 1) -> list[VerdictFact]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.5, n)
    shown = 1 / (1 + np.exp(-z))
    truth = rng.random(n) < 1 / (1 + np.exp(-z / temperature))
    return [fact(i, float(s), bool(t)) for i, (s, t) in enumerate(zip(shown, truth))]


def test_an_overconfident_model_gets_a_temperature_of_two_and_a_smaller_error_after() -> None:
    [result] = calibration.calibrate(overconfident(3000, 2.0), repeats=200)
    assert result.cases == 3000 and result.why_not == ""
    assert result.temperature == pytest.approx(2.0, rel=0.12)
    assert result.ece > 0.06  # the scores overstate: 0.9 means about 0.75 here
    assert result.ece_temperature < result.ece / 2 and result.ece_temperature < 0.03
    assert result.ece_isotonic < result.ece / 2 and result.ece_isotonic < 0.04
    assert sum(b.cases for b in result.reliability) == 3000


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    [result] = calibration.calibrate(overconfident(3000, 1.0, seed=2), repeats=200)
    assert result.temperature == pytest.approx(1.0, rel=0.12) and result.ece < 0.04


def test_the_proposed_thresholds_are_where_the_cases_put_them() -> None:
    facts = overconfident(2000, 2.0, seed=3)
    [result] = calibration.calibrate(facts, target_sensitivity=0.9, repeats=300)
    scores = np.array([f.score for f in facts])
    present = np.array([calibration.reader_implied_presence(f) for f in facts])
    positives, negatives = scores[present], scores[~present]
    # high: at least 90 % of the present cases at or above it, and it is the highest such cut
    assert np.mean(positives >= result.high.value - 1e-4) >= 0.9 > np.mean(positives > result.high.value + 1e-4)
    assert np.mean(positives >= result.low.value - 1e-4) >= 0.98  # rule-out: almost none below low
    assert np.mean(negatives >= result.critical.value) <= 0.02  # rule-in: almost no absent case above critical
    assert result.low.value < result.high.value < result.critical.value  # as the bands need them
    for threshold in (result.low, result.high, result.critical):
        assert threshold.interval[0] <= threshold.value <= threshold.interval[1]
    assert (result.high.cases, result.critical.cases) == (int(present.sum()), int((~present).sum()))


def test_unsure_indeterminate_and_split_readers_give_no_label_and_few_cases_no_proposal() -> None:
    facts = [
        fact(1, 0.9, True, "A"),
        fact(1, 0.9, False, "B"),  # a tie: no label for run 1
        fact(2, 0.8, True, "A"),
        fact(2, 0.8, True, "B"),
        fact(2, 0.8, False, "C"),  # a majority: present
        fact(3, 0.3, True, verdict="unsure"),
        fact(4, 0.45, True, band=Band.INDETERMINATE),
        fact(5, 0.2, False),
    ]
    [(key, (scores, labels))] = calibration.reader_labels(facts).items()
    assert key == ("m", "w", "Effusion") and scores.tolist() == [0.8, 0.2] and labels.tolist() == [1, 0]
    [result] = calibration.calibrate(facts)
    assert result.cases == 2 and result.high is None and result.temperature is None
    assert "at least 20" in result.why_not
