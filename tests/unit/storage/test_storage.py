"""Append-only verdicts, idempotent runs, concurrent writers, nothing half-stored: on SQLite and on
a real PostgreSQL server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from core.errors import InvalidReview
from core.types import CaseFacts, Finding, ModelIdentity, Prediction
from core.vocabulary import Band, Verdict
from storage import reporting
from storage import repository as repo
from storage.db import open_database
from storage.models import Case, Run, VerdictEntry

LABELS = ("Effusion", "Pneumothorax", "Mass")
# SQLite's RAISE(ABORT) surfaces as IntegrityError; PostgreSQL's RAISE EXCEPTION as the driver's
# class for SQLSTATE P0001 (ProgrammingError in psycopg 3, InternalError in psycopg2). The message
# is what identifies the trigger.
REFUSED_BY_TRIGGER = DBAPIError


def prediction(weights: str = "a" * 64, trained: bool = False) -> Prediction:
    return Prediction(
        findings=(
            Finding("Effusion", 0.91, Band.CRITICAL),
            Finding("Pneumothorax", 0.55, Band.POSITIVE),
            Finding("Mass", 0.12, Band.NEGATIVE),
        ),
        model=ModelIdentity("xrv-densenet121-res224-all", weights, trained, "cpu"),
        bands_version="test-1",
        thresholds={label: {"low": 0.3, "high": 0.5, "critical": 0.8} for label in LABELS},
        timing_ms=123.0,
    )


FACTS = CaseFacts(
    input_sha256="f" * 64,
    source_format="dicom",
    modality="CR",
    view_position="PA",
    body_part="CHEST",
    patient_key="pk-0123456789abcdef01234567",
)


@pytest.fixture
def db(database_url: str):
    """The app's sessionmaker on an empty database, once SQLite and once PostgreSQL."""
    sessions = open_database(database_url)
    yield sessions
    sessions.kw["bind"].dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path):
    sessions = open_database(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    yield sessions
    sessions.kw["bind"].dispose()


@pytest.fixture
def run(db):
    with db.begin() as s:
        return repo.store_analysis(s, FACTS, prediction(), "Grad-CAM")


def test_run_records_everything_the_reviewer_saw(db, run) -> None:
    with db.begin() as s:
        stored = repo.get_run(s, run.run_id)
    assert stored.model_id == "xrv-densenet121-res224-all"
    assert stored.weights_sha256 == "a" * 64 and stored.trained is False
    assert stored.bands_version == "test-1" and stored.thresholds["Mass"]["critical"] == 0.8
    assert stored.cam_method == "Grad-CAM" and stored.device == "cpu" and stored.timing_ms == 123.0
    assert stored.facts.input_sha256 == "f" * 64 and stored.facts.patient_key.startswith("pk-")
    assert stored.created_at.tzinfo is not None
    assert [f.label for f in stored.findings] == list(LABELS)
    assert stored.ranked()[0].label == "Effusion"


def test_same_input_and_model_reuses_the_run_new_weights_add_one(db, run) -> None:
    with db.begin() as s:
        assert repo.store_analysis(s, FACTS, prediction(), "Grad-CAM").run_id == run.run_id
        other = repo.store_analysis(s, FACTS, prediction(weights="b" * 64, trained=True), "Grad-CAM")
    assert other.run_id != run.run_id
    with db.begin() as s:
        assert s.scalar(select(func.count(Case.id))) == 1
        assert s.scalar(select(func.count(Run.id))) == 2


def test_verdicts_are_append_only_with_a_history(db, run) -> None:
    with db.begin() as s:
        first = repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
        repeat = repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
        second = repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr A", "blunted angle is old")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.UNSURE, "Dr B")
    assert repeat.verdict_id == first.verdict_id, "re-recording the same verdict stores nothing"
    assert second.supersedes_id == first.verdict_id
    with db.begin() as s:
        history = repo.verdict_history(s, run.run_id)
        current = {(v.reviewer, v.item): v.verdict for v in repo.current_verdicts(s, run.run_id)}
        mine = repo.current_verdicts(s, run.run_id, "Dr A")
    assert [v.verdict for v in history] == ["agree", "disagree", "unsure"]
    assert history[:2] == [first, second], "what record_verdict returns is what was stored"
    assert current == {("Dr A", "Effusion"): "disagree", ("Dr B", "Effusion"): "unsure"}
    assert [v.note for v in mine] == ["blunted angle is old"]


def test_the_database_refuses_update_and_delete(db, run) -> None:
    with db.begin() as s:
        repo.record_verdict(s, run.run_id, "Mass", Verdict.AGREE, "Dr A")
        repo.record_case_note(s, run.run_id, "compare with prior", "Dr A")
    for statement in (
        "UPDATE verdicts SET verdict = 'disagree'",
        "DELETE FROM verdicts",
        "UPDATE case_notes SET note = 'x'",
        "DELETE FROM case_notes",
    ):
        with pytest.raises(REFUSED_BY_TRIGGER, match="append-only"):
            with db.begin() as s:
                s.execute(text(statement))
    with db.begin() as s:
        assert repo.current_verdicts(s, run.run_id)[0].verdict == "agree"


@pytest.mark.parametrize(
    "label, verdict, reviewer, phrase",
    [
        ("Effusion", "maybe", "Dr A", "must be one of"),
        ("Nodule", Verdict.AGREE, "Dr A", "not a finding"),
        ("Effusion", "agree", "   ", "Enter your name"),
        ("Effusion", "agree", "x" * 81, "limited to 80"),
    ],
)
def test_bad_verdicts_are_refused_and_store_nothing(db, run, label, verdict, reviewer, phrase) -> None:
    with pytest.raises(InvalidReview, match=phrase):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id, label, verdict, reviewer)
    with db.begin() as s:
        assert s.scalar(select(func.count(VerdictEntry.id))) == 0


def test_a_disagree_keeps_the_readers_own_class_and_only_a_disagree_can(db, run) -> None:
    with db.begin() as s:
        plain = repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr A")
        named = repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr A", reader_label="Mass")
        again = repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr A", reader_label="Mass")
    assert named.supersedes_id == plain.verdict_id and again == named, "naming the class is a new entry, once"
    with db.begin() as s:
        [current] = repo.current_verdicts(s, run.run_id, "Dr A")
    assert current.reader_label == "Mass" and current.verdict == "disagree"
    for verdict, label in ((Verdict.AGREE, "Mass"), (Verdict.DISAGREE, "Effusion"), (Verdict.DISAGREE, "Nodule")):
        with pytest.raises(InvalidReview, match="goes with a Disagree on another class"):
            with db.begin() as s:
                repo.record_verdict(s, run.run_id, "Effusion", verdict, "Dr B", reader_label=label)
    with db.begin() as s:
        assert s.scalar(select(func.count(VerdictEntry.id))) == 2


def test_a_verdict_on_a_run_that_does_not_exist_is_refused(db, run) -> None:
    with pytest.raises(InvalidReview, match="does not exist"):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id + 1, "Effusion", Verdict.AGREE, "Dr A")


def test_a_failed_transaction_leaves_nothing_half_stored(db) -> None:
    with pytest.raises(InvalidReview):
        with db.begin() as s:
            run = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM")
            repo.record_verdict(s, run.run_id, "Effusion", "agree", "")
    with db.begin() as s:
        assert s.scalar(select(func.count(Case.id))) == 0
        assert s.scalar(select(func.count(Run.id))) == 0


def test_html_in_notes_is_stored_verbatim_as_text(db, run) -> None:
    payload = "<img src=x onerror=alert(1)> <script>alert(2)</script>"
    with db.begin() as s:
        repo.record_verdict(s, run.run_id, "Mass", Verdict.UNSURE, "<b>Dr X</b>", payload)
    with db.begin() as s:
        stored = repo.current_verdicts(s, run.run_id)[0]
    assert stored.note == payload and stored.reviewer == "<b>Dr X</b>"


def test_twenty_concurrent_writers_lose_no_verdict(db, run) -> None:
    """20 threads record verdicts at once: no error reaches a reviewer, every verdict is stored, and
    each reviewer's history per finding is one unbroken supersede chain."""
    reviewers, rounds = 20, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(reviewers)

    def write(index: int) -> None:
        try:
            barrier.wait()
            for round_ in range(rounds):
                with db.begin() as s:
                    repo.record_verdict(
                        s,
                        run.run_id,
                        LABELS[round_ % 3],
                        (Verdict.AGREE, Verdict.DISAGREE)[round_ % 2],
                        f"Dr {index}",
                        f"round {round_}",
                    )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(reviewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with db.begin() as s:
        history = repo.verdict_history(s, run.run_id)
        assert len(history) == reviewers * rounds
        assert s.scalar(select(func.count(VerdictEntry.id))) == reviewers * rounds
        for i in range(reviewers):
            chain = [v for v in history if v.reviewer == f"Dr {i}"]
            assert [v.note for v in chain] == [f"round {r}" for r in range(rounds)]
            for label in LABELS:
                per_label = [v for v in chain if v.item == label]
                assert per_label[0].supersedes_id is None
                assert [v.supersedes_id for v in per_label[1:]] == [v.verdict_id for v in per_label[:-1]]


def test_case_notes_and_case_list(db, run) -> None:
    with db.begin() as s:
        assert repo.record_case_note(s, run.run_id, "", "Dr A") is None
        first = repo.record_case_note(s, run.run_id, "Compare with prior film.", "Dr A")
        assert repo.record_case_note(s, run.run_id, "Compare with prior film.", "Dr A") is None
        second = repo.record_case_note(s, run.run_id, "Prior film shows the same.", "Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
    assert second.supersedes_id == first.note_id
    with db.begin() as s:
        assert repo.current_case_note(s, run.run_id, "Dr A").note == "Prior film shows the same."
        cases = reporting.worklist(s).cases
    assert len(cases) == 1
    assert cases[0].top_band == "critical" and cases[0].top_finding == "Effusion"
    assert cases[0].status == "in review" and cases[0].readers_started == 1 and cases[0].trained is False


def test_sqlite_runs_in_wal_with_a_busy_timeout(sqlite_db) -> None:
    with sqlite_db.begin() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_region_explanation_is_stored_with_the_run_and_kept(db, run) -> None:
    import numpy as np

    from xai.region_shap import RegionExplanation

    result = RegionExplanation(
        labels=LABELS,
        region_names=("A", "B"),
        values=np.array([[0.1, -0.05], [0.0, 0.2], [0.0, 0.0]]),
        base_values=np.array([0.5, 0.3, 0.12]),
        scores=np.array([0.55, 0.5, 0.12]),
        evaluations=4,
        regions_source="fixed grid",
        masking="blur",
        timing_ms=10.0,
        max_err=0.0,
    )
    with db.begin() as s:
        repo.store_region_explanation(s, run.run_id, result)
        repo.store_region_explanation(s, run.run_id, result)  # a second copy is not added
    with db.begin() as s:
        loaded = repo.get_region_explanation(s, run.run_id)
        assert s.execute(text("SELECT count(*) FROM region_explanations")).scalar() == 1
    assert loaded.labels == LABELS and loaded.region_names == ("A", "B")
    np.testing.assert_array_equal(loaded.values, result.values)
    assert loaded.for_label("Pneumothorax")[1:] == (0.3, 0.5) and loaded.is_flat("Mass")
    with pytest.raises(REFUSED_BY_TRIGGER, match="append-only"):
        with db.begin() as s:
            s.execute(text("DELETE FROM region_explanations"))


def test_every_change_leaves_an_audit_event_that_cannot_be_altered(db) -> None:
    from storage import audit

    with db.begin() as s:
        run = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM", actor="Dr A")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.AGREE, "Dr A")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.DISAGREE, "Dr A")
        repo.record_case_note(s, run.run_id, "compare with prior", "Dr B")
        audit.record_event(s, "export_made", "Dr B", case_id=run.case_id, export="csv")
    with db.begin() as s:
        events = audit.events_for_case(s, run.case_id)
    assert [e.kind for e in events] == [
        "case_created",
        "analysis_run",
        "verdict_set",
        "verdict_changed",
        "case_note",
        "export_made",
    ]
    assert [e.actor for e in events] == ["Dr A", "Dr A", "Dr A", "Dr A", "Dr B", "Dr B"]
    assert events[3].detail["replaces"] == events[2].detail["entry"]
    assert all(e.at.tzinfo is not None for e in events)
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(REFUSED_BY_TRIGGER, match="append-only"):
            with db.begin() as s:
                s.execute(text(statement))
    with pytest.raises(ValueError, match="Unknown audit event kind"):
        with db.begin() as s:
            audit.record_event(s, "deleted_everything", "Dr X")


def test_a_reader_s_history_holds_only_their_own_entries(db) -> None:
    from storage import audit

    with db.begin() as s:
        run = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM", actor="Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A", "seen by A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr B", "seen by B")
        repo.record_case_note(s, run.run_id, "A's note", "Dr A")
        repo.record_case_note(s, run.run_id, "B's note", "Dr B")
    with db.begin() as s:
        assert {v.reviewer for v in repo.verdict_history(s, run.run_id)} == {"Dr A", "Dr B"}
        assert [v.note for v in repo.verdict_history(s, run.run_id, reviewer="Dr A")] == ["seen by A"]
        assert [n.note for n in repo.case_note_history(s, run.run_id, reviewer="Dr B")] == ["B's note"]
        assert repo.verdict_history(s, run.run_id, reviewer="") == []
        trail = audit.events_for_case(s, run.case_id, actor="Dr B")
        assert {e.actor for e in trail} <= {"Dr B", audit.SYSTEM} and any(e.kind == "verdict_set" for e in trail)
        assert all(e.detail.get("verdict") != "agree" for e in trail), "nothing of A's verdict leaks"


def test_a_reader_s_csv_export_numbers_their_own_entries_not_the_database_s(db) -> None:
    """The analytics CSV once carried each verdict's database id: a reader's own rows read 1, 4, 6
    and the gaps told how much the others had written. Now its ``entry`` is the number the history
    table and the JSON export show, and no database id is in the file."""
    import csv
    import io

    from analytics import exports

    with db.begin() as s:
        run = repo.store_analysis(s, FACTS, prediction(trained=True), "Grad-CAM", actor="Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr B")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.AGREE, "Dr B")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.UNSURE, "Dr A")
        repo.record_verdict(s, run.run_id, "Pneumothorax", Verdict.AGREE, "Dr B")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.DISAGREE, "Dr A")
    with db.begin() as s:
        facts = reporting.current_verdict_facts(s, reviewer="Dr A")
        everyone = reporting.current_verdict_facts(s)
    rows = list(csv.DictReader(io.StringIO(exports.verdicts_csv(facts).decode())))
    assert [(r["finding"], r["verdict"], r["entry"]) for r in rows] == [
        ("Effusion", "agree", "1"),
        ("Mass", "disagree", "3"),
    ]
    assert "verdict_id" not in rows[0]
    assert sorted((f.reviewer, f.finding, f.entry) for f in everyone) == [
        ("Dr A", "Effusion", 1),
        ("Dr A", "Mass", 3),
        ("Dr B", "Effusion", 1),
        ("Dr B", "Mass", 2),
        ("Dr B", "Pneumothorax", 3),
    ]


def test_a_reader_s_audit_trail_names_entries_by_their_own_numbers(db) -> None:
    """The case page's audit trail showed "entry 5, replaces 2": database ids, whose gaps told
    reader B how much reader A had written in between."""
    with db.begin() as s:
        run = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM", actor="Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr B")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
        repo.record_verdict(s, run.run_id, "Mass", Verdict.AGREE, "Dr A")
        repo.record_case_note(s, run.run_id, "A's note", "Dr A")
        repo.record_verdict(s, run.run_id, "Effusion", Verdict.DISAGREE, "Dr B")
        repo.record_case_note(s, run.run_id, "B's note", "Dr B")
    with db.begin() as s:
        trail = reporting.case_trail(s, run.case_id, actor="Dr B")
        everyone = reporting.case_trail(s, run.case_id)
    entries = [(e.kind, e.detail.get("entry"), e.detail.get("replaces")) for e in trail if "entry" in e.detail]
    assert entries == [("verdict_set", "#1", None), ("verdict_changed", "#2", "#1"), ("case_note", "#1", None)]
    assert [e.detail["entry"] for e in everyone if e.actor == "Dr A" and "entry" in e.detail] == ["#1", "#2", "#1"]


def test_reviewer_names_follow_the_latest_sign_in(db) -> None:
    with db.begin() as s:
        repo.register_reviewer(s, "u1#abc", "reader@hospital.org", "reader@hospital.org", "https://idp", "u1")
    with db.begin() as s:
        repo.register_reviewer(s, "u1#abc", "Dr Reader", None, "https://idp", "u1")
    with db.begin() as s:
        assert repo.reviewer_names(s) == {"u1#abc": "Dr Reader"}


def test_two_identities_with_the_same_name_are_told_apart_wherever_names_are_shown(db) -> None:
    with db.begin() as s:
        repo.register_reviewer(s, "u1#abc", "Dr Same (unverified)", None, "https://idp", "u1")
        repo.register_reviewer(s, "u2#abc", "Dr Same (unverified)", None, "https://idp", "u2")
        repo.register_reviewer(s, "u3#abc", "lead@hospital.org", "lead@hospital.org", "https://idp", "u3")
        names = repo.reviewer_names(s)
    assert names == {
        "u1#abc": "Dr Same (unverified) [u1#abc]",
        "u2#abc": "Dr Same (unverified) [u2#abc]",
        "u3#abc": "lead@hospital.org",
    }


def test_the_session_scope_turns_database_failures_into_storage_errors(db, run, caplog) -> None:
    """What a page shows comes from storage: a refused change and a database that cannot be reached
    both arrive as StorageError saying nothing was saved (the details go to the log); a reviewer's
    mistake arrives as itself; a committed block stays committed."""
    from core.errors import StorageError
    from storage.db import BUSY_MESSAGE, REFUSED_MESSAGE, session_scope

    with session_scope(db) as s:
        repo.record_verdict(s, run.run_id, "Mass", Verdict.AGREE, "Dr A")
    with pytest.raises(StorageError) as refused:
        with session_scope(db) as s:
            s.execute(text("DELETE FROM verdicts"))
    assert str(refused.value) == REFUSED_MESSAGE and "nothing was saved" in REFUSED_MESSAGE
    assert "refused a change" in caplog.text
    with pytest.raises(InvalidReview, match="not a finding"):
        with session_scope(db) as s:
            repo.record_verdict(s, run.run_id, "Nodule", Verdict.AGREE, "Dr A")
    with session_scope(db) as s:
        assert [v.verdict for v in repo.verdict_history(s, run.run_id)] == [Verdict.AGREE]

    from sqlalchemy.orm import sessionmaker

    engine = create_engine("sqlite:////nonexistent-folder/for/sure/reviews.sqlite3")  # cannot be opened
    with pytest.raises(StorageError) as busy:
        with session_scope(sessionmaker(engine)) as s:
            s.execute(text("SELECT 1"))
    engine.dispose()
    assert str(busy.value) == BUSY_MESSAGE and "Try again in a moment" in BUSY_MESSAGE
