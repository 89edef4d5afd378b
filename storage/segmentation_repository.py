"""Reads and writes of 3D segmentation runs, their measured structures and reviewers' verdicts on
each structure. The rules of ``storage.repository`` hold here too: cases are shared, a run is
stored once per identity, verdicts are append-only with one supersede chain per reviewer, and every
write leaves an audit event. Each function takes an open Session (inside ``with Session.begin()``)
and returns plain frozen dataclasses, never ORM objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.errors import InvalidReview, StorageError
from core.types import CaseFacts
from inference.volume.case import required_count
from inference.volume.types import LabelInfo, Segmentation, StructureMeasurement
from storage import audit
from storage.models import Case, RunStructure, SegmentationRun, StructureVerdict, utcnow
from storage.repository import VERDICTS, _clean_note, _clean_reviewer, _get_or_create_case, _utc

SOURCES = ("model", "uploaded")
MAX_STRUCTURE_NAME_CHARS = 64  # run_structures.name and structure_verdicts.structure


@dataclass(frozen=True)
class SegmentationRunRecord:
    run_id: int
    case_id: int
    facts: CaseFacts
    model_id: str
    weights_sha256: str
    trained: bool
    source: str  # "model" or "uploaded"
    label_map_sha256: str
    params: dict[str, str]
    labels: tuple[LabelInfo, ...]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    device: str
    timing_ms: float
    created_at: datetime
    structures: tuple[StructureMeasurement, ...]

    def structure(self, name: str) -> StructureMeasurement:
        for measurement in self.structures:
            if measurement.name == name:
                return measurement
        raise KeyError(name)


@dataclass(frozen=True)
class StructureVerdictRecord:
    verdict_id: int
    run_id: int
    structure: str
    verdict: str
    note: str
    reviewer: str
    supersedes_id: int | None
    created_at: datetime


def _run_record(run: SegmentationRun) -> SegmentationRunRecord:
    case = run.case
    return SegmentationRunRecord(
        run_id=run.id,
        case_id=case.id,
        facts=CaseFacts(
            input_sha256=case.input_sha256,
            source_format=case.source_format,
            modality=case.modality,
            view_position=case.view_position,
            body_part=case.body_part,
            patient_key=case.patient_key,
        ),
        model_id=run.model_id,
        weights_sha256=run.weights_sha256,
        trained=run.trained,
        source=run.source,
        label_map_sha256=run.label_map_sha256,
        params=json.loads(run.params_json),
        labels=tuple(LabelInfo(i["value"], i["name"], tuple(i["color"])) for i in json.loads(run.labels_json)),
        spacing=tuple(json.loads(run.spacing_json)),
        shape=tuple(json.loads(run.shape_json)),
        device=run.device,
        timing_ms=run.timing_ms,
        created_at=_utc(run.created_at),
        structures=tuple(
            StructureMeasurement(
                name=s.name,
                values=tuple(json.loads(s.values_json)),
                voxels=s.voxels,
                volume_ml=s.volume_ml,
                axial_first=s.axial_first,
                axial_last=s.axial_last,
                max_axial_extent_mm=s.max_axial_extent_mm,
            )
            for s in run.structures
        ),
    )


def _verdict_record(row: StructureVerdict) -> StructureVerdictRecord:
    return StructureVerdictRecord(
        verdict_id=row.id,
        run_id=row.run_id,
        structure=row.structure,
        verdict=row.verdict,
        note=row.note,
        reviewer=row.reviewer,
        supersedes_id=row.supersedes_id,
        created_at=_utc(row.created_at),
    )


def _source_of(segmentation: Segmentation) -> str:
    source = segmentation.label_map.source.split(":", 1)[0]
    if source not in SOURCES:
        raise StorageError(
            f"A label map must come from a model or an upload; this one says {segmentation.label_map.source!r}."
        )
    return source


def _checked_measurements(segmentation: Segmentation) -> tuple[StructureMeasurement, ...]:
    """The structures to store, refused before anything is written: SQLite does not enforce
    column lengths, and a clear message beats a constraint name."""
    measurements = segmentation.measurements
    if not measurements:
        raise StorageError(
            "This segmentation has no measured structures, so there is nothing to review; measure it before storing it."
        )
    seen: set[str] = set()
    for m in measurements:
        if not m.name or len(m.name) > MAX_STRUCTURE_NAME_CHARS:
            raise StorageError(
                f"Structure names must have 1 to {MAX_STRUCTURE_NAME_CHARS} characters; got {m.name[:80]!r}."
            )
        if m.name in seen:
            raise StorageError(f"The segmentation names the structure {m.name!r} twice.")
        seen.add(m.name)
    return measurements


def store_segmentation(
    session: Session, facts: CaseFacts, segmentation: Segmentation, actor: str | None = None
) -> SegmentationRunRecord:
    """The run for this input, model, weights and label map, stored once with its structures;
    storing the same identity again returns the existing run instead of adding a duplicate."""
    source = _source_of(segmentation)
    measurements = _checked_measurements(segmentation)
    case = _get_or_create_case(session, facts, actor)
    model, label_map = segmentation.model, segmentation.label_map
    existing = session.scalar(
        select(SegmentationRun).where(
            SegmentationRun.case_id == case.id,
            SegmentationRun.model_id == model.model_id,
            SegmentationRun.weights_sha256 == model.weights_sha256,
            SegmentationRun.label_map_sha256 == label_map.sha256,
        )
    )
    if existing is not None:
        return _run_record(existing)
    run = SegmentationRun(
        case=case,
        input_sha256=facts.input_sha256,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        source=source,
        label_map_sha256=label_map.sha256,
        # In the order the pipeline gave them: that is the order the reviewer saw.
        params_json=json.dumps(segmentation.params_dict()),
        labels_json=json.dumps(
            [{"value": int(i.value), "name": i.name, "color": [int(c) for c in i.color]} for i in label_map.labels]
        ),
        spacing_json=json.dumps([float(v) for v in segmentation.spacing_mm]),
        shape_json=json.dumps([int(n) for n in label_map.data.shape]),
        device=model.device,
        timing_ms=float(segmentation.timing_ms),
        # int()/float(): measurements may hold numpy scalars, which psycopg cannot adapt.
        structures=[
            RunStructure(
                position=i,
                name=m.name,
                values_json=json.dumps([int(v) for v in m.values]),
                voxels=int(m.voxels),
                volume_ml=float(m.volume_ml),
                axial_first=None if m.axial_first is None else int(m.axial_first),
                axial_last=None if m.axial_last is None else int(m.axial_last),
                max_axial_extent_mm=float(m.max_axial_extent_mm),
            )
            for i, m in enumerate(measurements)
        ],
    )
    session.add(run)
    session.flush()
    # audit_events.run_id points at analysis_runs, so the segmentation run goes in the detail.
    audit.record_event(
        session,
        "segmentation_run",
        actor,
        case_id=case.id,
        segmentation_run=run.id,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        source=source,
        label_map_sha256=label_map.sha256,
        structures=len(measurements),
    )
    return _run_record(run)


def get_segmentation_run(session: Session, run_id: int) -> SegmentationRunRecord | None:
    run = session.get(SegmentationRun, run_id)
    return _run_record(run) if run is not None else None


def segmentation_runs_for_case(session: Session, case_id: int) -> list[SegmentationRunRecord]:
    """Every segmentation run of a case, oldest first."""
    rows = session.scalars(
        select(SegmentationRun)
        .where(SegmentationRun.case_id == case_id)
        .options(selectinload(SegmentationRun.case), selectinload(SegmentationRun.structures))
        .order_by(SegmentationRun.id)
    )
    return [_run_record(run) for run in rows]


def _case_of_structure(session: Session, run_id: int, structure: str) -> int:
    """The case id of a run that has this structure, in one query on the write path (as
    ``storage.repository._case_of_finding``)."""
    case_id = session.scalar(
        select(SegmentationRun.case_id)
        .join(RunStructure, RunStructure.run_id == SegmentationRun.id)
        .where(SegmentationRun.id == run_id, RunStructure.name == structure)
    )
    if case_id is not None:
        return case_id
    if session.scalar(select(SegmentationRun.id).where(SegmentationRun.id == run_id)) is None:
        raise InvalidReview(f"Segmentation run {run_id} does not exist; reload the case.")
    raise InvalidReview(f"{structure!r} is not a structure of segmentation run {run_id}.")


def _latest_verdict(session: Session, run_id: int, structure: str, reviewer: str) -> StructureVerdict | None:
    return session.scalar(
        select(StructureVerdict)
        .where(
            StructureVerdict.run_id == run_id,
            StructureVerdict.structure == structure,
            StructureVerdict.reviewer == reviewer,
        )
        .order_by(StructureVerdict.id.desc())
        .limit(1)
    )


def record_structure_verdict(
    session: Session, run_id: int, structure: str, verdict: str, reviewer: str, note: str | None = None
) -> StructureVerdictRecord:
    """Append a verdict on one structure; it supersedes this reviewer's previous one for it.
    Recording the same verdict and note again stores nothing new."""
    if verdict not in VERDICTS:
        raise InvalidReview(f"A verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}.")
    reviewer = _clean_reviewer(reviewer)
    note = _clean_note(note)
    case_id = _case_of_structure(session, run_id, structure)
    previous = _latest_verdict(session, run_id, structure, reviewer)
    if previous is not None and previous.verdict == verdict and previous.note == note:
        return _verdict_record(previous)
    values = dict(
        run_id=run_id,
        structure=structure,
        verdict=verdict,
        note=note,
        reviewer=reviewer,
        supersedes_id=previous.id if previous is not None else None,
        created_at=utcnow(),
    )
    # Core INSERT ... RETURNING, as record_verdict: less work while SQLite's write lock is held.
    try:
        verdict_id = session.execute(
            insert(StructureVerdict.__table__).values(**values).returning(StructureVerdict.id)
        ).scalar_one()
    except IntegrityError as exc:
        # Another window superseded the same verdict first (supersedes_id is unique).
        raise InvalidReview("This verdict changed in another window at the same moment; reload and try again.") from exc
    audit.record_event(
        session,
        "structure_verdict_changed" if previous is not None else "structure_verdict_set",
        reviewer,
        case_id=case_id,
        segmentation_run=run_id,
        structure=structure,
        verdict=verdict,
        entry=verdict_id,
        replaces=values["supersedes_id"],
    )
    return StructureVerdictRecord(verdict_id=verdict_id, **values)


def current_structure_verdicts(
    session: Session, run_id: int, reviewer: str | None = None
) -> list[StructureVerdictRecord]:
    """Each reviewer's latest verdict per structure (all reviewers unless one is named)."""
    latest = (
        select(func.max(StructureVerdict.id))
        .where(StructureVerdict.run_id == run_id)
        .group_by(StructureVerdict.reviewer, StructureVerdict.structure)
    )
    query = select(StructureVerdict).where(StructureVerdict.id.in_(latest))
    if reviewer is not None:
        query = query.where(StructureVerdict.reviewer == " ".join(reviewer.split()))
    return [_verdict_record(v) for v in session.scalars(query.order_by(StructureVerdict.id))]


def structure_verdict_history(
    session: Session, run_id: int, reviewer: str | None = None
) -> list[StructureVerdictRecord]:
    """Every structure verdict entry of a run, oldest first: everyone's, or only ``reviewer``'s."""
    query = select(StructureVerdict).where(StructureVerdict.run_id == run_id)
    if reviewer is not None:
        query = query.where(StructureVerdict.reviewer == reviewer)
    return [_verdict_record(v) for v in session.scalars(query.order_by(StructureVerdict.id))]


@dataclass(frozen=True)
class SegmentationWorklistRow:
    run_id: int
    case_id: int
    modality: str
    source: str
    model_id: str
    trained: bool
    created_at: datetime
    structures: int
    readers_done: int  # reviewers with a verdict on every structure under review (volume_case.required_count)
    readers_started: int

    @property
    def status(self) -> str:
        if self.readers_done:
            return f"reviewed by {self.readers_done}"
        return "in review" if self.readers_started else "new"


def segmentation_worklist(session: Session, limit: int = 500) -> list[SegmentationWorklistRow]:
    """Every segmentation run, newest first, with how far its readers have got."""
    runs = session.execute(
        select(
            SegmentationRun, func.count(RunStructure.id), func.count(RunStructure.id).filter(RunStructure.voxels > 0)
        )
        .join(RunStructure, RunStructure.run_id == SegmentationRun.id)
        .group_by(SegmentationRun.id)
        .order_by(SegmentationRun.id.desc())
        .limit(limit)
        .options(selectinload(SegmentationRun.case))
    ).all()
    coverage = session.execute(
        select(
            StructureVerdict.run_id, StructureVerdict.reviewer, func.count(func.distinct(StructureVerdict.structure))
        )
        .where(StructureVerdict.run_id.in_([row[0].id for row in runs]))
        .group_by(StructureVerdict.run_id, StructureVerdict.reviewer)
    ).all()
    rows = []
    for run, structures, with_voxels in runs:
        per_reader = [count for run_id, _reader, count in coverage if run_id == run.id]
        required = required_count(structures, with_voxels)
        rows.append(
            SegmentationWorklistRow(
                run_id=run.id,
                case_id=run.case_id,
                modality=run.case.modality,
                source=run.source,
                model_id=run.model_id,
                trained=run.trained,
                created_at=_utc(run.created_at),
                structures=structures,
                readers_done=sum(1 for c in per_reader if c >= required),
                readers_started=len(per_reader),
            )
        )
    return rows


@dataclass(frozen=True)
class StructureVerdictFact:
    """A reviewer's current verdict on one structure, with what the masks showed them."""

    verdict_id: int
    run_id: int
    case_id: int
    modality: str
    structure: str
    voxels: int
    volume_ml: float
    model_id: str
    weights_sha256: str
    trained: bool
    source: str
    reviewer: str
    verdict: str
    note: str
    created_at: datetime


def current_structure_verdict_facts(session: Session, reviewer: str | None = None) -> list[StructureVerdictFact]:
    """Each reviewer's latest verdict on every structure of every run, oldest first (only
    ``reviewer``'s when one is named)."""
    latest = select(func.max(StructureVerdict.id)).group_by(
        StructureVerdict.run_id, StructureVerdict.reviewer, StructureVerdict.structure
    )
    query = (
        select(StructureVerdict, SegmentationRun, RunStructure, Case.modality)
        .join(SegmentationRun, SegmentationRun.id == StructureVerdict.run_id)
        .join(
            RunStructure,
            (RunStructure.run_id == StructureVerdict.run_id) & (RunStructure.name == StructureVerdict.structure),
        )
        .join(Case, Case.id == SegmentationRun.case_id)
        .where(StructureVerdict.id.in_(latest))
    )
    if reviewer is not None:
        query = query.where(StructureVerdict.reviewer == reviewer)
    rows = session.execute(query.order_by(StructureVerdict.id)).all()
    return [
        StructureVerdictFact(
            verdict_id=v.id,
            run_id=run.id,
            case_id=run.case_id,
            modality=modality,
            structure=v.structure,
            voxels=structure.voxels,
            volume_ml=structure.volume_ml,
            model_id=run.model_id,
            weights_sha256=run.weights_sha256,
            trained=run.trained,
            source=run.source,
            reviewer=v.reviewer,
            verdict=v.verdict,
            note=v.note,
            created_at=_utc(v.created_at),
        )
        for v, run, structure, modality in rows
    ]
