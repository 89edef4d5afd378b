"""``python -m inference drift``: for a scheduled job that alerts someone. Runs stored over six
weeks; the sixth week's films read brighter and score higher: the command says so and exits 3."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from cli.drift import DRIFTED
from cli.main import main
from core.types import Finding, ModelIdentity, Prediction
from core.vocabulary import Band

MONDAY = datetime(2026, 9, 7, 9, tzinfo=UTC)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@contextmanager
def stored_at(when: datetime):
    """Runs inserted meanwhile carry ``when`` as their time (the repository stamps the present)."""
    from storage.models import Run

    def stamp(_mapper, _connection, target) -> None:
        target.created_at = when

    event.listen(Run, "before_insert", stamp)
    try:
        yield
    finally:
        event.remove(Run, "before_insert", stamp)


@pytest.fixture
def six_weeks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import load_settings
    from storage import repository
    from storage.db import open_database
    from tests.unit.storage.test_storage import FACTS

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    rng = np.random.default_rng(4)
    sessions = open_database(load_settings().database_url)
    number = 0
    for week in range(6):
        shifted = week == 5
        with stored_at(MONDAY + timedelta(weeks=week, days=1)), sessions.begin() as s:
            for _ in range(40):
                number += 1
                score = float(np.clip(rng.beta(2, 5) + (0.2 if shifted else 0.0), 0, 1))
                prediction = Prediction(
                    (Finding("Effusion", score, Band.NEGATIVE),),
                    ModelIdentity("xrv-densenet121-res224-all", "a" * 64, True, "cpu"),
                    "v1",
                    {},
                    10.0,
                )
                profile = {"format": "png", "view": "", "rows": 512, "cols": 512, "std": 60.0}
                profile["mean"] = float(rng.normal(150 if shifted else 120, 5))
                repository.store_analysis(
                    s, replace(FACTS, input_sha256=f"{number:064x}"), prediction, "Grad-CAM", params={"input": profile}
                )
    sessions.kw["bind"].dispose()


def test_drift_is_said_and_the_exit_status_says_it_to_a_scheduler(six_weeks) -> None:
    code, said = run("drift")
    assert code == DRIFTED, said
    week = (MONDAY + timedelta(weeks=5)).date().isoformat()
    assert f"DRIFT {week} xrv-densenet121-res224-all Effusion: PSI" in said
    assert f"DRIFT {week} inputs mean intensity: PSI" in said
    assert "drifted of" in said.splitlines()[-1]

    code, lines = run("drift", "--json")
    rows = [json.loads(line) for line in lines.splitlines()]
    assert code == DRIFTED and {r["finding"] for r in rows if r["alert"]} == {"Effusion", "mean intensity"}
    assert all(r["why"] == "reference" for r in rows if r["week"] < "2026-10-05")

    code, said = run("drift", "--reference-weeks", "6")  # everything is the reference: nothing judged
    assert code == 0 and said.strip().endswith("0 drifted of 0 week(s) judged after the reference weeks.")


def test_drift_without_runs_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    code, said = run("drift", "--json")
    assert code == 2 and "No classification run to compare yet" in json.loads(said)["error"]
