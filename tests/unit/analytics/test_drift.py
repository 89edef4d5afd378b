"""Score drift week by week, on synthetic scores with known answers: a stable week is not flagged,
a shifted week is, a small week is shown but not judged, and new weights start their own reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analytics import drift
from core.vocabulary import Band, Verdict
from storage.reporting import ScoreRow, VerdictFact

MONDAY = datetime(2026, 9, 7, 10, tzinfo=UTC)


def rows(week: int, scores: np.ndarray, weights: str = "w1") -> list[ScoreRow]:
    when = MONDAY + timedelta(weeks=week, days=2)
    return [ScoreRow(i, "m", weights, True, "Effusion", float(s), when) for i, s in enumerate(scores)]


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, 2000)
    assert drift.population_stability_index(reference, reference) == pytest.approx(0.0, abs=1e-9)
    assert drift.population_stability_index(reference, rng.beta(2, 5, 2000)) < 0.05
    assert drift.population_stability_index(reference, rng.beta(4, 4, 2000)) > 0.5


def test_a_shifted_week_is_flagged_a_stable_one_is_not_and_a_small_one_is_not_judged() -> None:
    rng = np.random.default_rng(1)
    data = [r for week in range(4) for r in rows(week, rng.beta(2, 5, 100))]  # the reference: 4 weeks
    data += rows(4, rng.beta(2, 5, 100))  # as before
    data += rows(5, np.clip(rng.beta(2, 5, 100) + 0.15, 0, 1))  # every score 0.15 higher (brighter films, say)
    data += rows(6, np.clip(rng.beta(2, 5, 10) + 0.3, 0, 1))  # shifted, but 10 cases
    found = {w.week: w for w in drift.score_drift(data)}
    weeks = [(MONDAY + timedelta(weeks=k)).date() for k in range(7)]
    assert all(found[w].why == "reference" and found[w].psi is None for w in weeks[:4])
    assert not found[weeks[4]].alert and found[weeks[4]].ks_p > drift.KS_ALERT_P  # PSI alone is noisy at n = 100
    shifted = found[weeks[5]]
    assert shifted.alert and shifted.psi > drift.PSI_ALERT and shifted.ks_p < drift.KS_ALERT_P
    assert shifted.why.startswith("PSI ") and shifted.mean_score == pytest.approx(
        found[weeks[4]].mean_score + 0.15, abs=0.05
    )
    assert not found[weeks[6]].alert and "not judged" in found[weeks[6]].why


def test_new_weights_start_their_own_reference_rather_than_drift() -> None:
    rng = np.random.default_rng(2)
    data = [r for week in range(4) for r in rows(week, rng.beta(2, 5, 100))]
    data += [r for week in range(4, 6) for r in rows(week, rng.beta(5, 2, 100), weights="w2")]
    found = drift.score_drift(data)
    assert {w.weights_sha256 for w in found} == {"w1", "w2"}
    assert not any(w.alert for w in found)  # the second weights' first weeks are their reference


def test_agreement_by_week() -> None:
    def fact(day: int, verdict: str) -> VerdictFact:
        when = MONDAY + timedelta(days=day)
        return VerdictFact(
            1, day, day, "Effusion", 0.7, Band.POSITIVE, "m", "w", True, "v", "A", Verdict(verdict), "", when
        )

    weeks = drift.agreement_by_week([fact(0, "agree"), fact(1, "disagree"), fact(2, "unsure"), fact(8, "agree")])
    assert [(w.verdicts, w.agree_rate) for w in weeks] == [(3, 0.5), (1, 1.0)]


def test_a_brightness_shift_of_real_radiographs_is_flagged_in_the_inputs() -> None:
    """The samples' four real chest films, decoded by the app's reader, each week as 40 slightly
    different takes (a crop and noise); in the sixth week the detector reads 25 % brighter."""
    from dataclasses import replace

    from core.types import Image2D
    from inference.images.ingest import load_image
    from pipelines.analyze import input_profile
    from storage.reporting import InputRow
    from tests.conftest import SAMPLES, require_samples

    require_samples()
    films = []
    for path in sorted((SAMPLES / "cxr").iterdir()):
        image = load_image(path.read_bytes(), path.name, max_bytes=10**8, max_pixels=10**8, hash_key=b"k")
        films.append(replace(image, pixels=image.pixels[::4, ::4]))  # a quarter of the pixels: the same statistics
    rng = np.random.default_rng(3)

    def take(week: int, brighter: bool) -> InputRow:
        film = films[rng.integers(len(films))]
        h, w = film.pixels.shape
        top, left = rng.integers(0, h // 10), rng.integers(0, w // 10)
        pixels = film.pixels[top : top + h * 9 // 10, left : left + w * 9 // 10] + rng.normal(
            0, 2, (h * 9 // 10, w * 9 // 10)
        )
        if brighter:
            pixels = pixels * 1.25
        profile = input_profile(Image2D(np.clip(pixels, 0, 255).astype(np.float32), film.facts))
        return InputRow(0, "m", "w", True, MONDAY + timedelta(weeks=week, days=1), profile)

    data = [take(week, brighter=False) for week in range(5) for _ in range(40)]
    data += [take(5, brighter=True) for _ in range(40)]
    found = {(w.finding, w.week): w for w in drift.input_drift(data)}
    week4, week5 = ((MONDAY + timedelta(weeks=k)).date() for k in (4, 5))
    assert not found[("mean intensity", week4)].alert
    brighter = found[("mean intensity", week5)]
    assert brighter.alert and brighter.psi > drift.PSI_ALERT and brighter.ks_p < drift.KS_ALERT_P
    assert not found[("file format", week5)].alert  # the same mix of files: only their brightness moved
    assert {w.finding for w in found.values()} >= {"mean intensity", "intensity spread", "file format", "view"}


def test_subgroups_give_each_sex_and_age_bands_agreement_and_are_absent_where_not_kept() -> None:
    from storage.reporting import InputRow

    def profile(run: int, **kept: str) -> InputRow:
        return InputRow(run, "m", "w", True, MONDAY, {"format": "dicom", "mean": 100.0, **kept})

    def verdict(run: int, said: str) -> VerdictFact:
        return VerdictFact(
            1, run, run, "Effusion", 0.7, Band.POSITIVE, "m", "w", True, "v", "A", Verdict(said), "", MONDAY
        )

    profiles = [profile(i, sex="F", age_band="60-69") for i in range(10)] + [
        profile(10 + i, sex="M") for i in range(10)
    ]
    facts = [verdict(i, "agree") for i in range(9)] + [verdict(9, "disagree")]
    facts += [verdict(10 + i, "agree" if i < 5 else "disagree") for i in range(10)] + [verdict(10, "unsure")]
    found = {(g.characteristic, g.value): g for g in drift.subgroups(profiles, facts)}
    assert set(found) == {("sex", "F"), ("sex", "M"), ("age band", "60-69")}
    women, men = found[("sex", "F")], found[("sex", "M")]
    assert (women.runs, women.verdicts, women.agree_rate) == (10, 10, 0.9)
    assert (men.runs, men.verdicts, men.agree_rate) == (10, 10, 0.5)  # unsure left out of the rate
    assert men.interval[0] < 0.5 < men.interval[1] < women.interval[1]
    assert drift.subgroups([profile(1)], facts) == []
    weeks = drift.input_drift([profile(1)])
    assert not {w.finding for w in weeks} & {"sex", "age band"}  # not kept: no rows of unknowns


def test_turning_the_characteristics_on_is_not_drift_their_reference_is_the_first_weeks_that_have_them() -> None:
    from storage.reporting import InputRow

    rows = []
    for week in range(10):
        for i in range(40):
            kept = {"sex": "FM"[i % 2]} if week >= 4 else {}  # the site turned the option on in week 4
            when = MONDAY + timedelta(weeks=week, days=1)
            rows.append(InputRow(i, "m", "w", True, when, {"format": "dicom", "mean": 100.0 + i % 5, **kept}))
    sex = [w for w in drift.input_drift(rows) if w.finding == "sex"]
    assert len(sex) == 6 and [w.why for w in sex[:4]] == ["reference"] * 4
    assert not any(w.alert for w in sex)
