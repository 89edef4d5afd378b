"""Reader studies in storage, on SQLite and PostgreSQL: a study takes one model's classification
runs; a first read is written once and cannot be redone after the AI was seen; the read with the AI
needs the first; a closed study takes no reads; the AI stays hidden from a reader until their
first read; the database refuses changes to reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text

from core.errors import InvalidReview
from core.vocabulary import Presence, StudyPhase
from storage import repository as repo
from storage import studies
from storage.models import utcnow
from tests.unit.storage.test_storage import FACTS, REFUSED_BY_TRIGGER, db, prediction  # noqa: F401

ALL_ABSENT = {"Effusion": "absent", "Pneumothorax": "absent", "Mass": "absent"}


@pytest.fixture
def runs(db):  # noqa: F811
    with db.begin() as s:
        return [
            repo.store_analysis(s, replace(FACTS, input_sha256=f"{i:064x}"), prediction(), "Grad-CAM").run_id
            for i in range(3)
        ]


def test_a_study_is_set_up_read_twice_per_case_and_kept_as_read(db, runs) -> None:  # noqa: F811
    with db.begin() as s:
        study = studies.create_study(s, "  Effusion  study ", runs, ["Effusion", "Mass"], "Dr Lead")
    assert study.name == "Effusion study" and study.run_ids == tuple(runs) and study.open
    started = utcnow() - timedelta(seconds=40)
    with db.begin() as s:
        first = studies.record_read(
            s, study.study_id, runs[0], "Dr A", StudyPhase.UNAIDED, {"Effusion": "absent", "Mass": "absent"}, started
        )
    assert first.answers == {"Effusion": Presence.ABSENT, "Mass": Presence.ABSENT} and first.seconds >= 40
    with db.begin() as s:
        assert runs[0] not in studies.hidden_runs(s, "Dr A") and runs[1] in studies.hidden_runs(s, "Dr A")
        assert runs[0] in studies.hidden_runs(s, "Dr B")  # another reader has not read it yet
    with db.begin() as s, pytest.raises(InvalidReview, match="kept as you made it, before you saw the AI"):
        studies.record_read(s, study.study_id, runs[0], "Dr A", StudyPhase.UNAIDED, ALL_ABSENT, started)
    with db.begin() as s, pytest.raises(InvalidReview, match="first read"):
        studies.record_read(s, study.study_id, runs[1], "Dr A", StudyPhase.AIDED, ALL_ABSENT, started)
    with db.begin() as s, pytest.raises(InvalidReview, match="Call every finding.*Mass"):
        studies.record_read(s, study.study_id, runs[1], "Dr A", StudyPhase.UNAIDED, {"Effusion": "absent"}, started)
    with db.begin() as s:
        studies.record_read(
            s, study.study_id, runs[0], "Dr A", StudyPhase.AIDED, {"Effusion": "present", "Mass": "absent"}, utcnow()
        )
        kept = studies.reads(s, study.study_id)
    assert [(r.phase, r.answers["Effusion"]) for r in kept] == [
        (StudyPhase.UNAIDED, Presence.ABSENT),
        (StudyPhase.AIDED, Presence.PRESENT),
    ]
    with db.begin() as s, pytest.raises(REFUSED_BY_TRIGGER, match="append-only|refuse|not allowed|cannot"):
        s.execute(text("UPDATE study_reads SET answers_json = '{}'"))
    with db.begin() as s:
        studies.close_study(s, study.study_id, "Dr Lead")
        assert studies.hidden_runs(s, "Dr B") == set()  # closed: read as any other case
    with db.begin() as s, pytest.raises(InvalidReview, match="closed"):
        studies.record_read(s, study.study_id, runs[1], "Dr A", StudyPhase.UNAIDED, ALL_ABSENT, started)


def test_a_study_of_several_models_unknown_findings_or_one_case_is_refused_and_nothing_stored(db, runs) -> None:  # noqa: F811
    other = prediction()
    other = replace(other, model=replace(other.model, model_id="another-model"))
    with db.begin() as s:
        foreign = repo.store_analysis(s, replace(FACTS, input_sha256="e" * 64), other, "Grad-CAM").run_id
    for run_ids, findings, said in [
        ([runs[0], foreign], ["Effusion"], "2 models"),
        (runs, ["Effusion", "Nodule"], "no score for Nodule"),
        (runs[:1], ["Effusion"], "at least 2 cases"),
        (runs, [], "at least one finding"),
    ]:
        with db.begin() as s, pytest.raises(InvalidReview, match=said):
            studies.create_study(s, "Refused", run_ids, findings, "Dr Lead")
    with db.begin() as s:
        assert studies.studies(s) == []
        studies.create_study(s, "Once", runs[:2], ["Mass"], "Dr Lead")
    with db.begin() as s, pytest.raises(InvalidReview, match="exists already"):
        studies.create_study(s, "Once", runs[1:], ["Mass"], "Dr Lead")
    # A case in one open study at a time: a first read there would show the AI in the other.
    with db.begin() as s, pytest.raises(InvalidReview, match=rf"Runs \[{runs[1]}\] are in another open study"):
        studies.create_study(s, "Twice", runs[1:], ["Mass"], "Dr Lead")


def test_a_hidden_case_stays_hidden_whatever_its_other_runs(db, runs) -> None:  # noqa: F811
    other = prediction(weights="b" * 64)  # the same image through other weights: another run of the case
    with db.begin() as s:
        study = studies.create_study(s, "Hidden", runs[:2], ["Mass"], "Dr Lead")
        again = repo.store_analysis(s, replace(FACTS, input_sha256=f"{0:064x}"), other, "Grad-CAM")
        assert again.run_id not in runs and again.case_id == repo.get_run(s, runs[0]).case_id
        assert again.case_id in studies.hidden_cases(s, "Dr A")
        studies.record_read(s, study.study_id, runs[0], "Dr A", StudyPhase.UNAIDED, {"Mass": "absent"}, utcnow())
        assert again.case_id not in studies.hidden_cases(s, "Dr A")
