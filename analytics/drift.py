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

from storage.reporting import InputRow, ScoreRow, VerdictFact

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

    grouped: dict[tuple[str, str, str], dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[(row.model_id, row.weights_sha256, row.finding)][week_of(row.created_at)].append(row.score)
    return [
        w
        for (model_id, weights, finding), weeks in sorted(grouped.items())
        for w in _weekly(model_id, weights, finding, weeks, reference_weeks)
    ]


def _weekly(
    model_id: str, weights: str, name: str, weeks: dict[date, list[float]], reference_weeks: int
) -> list[WeekDrift]:
    """One series' weeks: the first ``reference_weeks`` are the reference, each later one is judged against them."""
    from scipy.stats import ks_2samp

    ordered = sorted(weeks)
    reference_days = ordered[:reference_weeks]
    reference = np.array([v for w in reference_days for v in weeks[w]])
    found = []
    for week in ordered:
        values = np.array(weeks[week])
        if week in reference_days:
            found.append(
                WeekDrift(
                    model_id, weights, name, week, len(values), float(values.mean()), None, None, False, "reference"
                )
            )
            continue
        psi = population_stability_index(reference, values)
        found.append(_judged(model_id, weights, name, week, values, psi, float(ks_2samp(reference, values).pvalue)))
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


# The input profile's numbers compared week by week (pipelines.analyze.input_profile), by what a reader calls them.
INPUT_MEASURES = {
    "mean": "mean intensity",
    "std": "intensity spread",
    "pixel_spacing_mm": "pixel spacing (mm)",
    "bits_stored": "bits stored",
    "rows": "rows",
}
# ... and its categories, compared by their shares.
INPUT_CATEGORIES = {"manufacturer": "manufacturer", "view": "view", "format": "file format"}
# The patient characteristics a site may keep (settings: retain_patient_characteristics): compared
# as categories where any input has them, and the subgroups of ``subgroups``.
CHARACTERISTICS = {"sex": "sex", "age_band": "age band"}


def input_drift(rows: Iterable[InputRow], reference_weeks: int = 4) -> list[WeekDrift]:
    """The inputs week by week against the first weeks (of all runs, whatever the model: the images
    are the same images): each numeric measure by PSI and KS as the scores are, each category by the
    PSI of its shares and a chi-square test (a new manufacturer or view, or one that stopped).
    ``finding`` names the measure; ``ks_p`` holds the category's chi-square p."""

    numbers: dict[str, dict[date, list[float]]] = defaultdict(lambda: defaultdict(list))
    categories: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        week = week_of(row.created_at)
        for key, name in INPUT_MEASURES.items():
            try:
                value = float(row.profile[key])
            except (KeyError, TypeError, ValueError):
                continue  # not known for this input (a PNG has no pixel spacing)
            numbers[name][week].append(value)
        for key, name in INPUT_CATEGORIES.items():
            categories[name][week].append(str(row.profile.get(key) or "unknown"))
        for key, name in CHARACTERISTICS.items():
            # Only where kept: inputs from before the site turned the option on (and PNGs) have
            # none, and counted as "unknown" every week after would read as a shift.
            if row.profile.get(key):
                categories[name][week].append(str(row.profile[key]))
    found = [w for name, weeks in sorted(numbers.items()) for w in _weekly("inputs", "", name, weeks, reference_weeks)]
    for name, weeks in sorted(categories.items()):
        ordered = sorted(weeks)
        reference_days = ordered[:reference_weeks]
        kinds = sorted({v for w in ordered for v in weeks[w]})
        reference_shares = _shares([v for w in reference_days for v in weeks[w]], kinds)
        for week in ordered:
            said = weeks[week]
            top = max(set(said), key=said.count)
            if week in reference_days:
                found.append(
                    WeekDrift("inputs", "", name, week, len(said), float("nan"), None, None, False, "reference")
                )
                continue
            shares = _shares(said, kinds)
            psi = float(np.sum((shares - reference_shares) * np.log(shares / reference_shares)))
            p = _chi_square_p([v for w in reference_days for v in weeks[w]], said, kinds)
            alert = len(said) >= MIN_WEEK_CASES and psi > PSI_ALERT and p < KS_ALERT_P
            why = (
                f"PSI {psi:.2f} > {PSI_ALERT} and chi-square p {p:.1g} < {KS_ALERT_P}: now mostly {top}"
                if alert
                else ""
            )
            if len(said) < MIN_WEEK_CASES:
                why = f"fewer than {MIN_WEEK_CASES} cases: not judged"
            found.append(WeekDrift("inputs", "", name, week, len(said), float("nan"), psi, p, alert, why))
    return found


def _chi_square_p(reference: list[str], current: list[str], kinds: list[str]) -> float:
    """The chi-square test of the two weeks' counts per category (1.0 when there is one category)."""
    from scipy.stats import chi2_contingency

    table = np.array([[values.count(k) for k in kinds] for values in (reference, current)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table).pvalue)


def _shares(values: list[str], kinds: list[str]) -> np.ndarray:
    counts = np.array([values.count(k) for k in kinds], dtype=float)
    return np.maximum(counts / max(len(values), 1), _FLOOR)


def _judged(
    model_id: str, weights: str, name: str, week: date, values: np.ndarray, psi: float, ks_p: float
) -> WeekDrift:
    if len(values) < MIN_WEEK_CASES:
        return WeekDrift(
            model_id,
            weights,
            name,
            week,
            len(values),
            float(values.mean()),
            psi,
            ks_p,
            False,
            f"fewer than {MIN_WEEK_CASES} cases: not judged",
        )
    alert = psi > PSI_ALERT and ks_p < KS_ALERT_P
    why = f"PSI {psi:.2f} > {PSI_ALERT} and KS p {ks_p:.1g} < {KS_ALERT_P}" if alert else ""
    return WeekDrift(model_id, weights, name, week, len(values), float(values.mean()), psi, ks_p, alert, why)


@dataclass(frozen=True)
class Subgroup:
    """One value of a patient characteristic (sex F, age band 60-69) over the runs that have it."""

    characteristic: str
    value: str
    runs: int
    verdicts: int  # agree or disagree, on those runs
    agree: int

    @property
    def agree_rate(self) -> float | None:
        return self.agree / self.verdicts if self.verdicts else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson's 95 % interval of the agree rate."""
        if not self.verdicts:
            return None
        n, p, z = self.verdicts, self.agree / self.verdicts, 1.959964
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n * n)) / (1 + z**2 / n)
        return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def subgroups(profiles: Iterable[InputRow], facts: Sequence[VerdictFact]) -> list[Subgroup]:
    """Runs and the readers' agreement with the AI per sex and per age band, where the site keeps
    them (unsure verdicts left out of the rate). Empty when no input has them."""
    value_of: dict[str, dict[int, str]] = {key: {} for key in CHARACTERISTICS}
    for row in profiles:
        for key in CHARACTERISTICS:
            if row.profile.get(key):
                value_of[key][row.run_id] = str(row.profile[key])
    found = []
    for key, name in CHARACTERISTICS.items():
        runs = value_of[key]
        for value in sorted(set(runs.values())):
            members = {run for run, v in runs.items() if v == value}
            decided = [f for f in facts if f.run_id in members and f.verdict != "unsure"]
            found.append(Subgroup(name, value, len(members), len(decided), sum(f.verdict == "agree" for f in decided)))
    return found
