"""Drift of what the model says, week by week, against a reference period: for each finding, the
distribution of its scores (population stability index, and the two-sample Kolmogorov-Smirnov
test), and the readers' agreement with the AI. A week is flagged when its scores moved both
significantly (KS p below 0.01) and by much (PSI above 0.2), with enough cases behind it: on a
week of 100 cases PSI alone ranges up to 0.3 with nothing changed (its noise is about nine times
1/n), so it is the size of a shift the test has found, not a test of its own.

Scores are compared only within one model and its weights: new weights are a new reference, not drift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from storage.reporting import ScoreRow, VerdictFact

PSI_ALERT = 0.2  # the field's usual "significant shift"
KS_ALERT_P = 0.01
MIN_WEEK_CASES = 30  # fewer cases in a week: shown, never flagged
_BINS = 10
_FLOOR = 1e-4  # an empty bin counts as this share (the PSI of an empty bin is otherwise infinite)


def week_of(moment: datetime) -> date:
    """The Monday (UTC) of the week ``moment`` falls in."""
    day = moment.date()
    return day - timedelta(days=day.weekday())


def population_stability_index(reference: np.ndarray, current: np.ndarray, bins: int = _BINS) -> float:
    """PSI of ``current`` against ``reference`` over the reference's deciles (equal-count bins)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # the reference is (nearly) one value: fixed bins over [0, 1] instead
        edges = np.linspace(0.0, 1.0, bins + 1)
    inner = edges[1:-1]
    expected = np.bincount(np.digitize(reference, inner), minlength=len(inner) + 1) / len(reference)
    actual = np.bincount(np.digitize(current, inner), minlength=len(inner) + 1) / len(current)
    expected, actual = np.maximum(expected, _FLOOR), np.maximum(actual, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class WeekDrift:
    model_id: str
    weights_sha256: str
    finding: str
    week: date
    cases: int
    mean_score: float
    psi: float | None  # None for a reference week
    ks_p: float | None
    alert: bool
    why: str  # what crossed a limit, or why the week is not judged


def score_drift(rows: Iterable[ScoreRow], reference_weeks: int = 4) -> list[WeekDrift]:
    """Per (model, weights, finding), each week after the first ``reference_weeks`` weeks that hold
    scores, against those weeks together."""
    from scipy.stats import ks_2samp

    grouped: dict[tuple[str, str, str], dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[(row.model_id, row.weights_sha256, row.finding)][week_of(row.created_at)].append(row.score)
    found = []
    for (model_id, weights, finding), weeks in sorted(grouped.items()):
        ordered = sorted(weeks)
        reference_days = ordered[:reference_weeks]
        reference = np.array([s for w in reference_days for s in weeks[w]])
        for week in ordered:
            scores = np.array(weeks[week])
            if week in reference_days:
                found.append(
                    WeekDrift(
                        model_id,
                        weights,
                        finding,
                        week,
                        len(scores),
                        float(scores.mean()),
                        None,
                        None,
                        False,
                        "reference",
                    )
                )
                continue
            psi = population_stability_index(reference, scores)
            ks_p = float(ks_2samp(reference, scores).pvalue)
            if len(scores) < MIN_WEEK_CASES:
                alert, why = False, f"fewer than {MIN_WEEK_CASES} cases: not judged"
            else:
                alert = psi > PSI_ALERT and ks_p < KS_ALERT_P
                why = f"PSI {psi:.2f} > {PSI_ALERT} and KS p {ks_p:.1g} < {KS_ALERT_P}" if alert else ""
            found.append(
                WeekDrift(model_id, weights, finding, week, len(scores), float(scores.mean()), psi, ks_p, alert, why)
            )
    return found


@dataclass(frozen=True)
class WeekAgreement:
    week: date
    verdicts: int
    agree_rate: float | None  # agree among agree + disagree


def agreement_by_week(facts: Sequence[VerdictFact]) -> list[WeekAgreement]:
    by_week: dict[date, list[VerdictFact]] = defaultdict(list)
    for fact in facts:
        by_week[week_of(fact.created_at)].append(fact)
    found = []
    for week in sorted(by_week):
        decided = [f for f in by_week[week] if f.verdict != "unsure"]
        rate = sum(f.verdict == "agree" for f in decided) / len(decided) if decided else None
        found.append(WeekAgreement(week, len(by_week[week]), rate))
    return found
