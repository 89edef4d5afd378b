"""The worklist reads every run of both kinds in a fixed number of queries (no query per run), and
its rows say what a reader needs: the highest band and status of each X-ray case, the structures
and status of each segmentation. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import event

from core.results import LabelInfo, LabelMap, Segmentation, Structure, StructureMeasurement
from core.types import CaseFacts, Finding, ModelIdentity, Prediction
from core.vocabulary import Band, RunKind, Verdict
from storage import reporting
from storage import repository as repo
from storage.db import open_database

MAX_QUERIES = 4
BANDS = (Band.NEGATIVE, Band.INDETERMINATE, Band.POSITIVE, Band.CRITICAL)


@pytest.fixture
def db(database_url: str):
    sessions = open_database(database_url)
    yield sessions
    sessions.kw["bind"].dispose()


def prediction(i: int) -> Prediction:
    band = BANDS[i % 4]
    return Prediction(
        findings=(Finding("Effusion", 0.2 + i / 1000, band), Finding("Mass", 0.1, Band.NEGATIVE)),
        model=ModelIdentity("xrv", f"{i:064d}", i % 5 != 0, "cpu"),
        bands_version="v1",
        thresholds={"Effusion": {"low": 0.3, "high": 0.5, "critical": 0.8}},
        timing_ms=1.0,
    )


def segmentation(i: int) -> Segmentation:
    data = np.zeros((2, 2, 2), dtype=np.uint8)
    data[0, 0, 0] = 1
    measurements = (
        StructureMeasurement("Liver", (1,), 1, 0.001, 0, 0, 1.0),
        StructureMeasurement("Tumour", (2,), 0, 0.0, None, None, 0.0),
    )
    uploaded = i % 2 == 1
    return Segmentation(
        label_map=LabelMap(
            data=data,
            affine=np.eye(4),
            labels=(LabelInfo(1, "Liver", (1, 2, 3)), LabelInfo(2, "Tumour", (4, 5, 6))),
            structures=(Structure("Liver", (1,)), Structure("Tumour", (2,))),
            source="uploaded:mask" if uploaded else "model:seg",
            sha256=hashlib.sha256(f"map {i}".encode()).hexdigest(),
        ),
        model=ModelIdentity("uploaded-mask" if uploaded else "seg", f"{i:064d}", True, "cpu"),
        params=(("roi", "96"),),
        spacing_mm=(1.0, 1.0, 1.0),
        timing_ms=1.0,
        measurements=measurements,
        measure_ms=0.1,
    )


def store(db, runs: int, start: int) -> dict[str, dict[int, int]]:
    """``runs`` runs numbered from ``start``, half X-ray cases and half segmentations of one volume.
    Every third X-ray case has Dr A's verdict on one finding of two (in review) and every fourth
    Dr B's on both (reviewed); every third segmentation has Dr A's verdict on both structures and
    Dr B's on one."""
    ids: dict[str, dict[int, int]] = {"xray": {}, "segmentation": {}}
    with db.begin() as s:
        for i in range(start, start + runs // 2):
            facts = CaseFacts(hashlib.sha256(f"xray {i}".encode()).hexdigest(), "png", "image")
            run = repo.store_analysis(s, facts, prediction(i), "Grad-CAM")
            ids["xray"][i] = run.run_id
            if i % 3 == 0:
                repo.record_verdict(s, run.run_id, "Effusion", Verdict.AGREE, "Dr A")
            if i % 4 == 0:
                for label in ("Effusion", "Mass"):
                    repo.record_verdict(s, run.run_id, label, Verdict.DISAGREE, "Dr B")
        volume = CaseFacts("v" * 64, "nifti", "CT")
        for i in range(start, start + runs - runs // 2):
            run = repo.store_segmentation(s, volume, segmentation(i))
            ids["segmentation"][i] = run.run_id
            if i % 3 == 0:
                for name in ("Liver", "Tumour"):
                    repo.record_verdict(s, run.run_id, name, Verdict.AGREE, "Dr A")
                repo.record_verdict(s, run.run_id, "Liver", Verdict.UNSURE, "Dr B")
    return ids


def counted_worklist(db) -> tuple[reporting.Worklist, list[str]]:
    engine = db.kw["bind"]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with db.begin() as s:
        s.connection()  # the transaction's own BEGIN is not the worklist's
        event.listen(engine, "before_cursor_execute", count)
        try:
            board = reporting.worklist(s)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    return board, statements


def test_the_worklist_of_200_runs_takes_as_few_queries_as_that_of_20(db) -> None:
    ids = store(db, 20, start=0)
    _, statements_for_20 = counted_worklist(db)
    more = store(db, 180, start=10)
    board, statements = counted_worklist(db)

    assert len(statements) <= MAX_QUERIES, statements
    assert len(statements) == len(statements_for_20)
    xray = {**ids["xray"], **more["xray"]}
    segmentations = {**ids["segmentation"], **more["segmentation"]}
    assert len(xray) == len(segmentations) == 100
    assert len(board.cases) == 100 and len(board.segmentations) == 100

    # X-ray cases: critical first, then newest; the top finding, band and status of each.
    assert [(-r.top_band.rank, -r.run_id) for r in board.cases] == sorted(
        (-r.top_band.rank, -r.run_id) for r in board.cases
    )
    by_run = {r.run_id: r for r in board.cases}
    assert set(by_run) == set(xray.values())
    for i, run_id in xray.items():
        row = by_run[run_id]
        assert (row.top_band, row.top_finding) == (BANDS[i % 4], "Effusion"), i  # Effusion scores above Mass
        assert row.trained is (i % 5 != 0) and row.modality == "image"
        started = (i % 3 == 0) + (i % 4 == 0)
        assert (row.readers_done, row.readers_started) == (int(i % 4 == 0), started), (i, row)
        assert row.status == ("reviewed by 1" if i % 4 == 0 else "in review" if started else "new")

    # Segmentations: newest first, of both kinds, with how far their readers have got.
    assert [r.run_id for r in board.segmentations] == sorted(segmentations.values(), reverse=True)
    by_run_id = {r.run_id: r for r in board.segmentations}
    for i, run_id in segmentations.items():
        row = by_run_id[run_id]
        assert row.kind is (RunKind.UPLOADED_MASK if i % 2 else RunKind.SEGMENTATION)
        assert (row.structures, row.modality) == (2, "CT")
        assert (row.status, row.readers_started) == (("reviewed by 1", 2) if i % 3 == 0 else ("new", 0)), (i, row)
