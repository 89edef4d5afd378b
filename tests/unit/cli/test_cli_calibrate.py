"""``python -m inference calibrate`` on a database of stored runs and verdicts: one line per finding
with its error before and after recalibration and the proposed thresholds; runs on untrained
weights only when asked; a finding with too few labelled cases says so."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from core.types import Finding, ModelIdentity, Prediction
from core.vocabulary import Band, Verdict


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def band(score: float) -> Band:
    return Band.CRITICAL if score >= 0.8 else Band.POSITIVE if score >= 0.5 else Band.NEGATIVE


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 chest X-ray runs read by one reader: Effusion scored over the whole range and judged
    present from 0.6 up; Mass judged on only 5 runs."""
    from storage import repository
    from storage.db import open_database
    from tests.unit.storage.test_storage import FACTS

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    from core.settings import load_settings

    sessions = open_database(load_settings().database_url)
    with sessions.begin() as s:
        for i, score in enumerate(np.linspace(0.02, 0.98, 60)):
            findings = (Finding("Effusion", float(score), band(score)), Finding("Mass", 0.3, Band.NEGATIVE))
            prediction = Prediction(
                findings, ModelIdentity("xrv-densenet121-res224-all", "a" * 64, True, "cpu"), "v1", {}, 10.0
            )
            stored = repository.store_analysis(s, replace(FACTS, input_sha256=f"{i:064x}"), prediction, "Grad-CAM")
            present = score >= 0.6
            agree = present == (band(score) is not Band.NEGATIVE)
            repository.record_verdict(
                s, stored.run_id, "Effusion", Verdict.AGREE if agree else Verdict.DISAGREE, "Dr A"
            )
            if i < 5:
                repository.record_verdict(s, stored.run_id, "Mass", Verdict.AGREE, "Dr A")
    sessions.kw["bind"].dispose()


def test_calibrate_prints_each_findings_errors_and_proposed_thresholds(site) -> None:
    code, said = run("calibrate", "--json")
    assert code == 0, said
    effusion, mass = (json.loads(line) for line in said.splitlines())
    assert (effusion["finding"], effusion["cases"], effusion["present"]) == ("Effusion", 60, 24)
    # Every present case scores 0.6 or more: the high cut keeps 90 % of them, the low one 98 %.
    assert 0.6 <= effusion["high"]["value"] <= 0.7 and 0.59 <= effusion["low"]["value"] <= effusion["high"]["value"]
    assert effusion["critical"]["value"] > effusion["high"]["value"] and effusion["critical"]["cases"] == 36
    # Every absent case scores below 0.6: the rule-in cut falls below high, and is moved above it, said.
    assert effusion["adjusted"].startswith("critical moved just above high")
    assert effusion["ece_isotonic"] < effusion["ece"]
    assert mass["cases"] == 5 and mass["high"] is None and "at least 20" in mass["why_not"]

    code, human = run("calibrate")
    assert code == 0 and "proposed high" in human and "Mass: 5 case(s)" in human


def test_calibrate_says_what_is_missing(site) -> None:
    code, said = run("calibrate", "--model", "brain-tumour-4class", "--json")
    assert code == 2 and "No verdict gives a reader label yet" in json.loads(said)["error"]
    code, said = run("calibrate", "--target-sensitivity", "1.5", "--json")
    assert code == 2 and "--target-sensitivity must be" in json.loads(said)["error"]
