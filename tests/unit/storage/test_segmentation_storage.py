"""Segmentation runs, their structures and per-structure verdicts, through the one repository path
that X-ray runs take: stored once, immutable or append-only, audited, nothing half-stored; on
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from core.errors import InvalidReview, StorageError
from core.results import LabelInfo, LabelMap, Segmentation, Structure, StructureMeasurement
from core.types import CaseFacts, Finding, ModelIdentity, Prediction
from core.vocabulary import Band, RunKind, Verdict
from inference.volume.types import voxel_volume_ml
from storage import audit, reporting
from storage import repository as repo
from storage.db import open_database
from storage.models import AuditEvent, Case, Run, RunStructure, VerdictEntry
from storage.repository import SegmentationRunRecord

# SQLite's RAISE(ABORT) is an IntegrityError, PostgreSQL's RAISE EXCEPTION the driver's P0001 class:
# the message identifies the trigger (as in test_storage).
REFUSED_BY_TRIGGER = DBAPIError

FACTS = CaseFacts(input_sha256="e" * 64, source_format="nifti", modality="CT", patient_key="pk-seg")
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
LABELS = (LabelInfo(1, "Liver", (220, 40, 40)), LabelInfo(2, "Tumour", (40, 220, 40)))
STRUCTURES = (Structure("Liver", (1,)), Structure("Tumour", (2,)), Structure("Liver and tumour", (1, 2)))
PARAMS = (("roi", "96x96x96"), ("overlap", "0.5"), ("threshold", "0.5"))


def prediction() -> Prediction:
    """An X-ray run on the same case: the case is shared."""
    return Prediction(
        findings=(Finding("Effusion", 0.91, Band.CRITICAL),),
        model=ModelIdentity("xrv-densenet121-res224-all", "a" * 64, False, "cpu"),
        bands_version="test-1",
        thresholds={"Effusion": {"low": 0.3, "high": 0.5, "critical": 0.8}},
        timing_ms=12.0,
    )


def label_data(extra: int = 0) -> np.ndarray:
    data = np.zeros((6, 5, 4), dtype=np.uint8)
    data[1:4, 1:4, 0:3] = 1
    data[2, 2, 1 : 2 + extra] = 2
    data.setflags(write=False)
    return data


def measure(data: np.ndarray, structure: Structure) -> StructureMeasurement:
    """Enough of a measurement for storage: the real one lives elsewhere."""
    mask = np.isin(data, structure.values)
    slices = np.flatnonzero(mask.any(axis=(0, 1)))
    return StructureMeasurement(
        name=structure.name,
        values=structure.values,
        voxels=np.int64(mask.sum()),  # numpy scalars, as a measurement routine would give
        volume_ml=np.float64(mask.sum() * voxel_volume_ml(AFFINE)),
        axial_first=int(slices[0]) if slices.size else None,
        axial_last=int(slices[-1]) if slices.size else None,
        max_axial_extent_mm=1.0 / 3.0 + mask.sum(),  # a float that must survive exactly
    )


def segmentation(
    extra: int = 0, structures: tuple[Structure, ...] = STRUCTURES, weights: str = "c" * 64, measured: bool = True
) -> Segmentation:
    data = label_data(extra)
    label_map = LabelMap(
        data=data,
        affine=AFFINE,
        labels=LABELS,
        structures=structures,
        source="model:seg-test",
        sha256=hashlib.sha256(data.tobytes()).hexdigest(),
    )
    return Segmentation(
        label_map=label_map,
        model=ModelIdentity("seg-test-unet", weights, False, "cpu"),
        params=PARAMS,
        spacing_mm=(2.0, 2.0, 3.0),
        timing_ms=456.5,
        measurements=tuple(measure(data, s) for s in structures) if measured else (),
        measure_ms=1.0,
    )


def count(session, column) -> int:
    return session.scalar(select(func.count(column)))


def counts(db) -> tuple[int, ...]:
    with db.begin() as s:
        return tuple(count(s, c) for c in (Case.id, Run.id, RunStructure.id, VerdictEntry.id, AuditEvent.id))


@pytest.fixture
def db(database_url: str):
    sessions = open_database(database_url)
    yield sessions
    sessions.kw["bind"].dispose()


@pytest.fixture
def run(db) -> SegmentationRunRecord:
    with db.begin() as s:
        return repo.store_segmentation(s, FACTS, segmentation(), actor="Dr A")


def test_a_run_keeps_everything_the_reviewer_saw(db, run) -> None:
    with db.begin() as s:
        stored = repo.get_run(s, run.run_id, SegmentationRunRecord)
        assert repo.get_run(s, run.run_id + 1) is None
        assert repo.get_run(s, run.run_id, repo.ClassificationRunRecord) is None, "not a run of that kind"
        assert repo.get_run(s, run.run_id) == stored
    assert stored == run, "what store_segmentation returns is what was stored"
    assert stored.kind is RunKind.SEGMENTATION and stored.items == ("Liver", "Tumour", "Liver and tumour")
    assert stored.model_id == "seg-test-unet" and stored.weights_sha256 == "c" * 64 and stored.trained is False
    assert stored.label_map_sha256 == segmentation().label_map.sha256
    assert stored.params == dict(PARAMS) and list(stored.params) == ["roi", "overlap", "threshold"]
    assert stored.labels == LABELS and stored.spacing == (2.0, 2.0, 3.0) and stored.shape == (6, 5, 4)
    assert stored.device == "cpu" and stored.timing_ms == 456.5 and stored.created_at.tzinfo is not None
    assert stored.facts.input_sha256 == "e" * 64 and stored.facts.modality == "CT"
    assert stored.structures == segmentation().measurements
    assert stored.structure("Liver and tumour").values == (1, 2) and stored.structure("Tumour").voxels == 1


def test_a_run_is_stored_once_per_identity_and_shares_the_case(db, run) -> None:
    with db.begin() as s:
        assert repo.store_segmentation(s, FACTS, segmentation()).run_id == run.run_id
        other_map = repo.store_segmentation(s, FACTS, segmentation(extra=1))
        other_weights = repo.store_segmentation(s, FACTS, segmentation(weights="d" * 64))
        xray = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM")
    assert len({run.run_id, other_map.run_id, other_weights.run_id, xray.run_id}) == 4, "one table, one numbering"
    assert xray.case_id == run.case_id == other_map.case_id
    with db.begin() as s:
        assert count(s, Case.id) == 1 and count(s, Run.id) == 4
        assert count(s, RunStructure.id) == 3 * len(STRUCTURES)
        listed = repo.runs_for_case(s, run.case_id)
        assert repo.runs_for_case(s, run.case_id + 1) == []
    assert [r.run_id for r in listed] == [run.run_id, other_map.run_id, other_weights.run_id, xray.run_id]
    assert listed[0] == run and listed[3] == xray
    assert [r.kind for r in listed] == [RunKind.SEGMENTATION] * 3 + [RunKind.CLASSIFICATION]


def test_structure_verdicts_are_append_only_with_a_history(db, run) -> None:
    with db.begin() as s:
        first = repo.record_verdict(s, run.run_id, "Tumour", Verdict.AGREE, "Dr A")
        repeat = repo.record_verdict(s, run.run_id, "Tumour", Verdict.AGREE, " Dr  A ")
        second = repo.record_verdict(s, run.run_id, "Tumour", Verdict.DISAGREE, "Dr A", "misses the rim")
        repo.record_verdict(s, run.run_id, "Liver", Verdict.UNSURE, "Dr A")
        repo.record_verdict(s, run.run_id, "Tumour", Verdict.UNSURE, "Dr B")
    assert repeat == first, "re-recording the same verdict stores nothing"
    assert second.supersedes_id == first.verdict_id and first.supersedes_id is None
    assert first.verdict is Verdict.AGREE and first.cam_method is None
    with db.begin() as s:
        history = repo.verdict_history(s, run.run_id)
        current = {(v.reviewer, v.item): v.verdict for v in repo.current_verdicts(s, run.run_id)}
        mine = repo.current_verdicts(s, run.run_id, "Dr A")
        assert [v.item for v in repo.verdict_history(s, run.run_id, reviewer="Dr B")] == ["Tumour"]
    assert [v.verdict for v in history] == [Verdict.AGREE, Verdict.DISAGREE, Verdict.UNSURE, Verdict.UNSURE]
    assert history[:2] == [first, second], "what record_verdict returns is what was stored"
    assert current == {("Dr A", "Tumour"): "disagree", ("Dr A", "Liver"): "unsure", ("Dr B", "Tumour"): "unsure"}
    assert [(v.item, v.note) for v in mine] == [("Tumour", "misses the rim"), ("Liver", "")]


def test_a_concurrent_supersede_is_refused_with_a_reload(db, run, monkeypatch) -> None:
    """Two windows superseding the same verdict: the second insert breaks supersedes_id's
    uniqueness and the reviewer is asked to reload, with nothing stored."""
    with db.begin() as s:
        first = repo.record_verdict(s, run.run_id, "Liver", Verdict.AGREE, "Dr A")
        repo.record_verdict(s, run.run_id, "Liver", Verdict.DISAGREE, "Dr A")
    before = counts(db)
    stale = lambda session, *_: session.get(VerdictEntry, first.verdict_id)  # noqa: E731
    monkeypatch.setattr(repo, "_latest_verdict", stale)
    with pytest.raises(InvalidReview, match="reload"):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id, "Liver", Verdict.UNSURE, "Dr A")
    assert counts(db) == before


@pytest.mark.parametrize(
    "structure, verdict, reviewer, phrase",
    [
        ("Spleen", Verdict.AGREE, "Dr A", r"'Spleen' is not a structure of segmentation run \d+\."),
        ("Tumour", "maybe", "Dr A", "must be one of agree, disagree, unsure; got 'maybe'"),
        ("Tumour", Verdict.AGREE, "   ", "Enter your name"),
    ],
)
def test_bad_structure_verdicts_are_refused_and_store_nothing(db, run, structure, verdict, reviewer, phrase) -> None:
    before = counts(db)
    with pytest.raises(InvalidReview, match=phrase):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id, structure, verdict, reviewer)
    with pytest.raises(InvalidReview, match=r"Run \d+ does not exist"):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id + 1, "Tumour", Verdict.AGREE, "Dr A")
    with pytest.raises(InvalidReview, match="heatmap method goes with a finding"):
        with db.begin() as s:
            repo.record_verdict(s, run.run_id, "Tumour", Verdict.AGREE, "Dr A", cam_method="Grad-CAM")
    assert counts(db) == before


def test_the_database_refuses_update_and_delete_on_segmentation_tables(db, run) -> None:
    with db.begin() as s:
        repo.record_verdict(s, run.run_id, "Tumour", Verdict.AGREE, "Dr A")
    before = counts(db)
    for statement in (
        "UPDATE verdicts SET verdict = 'disagree'",
        "DELETE FROM verdicts",
        "UPDATE analysis_runs SET trained = TRUE",
        "DELETE FROM analysis_runs",
        "UPDATE run_structures SET volume_ml = 0",
        "DELETE FROM run_structures",
    ):
        with pytest.raises(REFUSED_BY_TRIGGER, match="append-only"):
            with db.begin() as s:
                s.execute(text(statement))
    assert counts(db) == before
    with db.begin() as s:
        assert repo.get_run(s, run.run_id) == run
        assert repo.current_verdicts(s, run.run_id)[0].verdict is Verdict.AGREE


def test_every_write_leaves_an_audit_event(db, run) -> None:
    with db.begin() as s:
        repo.store_segmentation(s, FACTS, segmentation())  # already stored: no event
        first = repo.record_verdict(s, run.run_id, "Liver", Verdict.AGREE, "Dr B")
        repo.record_verdict(s, run.run_id, "Liver", Verdict.AGREE, "Dr B")  # no change: no event
        repo.record_verdict(s, run.run_id, "Liver", Verdict.DISAGREE, "Dr B")
    with db.begin() as s:
        events = audit.events_for_case(s, run.case_id)
    assert [e.kind for e in events] == [
        "case_created",
        "segmentation_run",
        "structure_verdict_set",
        "structure_verdict_changed",
    ]
    assert [e.actor for e in events] == ["Dr A", "Dr A", "Dr B", "Dr B"]
    assert all(e.case_id == run.case_id for e in events)
    assert events[0].run_id is None and all(e.run_id == run.run_id for e in events[1:])
    assert events[1].detail["trained"] is False and events[1].detail["model_id"] == "seg-test-unet"
    assert events[1].detail["run_kind"] == "segmentation" and events[1].detail["structures"] == len(STRUCTURES)
    assert events[2].detail == {
        "structure": "Liver",
        "verdict": "agree",
        "entry": first.verdict_id,
        "replaces": None,
    }
    assert events[3].detail["replaces"] == first.verdict_id


@pytest.mark.parametrize(
    "bad, phrase",
    [
        (segmentation(measured=False), "no measured structures"),
        (segmentation(structures=STRUCTURES + (Structure("Liver", (1,)),)), "'Liver' twice"),
        (segmentation(structures=(Structure("x" * 65, (1,)),)), "1 to 64 characters"),
    ],
    ids=["unmeasured", "duplicate-name", "long-name"],
)
def test_a_segmentation_that_cannot_be_stored_is_refused_before_any_write(db, bad, phrase) -> None:
    with pytest.raises(StorageError, match=phrase):
        with db.begin() as s:
            repo.store_segmentation(s, FACTS, bad)
    assert counts(db) == (0, 0, 0, 0, 0)


def test_a_failure_after_the_run_is_written_leaves_nothing_behind(db, monkeypatch) -> None:
    """The case, run and structures are flushed when the audit write fails: all of it goes."""
    record_event = audit.record_event

    def failing(session, kind, *args, **kwargs):
        record_event(session, kind, *args, **kwargs)
        if kind == "segmentation_run":
            session.execute(text("INSERT INTO run_structures (id) VALUES (NULL)"))  # a real database error

    monkeypatch.setattr(audit, "record_event", failing)
    with pytest.raises(DBAPIError):
        with db.begin() as s:
            repo.store_segmentation(s, FACTS, segmentation())
    assert counts(db) == (0, 0, 0, 0, 0)


def test_worklist_counts_a_reader_done_when_every_structure_under_review_has_a_verdict(db) -> None:
    # 20 declared structures, 2 with voxels: beyond REVIEW_ALL_UP_TO only those two need a verdict.
    many = tuple(Structure(f"Organ {i}", (i,)) for i in range(1, 21))
    with db.begin() as s:
        run = repo.store_segmentation(s, FACTS, segmentation(extra=1, structures=many), actor="Dr A")
        repo.record_verdict(s, run.run_id, "Organ 1", Verdict.AGREE, "Dr A")
    with db.begin() as s:
        (row,) = reporting.worklist(s).segmentations
    assert (row.structures, row.status, row.kind) == (20, "in review", RunKind.SEGMENTATION)
    with db.begin() as s:
        repo.record_verdict(s, run.run_id, "Organ 2", Verdict.DISAGREE, "Dr A")
        (row,) = reporting.worklist(s).segmentations
    assert row.status == "reviewed by 1"


def test_few_structures_all_need_a_verdict_even_empty_ones(db, run) -> None:
    # 3 structures (up to REVIEW_ALL_UP_TO): every one needs a verdict, as an empty one would too.
    with db.begin() as s:
        for name in ("Liver", "Liver and tumour"):
            repo.record_verdict(s, run.run_id, name, Verdict.AGREE, "Dr A")
        (row,) = reporting.worklist(s).segmentations
    assert row.status == "in review"
