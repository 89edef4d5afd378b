"""Revision 0005 carries a database made by revision 0004 over to one runs table and one verdicts
table without losing or changing a fact: X-ray runs keep their ids, segmentation runs get new ones
with their structures, verdict chains and audit events following them; the app then keeps writing
on top. Downgrading moves them back. On SQLite and on a real PostgreSQL server.

The 0004 database is written with plain SQL against the tables as 0004 made them (reflected from
the database), never through today's models: that is what an existing installation holds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, MetaData, insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.types import CaseFacts, Finding, ModelIdentity, Prediction
from core.vocabulary import Band, RunKind, Verdict
from storage import audit, reporting
from storage import repository as repo
from storage.db import make_engine, open_database
from storage.migrate import alembic_config
from storage.repository import ClassificationRunRecord, SegmentationRunRecord

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
THRESHOLDS = {
    "Effusion": {"low": 0.3, "high": 0.5, "critical": 0.8},
    "Mass": {"low": 0.3, "high": 0.5, "critical": 0.8},
}
LABELS = [{"value": 1, "name": "Liver", "color": [220, 40, 40]}, {"value": 2, "name": "Tumour", "color": [40, 220, 40]}]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Old:
    """What the 0004 database holds, by its 0004 ids."""

    xray_case: int = 0
    volume_case: int = 0
    xray_runs: list[int] = field(default_factory=list)
    segmentation_runs: list[int] = field(default_factory=list)  # model, then uploaded mask
    verdicts: dict[str, int] = field(default_factory=dict)
    structure_verdicts: dict[str, int] = field(default_factory=dict)
    notes: list[int] = field(default_factory=list)


def _adder(connection: Connection):
    tables = MetaData()
    tables.reflect(connection)

    def add(table: str, **values: object) -> int:
        t = tables.tables[table]
        return connection.execute(insert(t).values(**values).returning(t.c.id)).scalar_one()

    def event(kind: str, actor: str, case_id: int, run_id: int | None, minute: int, **detail: object) -> None:
        add(
            "audit_events",
            at=at(minute),
            actor=actor,
            kind=kind,
            case_id=case_id,
            run_id=run_id,
            detail_json=json.dumps(detail, sort_keys=True),
        )

    return add, event


def build_0004(url: str) -> Old:
    """A 0004 database as the app of that revision left it: two X-ray runs with a superseded
    verdict, case notes and a region explanation; a model segmentation and an uploaded mask with
    superseded structure verdicts; and the audit events of all of it."""
    command.upgrade(alembic_config(url), "0004")
    engine = make_engine(url)
    old = Old()
    try:
        with engine.begin() as c:
            add, event = _adder(c)
            old.xray_case = add(
                "cases",
                input_sha256="a" * 64,
                source_format="dicom",
                modality="CR",
                view_position="PA",
                body_part="CHEST",
                patient_key="pk-x",
                created_at=at(0),
            )
            event("case_created", "Dr A", old.xray_case, None, 0, modality="CR", source_format="dicom")
            for i, (weights, trained) in enumerate((("1" * 64, False), ("2" * 64, True))):
                run = add(
                    "analysis_runs",
                    case_id=old.xray_case,
                    input_sha256="a" * 64,
                    model_id="xrv-densenet121-res224-all",
                    weights_sha256=weights,
                    trained=trained,
                    bands_version="v1",
                    thresholds_json=json.dumps(THRESHOLDS, sort_keys=True),
                    cam_method="Grad-CAM",
                    device="cpu",
                    timing_ms=120.5,
                    created_at=at(i),
                )
                add("run_findings", run_id=run, position=0, label="Effusion", score=0.91, band="critical")
                add("run_findings", run_id=run, position=1, label="Mass", score=0.12, band="negative")
                event(
                    "analysis_run",
                    "Dr A",
                    old.xray_case,
                    run,
                    i,
                    model_id="xrv-densenet121-res224-all",
                    weights_sha256=weights,
                    trained=trained,
                    bands_version="v1",
                )
                old.xray_runs.append(run)
            first_run = old.xray_runs[0]
            for key, item, verdict, note, reviewer, cam, supersedes, minute in (
                ("A1", "Effusion", "agree", "", "Dr A", "Grad-CAM", None, 2),
                ("A2", "Effusion", "disagree", "old blunting", "Dr A", "Grad-CAM++", "A1", 3),
                ("B1", "Mass", "unsure", "", "Dr B", None, None, 4),
            ):
                old.verdicts[key] = add(
                    "verdicts",
                    run_id=first_run,
                    finding_label=item,
                    verdict=verdict,
                    note=note,
                    reviewer=reviewer,
                    cam_method=cam,
                    supersedes_id=old.verdicts.get(supersedes),
                    created_at=at(minute),
                )
                event(
                    "verdict_changed" if supersedes else "verdict_set",
                    reviewer,
                    old.xray_case,
                    first_run,
                    minute,
                    finding=item,
                    verdict=verdict,
                    entry=old.verdicts[key],
                    replaces=old.verdicts.get(supersedes),
                )
            for text_ in ("compare with prior", "prior shows the same"):
                old.notes.append(
                    add(
                        "case_notes",
                        run_id=first_run,
                        note=text_,
                        reviewer="Dr A",
                        supersedes_id=old.notes[-1] if old.notes else None,
                        created_at=at(5),
                    )
                )
                event("case_note", "Dr A", old.xray_case, first_run, 5, entry=old.notes[-1])
            add(
                "region_explanations",
                run_id=first_run,
                method="region-shap-exact",
                regions_source="fixed grid",
                masking="blur",
                region_names_json='["A", "B"]',
                values_json='{"Effusion": [0.1, -0.05]}',
                base_values_json='{"Effusion": 0.5}',
                scores_json='{"Effusion": 0.55}',
                evaluations=4,
                max_err=0.0,
                timing_ms=10.0,
                created_at=at(6),
            )

            old.volume_case = add(
                "cases",
                input_sha256="b" * 64,
                source_format="nifti",
                modality="CT",
                patient_key="pk-v",
                created_at=at(10),
            )
            event("case_created", "Dr A", old.volume_case, None, 10, modality="CT", source_format="nifti")
            for i, (source, model_id, structures) in enumerate(
                (
                    ("model", "seg-unet", (("Liver", 1, 120), ("Tumour", 2, 0))),
                    ("uploaded", "uploaded-mask", (("Label 1", 1, 7),)),
                )
            ):
                run = add(
                    "segmentation_runs",
                    case_id=old.volume_case,
                    input_sha256="b" * 64,
                    model_id=model_id,
                    weights_sha256=str(i + 5) * 64,
                    trained=source == "uploaded",
                    source=source,
                    label_map_sha256=str(i + 7) * 64,
                    params_json='{"roi": "96x96x96", "overlap": "0.5"}',
                    labels_json=json.dumps(LABELS),
                    spacing_json="[2.0, 2.0, 3.0]",
                    shape_json="[6, 5, 4]",
                    device="cuda" if source == "model" else "n/a",
                    timing_ms=456.5,
                    created_at=at(11 + i),
                )
                for position, (name, value, voxels) in enumerate(structures):
                    add(
                        "run_structures",
                        run_id=run,
                        position=position,
                        name=name,
                        values_json=f"[{value}]",
                        voxels=voxels,
                        volume_ml=voxels * 0.012,
                        axial_first=1 if voxels else None,
                        axial_last=3 if voxels else None,
                        max_axial_extent_mm=1.0 / 3.0 + voxels,
                    )
                event(
                    "segmentation_run",
                    "Dr A",
                    old.volume_case,
                    None,
                    11 + i,
                    segmentation_run=run,
                    model_id=model_id,
                    source=source,
                    structures=len(structures),
                )
                old.segmentation_runs.append(run)
            for key, run_index, item, verdict, note, reviewer, supersedes, minute in (
                ("A1", 0, "Liver", "agree", "", "Dr A", None, 13),
                ("A2", 0, "Liver", "disagree", "misses the rim", "Dr A", "A1", 14),
                ("A3", 0, "Liver", "unsure", "", "Dr A", "A2", 15),
                ("B1", 0, "Tumour", "agree", "nothing there", "Dr B", None, 16),
                ("U1", 1, "Label 1", "agree", "", "Dr A", None, 17),
            ):
                run = old.segmentation_runs[run_index]
                old.structure_verdicts[key] = add(
                    "structure_verdicts",
                    run_id=run,
                    structure=item,
                    verdict=verdict,
                    note=note,
                    reviewer=reviewer,
                    supersedes_id=old.structure_verdicts.get(supersedes),
                    created_at=at(minute),
                )
                event(
                    "structure_verdict_changed" if supersedes else "structure_verdict_set",
                    reviewer,
                    old.volume_case,
                    None,
                    minute,
                    segmentation_run=run,
                    structure=item,
                    verdict=verdict,
                    entry=old.structure_verdicts[key],
                    replaces=old.structure_verdicts.get(supersedes),
                )
    finally:
        engine.dispose()
    return old


@pytest.fixture
def migrated(database_url: str):
    old = build_0004(database_url)
    sessions = open_database(database_url)  # the app's own path: it migrates to head
    yield old, sessions
    sessions.kw["bind"].dispose()


def test_every_run_verdict_note_and_event_of_0004_is_there_with_the_same_facts(migrated) -> None:
    old, db = migrated
    with db.begin() as s:
        xray = [repo.get_run(s, run_id, ClassificationRunRecord) for run_id in old.xray_runs]
        volumes = repo.runs_for_case(s, old.volume_case)
        xray_history = repo.verdict_history(s, old.xray_runs[0])
        notes = repo.case_note_history(s, old.xray_runs[0])
        explanation = repo.get_region_explanation(s, old.xray_runs[0])
        histories = {run.run_id: repo.verdict_history(s, run.run_id) for run in volumes}
        blinded = repo.verdict_history(s, volumes[0].run_id, reviewer="Dr B")
        current = repo.current_verdicts(s, volumes[0].run_id, "Dr A")
        xray_events = audit.events_for_case(s, old.xray_case)
        volume_events = audit.events_for_case(s, old.volume_case)

    # X-ray runs: the same ids and every fact the reviewer saw.
    first, second = xray
    assert (first.run_id, second.run_id) == tuple(old.xray_runs)
    assert first.kind is RunKind.CLASSIFICATION and first.case_id == old.xray_case
    assert first.facts == CaseFacts("a" * 64, "dicom", "CR", "PA", "CHEST", "pk-x")
    assert (first.model_id, first.weights_sha256, first.trained, second.trained) == (
        "xrv-densenet121-res224-all",
        "1" * 64,
        False,
        True,
    )
    assert (first.bands_version, first.thresholds, first.cam_method, first.device, first.timing_ms) == (
        "v1",
        THRESHOLDS,
        "Grad-CAM",
        "cpu",
        120.5,
    )
    assert first.findings == (Finding("Effusion", 0.91, Band.CRITICAL), Finding("Mass", 0.12, Band.NEGATIVE))
    assert first.created_at == at(0)

    # X-ray verdicts and notes: the same entries, chains and ids.
    assert [
        (v.verdict_id, v.item, v.verdict, v.note, v.reviewer, v.cam_method, v.supersedes_id, v.created_at)
        for v in xray_history
    ] == [
        (old.verdicts["A1"], "Effusion", Verdict.AGREE, "", "Dr A", "Grad-CAM", None, at(2)),
        (
            old.verdicts["A2"],
            "Effusion",
            Verdict.DISAGREE,
            "old blunting",
            "Dr A",
            "Grad-CAM++",
            old.verdicts["A1"],
            at(3),
        ),
        (old.verdicts["B1"], "Mass", Verdict.UNSURE, "", "Dr B", None, None, at(4)),
    ]
    assert [(n.note_id, n.note, n.supersedes_id) for n in notes] == [
        (old.notes[0], "compare with prior", None),
        (old.notes[1], "prior shows the same", old.notes[0]),
    ]
    assert explanation is not None and explanation.region_names == ("A", "B")

    # Segmentation runs: in the one table, numbered after every X-ray run, with their facts and structures.
    model_run, mask_run = volumes
    assert all(isinstance(r, SegmentationRunRecord) for r in volumes)
    assert min(model_run.run_id, mask_run.run_id) > max(old.xray_runs) and model_run.run_id < mask_run.run_id
    assert (model_run.kind, mask_run.kind) == (RunKind.SEGMENTATION, RunKind.UPLOADED_MASK)
    assert (model_run.model_id, model_run.weights_sha256, model_run.trained, model_run.device) == (
        "seg-unet",
        "5" * 64,
        False,
        "cuda",
    )
    assert (mask_run.model_id, mask_run.trained, mask_run.label_map_sha256) == ("uploaded-mask", True, "8" * 64)
    assert model_run.params == {"roi": "96x96x96", "overlap": "0.5"} and list(model_run.params) == ["roi", "overlap"]
    assert [(label.value, label.name, label.color) for label in model_run.labels] == [
        (1, "Liver", (220, 40, 40)),
        (2, "Tumour", (40, 220, 40)),
    ]
    assert (model_run.spacing, model_run.shape, model_run.timing_ms) == ((2.0, 2.0, 3.0), (6, 5, 4), 456.5)
    assert model_run.created_at == at(11) and model_run.facts.modality == "CT"
    assert [(m.name, m.values, m.voxels, m.axial_first) for m in model_run.structures] == [
        ("Liver", (1,), 120, 1),
        ("Tumour", (2,), 0, None),
    ]
    assert model_run.structure("Liver").max_axial_extent_mm == 1.0 / 3.0 + 120
    assert mask_run.items == ("Label 1",)

    # Structure verdicts: in the one verdicts table, chains intact, new ids after the X-ray verdicts.
    model_history = histories[model_run.run_id]
    assert [(v.item, v.verdict, v.note, v.reviewer, v.created_at) for v in model_history] == [
        ("Liver", Verdict.AGREE, "", "Dr A", at(13)),
        ("Liver", Verdict.DISAGREE, "misses the rim", "Dr A", at(14)),
        ("Liver", Verdict.UNSURE, "", "Dr A", at(15)),
        ("Tumour", Verdict.AGREE, "nothing there", "Dr B", at(16)),
    ]
    a1, a2, a3, b1 = model_history
    assert (a1.supersedes_id, a2.supersedes_id, a3.supersedes_id, b1.supersedes_id) == (
        None,
        a1.verdict_id,
        a2.verdict_id,
        None,
    )
    assert a1.verdict_id > old.verdicts["B1"] and all(v.cam_method is None for v in model_history)
    assert [(v.item, v.verdict) for v in histories[mask_run.run_id]] == [("Label 1", Verdict.AGREE)]
    assert blinded == [b1] and current == [a3]

    # Audit: X-ray events untouched; segmentation events point at the run itself and at the new entries.
    assert [(e.kind, e.run_id) for e in xray_events][:3] == [
        ("case_created", None),
        ("analysis_run", old.xray_runs[0]),
        ("analysis_run", old.xray_runs[1]),
    ]
    assert xray_events[4].detail == {
        "finding": "Effusion",
        "verdict": "disagree",
        "entry": old.verdicts["A2"],
        "replaces": old.verdicts["A1"],
    }
    assert [(e.kind, e.run_id) for e in volume_events] == [
        ("case_created", None),
        ("segmentation_run", model_run.run_id),
        ("segmentation_run", mask_run.run_id),
        ("structure_verdict_set", model_run.run_id),
        ("structure_verdict_changed", model_run.run_id),
        ("structure_verdict_changed", model_run.run_id),
        ("structure_verdict_set", model_run.run_id),
        ("structure_verdict_set", mask_run.run_id),
    ]
    assert all("segmentation_run" not in e.detail for e in volume_events)
    assert volume_events[1].detail == {"model_id": "seg-unet", "source": "model", "structures": 2}
    assert [(e.detail["entry"], e.detail["replaces"]) for e in volume_events[3:7]] == [
        (a1.verdict_id, None),
        (a2.verdict_id, a1.verdict_id),
        (a3.verdict_id, a2.verdict_id),
        (b1.verdict_id, None),
    ]


def test_the_app_keeps_writing_on_top_of_the_carried_data(migrated) -> None:
    """New verdicts continue the carried chains; new runs and verdicts get ids after the carried
    ones (PostgreSQL's sequences were moved past them); the worklist reads both kinds."""
    old, db = migrated
    with db.begin() as s:
        model_run = repo.runs_for_case(s, old.volume_case)[0]
        carried = repo.current_verdicts(s, model_run.run_id, "Dr A")[0]
        again = repo.record_verdict(s, model_run.run_id, "Liver", Verdict.AGREE, "Dr A", "on second look")
        xray_again = repo.record_verdict(s, old.xray_runs[0], "Effusion", Verdict.AGREE, "Dr A")
        note = repo.record_case_note(s, old.xray_runs[0], "third note", "Dr A")
        prediction = Prediction(
            (Finding("Effusion", 0.2, Band.NEGATIVE),),
            ModelIdentity("m", "9" * 64, True, "cpu"),
            "v1",
            {"Effusion": {"low": 0.3, "high": 0.5, "critical": 0.8}},
            1.0,
        )
        new_run = repo.store_analysis(s, CaseFacts("c" * 64, "png", "image"), prediction, "Grad-CAM")
    assert again.supersedes_id == carried.verdict_id and again.verdict_id > carried.verdict_id
    assert xray_again.supersedes_id == old.verdicts["A2"] and xray_again.verdict_id > again.verdict_id
    assert note is not None and note.supersedes_id == old.notes[1]
    assert new_run.run_id > model_run.run_id + 1
    with db.begin() as s:
        board = reporting.worklist(s)
    assert [(r.case_id, r.run_id, r.top_band, r.status) for r in board.cases] == [
        (old.xray_case, old.xray_runs[1], Band.CRITICAL, "new"),
        (new_run.case_id, new_run.run_id, Band.NEGATIVE, "new"),
    ]
    assert [(r.kind, r.structures, r.status) for r in board.segmentations] == [
        (RunKind.UPLOADED_MASK, 1, "reviewed by 1"),
        (RunKind.SEGMENTATION, 2, "in review"),  # Dr A judged the liver only, Dr B the tumour only
    ]


def test_append_only_triggers_and_enum_checks_hold_after_the_upgrade(migrated) -> None:
    old, db = migrated
    for statement in (
        "UPDATE analysis_runs SET trained = TRUE",
        "DELETE FROM analysis_runs",
        "UPDATE verdicts SET note = 'x'",
        "DELETE FROM verdicts",
        "DELETE FROM run_structures",
        "DELETE FROM run_findings",
        "UPDATE audit_events SET actor = 'x'",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.begin() as s:
                s.execute(text(statement))
    for statement in (
        f"INSERT INTO verdicts (run_id, item, verdict, note, reviewer, created_at) "
        f"VALUES ({old.xray_runs[0]}, 'Mass', 'maybe', '', 'Dr X', CURRENT_TIMESTAMP)",
        f"INSERT INTO run_findings (run_id, position, label, score, band) "
        f"VALUES ({old.xray_runs[0]}, 9, 'Nodule', 0.5, 'high')",
        "INSERT INTO analysis_runs (kind, case_id, input_sha256, model_id, weights_sha256, trained, device, "
        f"timing_ms, created_at) VALUES ('segmentation', {old.volume_case}, 'b', 'm', 'w', FALSE, 'cpu', 1, "
        "CURRENT_TIMESTAMP)",  # a segmentation without its label map
    ):
        with pytest.raises(IntegrityError):
            with db.begin() as s:
                s.execute(text(statement))


def _rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql)).all()]
    finally:
        engine.dispose()


def test_downgrading_to_0004_moves_the_segmentations_back_and_upgrading_again_restores_them(
    database_url: str,
) -> None:
    old = build_0004(database_url)
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    sessions = open_database(database_url)
    try:
        with sessions.begin() as s:
            before = [(r.kind, r.model_id, r.structures) for r in repo.runs_for_case(s, old.volume_case)]
            ids = [r.run_id for r in repo.runs_for_case(s, old.volume_case)]
            chains = {
                run_id: [(v.item, v.verdict, v.note, v.reviewer) for v in repo.verdict_history(s, run_id)]
                for run_id in ids
            }
    finally:
        sessions.kw["bind"].dispose()

    command.downgrade(config, "0004")
    assert _rows(database_url, "SELECT version_num FROM alembic_version") == [("0004",)]
    assert _rows(database_url, "SELECT id, source FROM segmentation_runs ORDER BY id") == [
        (ids[0], "model"),
        (ids[1], "uploaded"),
    ]
    assert [r[0] for r in _rows(database_url, "SELECT id FROM analysis_runs ORDER BY id")] == old.xray_runs
    structure_verdicts = _rows(
        database_url, "SELECT id, run_id, structure, verdict, supersedes_id FROM structure_verdicts ORDER BY id"
    )
    assert [(run_id, item, verdict) for _, run_id, item, verdict, _ in structure_verdicts] == [
        (ids[0], "Liver", "agree"),
        (ids[0], "Liver", "disagree"),
        (ids[0], "Liver", "unsure"),
        (ids[0], "Tumour", "agree"),
        (ids[1], "Label 1", "agree"),
    ]
    assert [row[4] for row in structure_verdicts[:4]] == [
        None,
        structure_verdicts[0][0],
        structure_verdicts[1][0],
        None,
    ]
    assert [r[0] for r in _rows(database_url, "SELECT id FROM verdicts ORDER BY id")] == sorted(old.verdicts.values())
    assert _rows(database_url, "SELECT finding_label FROM verdicts ORDER BY id")[0] == ("Effusion",)
    events = _rows(
        database_url,
        f"SELECT run_id, detail_json FROM audit_events WHERE case_id = {old.volume_case} "
        "AND kind = 'structure_verdict_set' ORDER BY id",
    )
    assert [(run_id, json.loads(detail)["segmentation_run"]) for run_id, detail in events] == [
        (None, ids[0]),
        (None, ids[0]),
        (None, ids[1]),
    ]

    command.upgrade(config, "head")
    sessions = open_database(database_url)
    try:
        with sessions.begin() as s:
            again = repo.runs_for_case(s, old.volume_case)
            assert [(r.kind, r.model_id, r.structures) for r in again] == before
            assert [
                [(v.item, v.verdict, v.note, v.reviewer) for v in repo.verdict_history(s, r.run_id)] for r in again
            ] == list(chains.values())
    finally:
        sessions.kw["bind"].dispose()


def test_downgrading_refuses_when_a_segmentation_has_a_case_note(migrated, database_url: str) -> None:
    old, db = migrated
    with db.begin() as s:
        model_run = repo.runs_for_case(s, old.volume_case)[0]
        repo.record_case_note(s, model_run.run_id, "liver looks fine", "Dr A")
    head = _rows(database_url, "SELECT version_num FROM alembic_version")
    with pytest.raises(RuntimeError, match="case note.* belong to segmentation runs"):
        command.downgrade(alembic_config(database_url), "0004")
    assert _rows(database_url, "SELECT version_num FROM alembic_version") == head  # nothing undone
    with db.begin() as s:
        assert repo.current_case_note(s, model_run.run_id, "Dr A").note == "liver looks fine"
