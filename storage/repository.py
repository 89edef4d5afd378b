"""Reads and writes of cases, runs of every kind (``core.vocabulary.RunKind``), their results,
and the reviewers' verdicts and case notes: one path for all of them.

* A case is stored once per input; a run once per identity (input, model, weights, and the bands
  of a classification or the label map of a segmentation); re-storing returns the existing run.
* A verdict is on one *item* of a run (a finding of a classification, a structure of a
  segmentation or an uploaded mask), one ``core.vocabulary.Verdict``. Verdicts and case notes are
  append-only: a change is a new row superseding the reviewer's previous one, so each reviewer has
  one chain per item.
* Every write leaves an audit event (``storage.audit``).
* ``reviewer=`` on a read returns only that reviewer's entries (blinded, independent reads).

Each function takes an open Session (inside ``storage.db.session_scope``) and returns plain frozen
dataclasses, never ORM objects."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, overload

import numpy as np
from sqlalchemy import Table, exists, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import func

from core.errors import InvalidReview, StorageError
from core.results import REGION_SHAP_METHOD, LabelInfo, RegionExplanation, Segmentation, StructureMeasurement
from core.types import CaseFacts, Finding, ImageFeatures, Prediction, rank_findings
from core.vocabulary import Band, RunKind, Verdict
from storage import audit
from storage.features import store_features
from storage.models import (
    Case,
    CaseNote,
    RegionExplanationRow,
    ReviewerIdentity,
    Run,
    RunFinding,
    RunStructure,
    VerdictEntry,
    utcnow,
)

MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 4000
MAX_ITEM_CHARS = 64  # run_findings.label, run_structures.name and verdicts.item
MAX_STRUCTURE_NAME_CHARS = MAX_ITEM_CHARS


@dataclass(frozen=True)
class _KindWords:
    """What differs by kind of run in what is written to the audit trail and said to the reviewer."""

    run_event: str
    verdict_set: str
    verdict_changed: str
    item: str  # the item's key in an audit event's detail, and its name in messages
    run: str  # "run" / "segmentation run", in messages


_CLASSIFICATION_WORDS = _KindWords("analysis_run", "verdict_set", "verdict_changed", "finding", "run")
_SEGMENTATION_WORDS = _KindWords(
    "segmentation_run", "structure_verdict_set", "structure_verdict_changed", "structure", "segmentation run"
)
KIND_WORDS = {
    RunKind.CLASSIFICATION: _CLASSIFICATION_WORDS,
    RunKind.SEGMENTATION: _SEGMENTATION_WORDS,
    RunKind.UPLOADED_MASK: _SEGMENTATION_WORDS,
}
# What a label map's source ("model:<id>" or "uploaded:<name>") says about the run that stores it.
_KIND_OF_SOURCE = {"model": RunKind.SEGMENTATION, "uploaded": RunKind.UPLOADED_MASK}


@dataclass(frozen=True)
class RunRecord:
    """What every stored run has, whatever its kind."""

    run_id: int
    case_id: int
    kind: RunKind
    facts: CaseFacts
    model_id: str
    weights_sha256: str
    trained: bool
    device: str
    timing_ms: float
    created_at: datetime

    @property
    def items(self) -> tuple[str, ...]:
        """The names a verdict can be given on, in the run's own order."""
        return ()


@dataclass(frozen=True)
class ClassificationRunRecord(RunRecord):
    """A chest X-ray classification: scores and bands per finding, with the thresholds shown."""

    bands_version: str
    thresholds: dict[str, dict[str, float]]
    cam_method: str
    findings: tuple[Finding, ...]
    params: dict = field(default_factory=dict)  # what else the reader saw: {"uncertainty": {...}}

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(f.label for f in self.findings)

    def ranked(self) -> tuple[Finding, ...]:
        return rank_findings(self.findings)


@dataclass(frozen=True)
class SegmentationRunRecord(RunRecord):
    """A segmentation by a model, or a mask uploaded from another tool, with its measured structures."""

    label_map_sha256: str
    params: dict[str, str]
    labels: tuple[LabelInfo, ...]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    structures: tuple[StructureMeasurement, ...]

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.structures)

    def structure(self, name: str) -> StructureMeasurement:
        for measurement in self.structures:
            if measurement.name == name:
                return measurement
        raise KeyError(name)


AnyRun = TypeVar("AnyRun", bound=RunRecord)


@dataclass(frozen=True)
class VerdictRecord:
    verdict_id: int
    run_id: int
    item: str  # the finding's label or the structure's name
    verdict: Verdict
    note: str
    reviewer: str
    cam_method: str | None  # the heatmap on screen when a finding was judged
    supersedes_id: int | None
    created_at: datetime
    reader_label: str | None = None  # the reader's own class, on a disagreement with exclusive classes


@dataclass(frozen=True)
class NoteRecord:
    note_id: int
    run_id: int
    note: str
    reviewer: str
    supersedes_id: int | None
    created_at: datetime


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _facts(case: Case) -> CaseFacts:
    return CaseFacts(
        input_sha256=case.input_sha256,
        source_format=case.source_format,
        modality=case.modality,
        view_position=case.view_position,
        body_part=case.body_part,
        patient_key=case.patient_key,
    )


def _json(text: str | None) -> Any:
    if text is None:
        raise StorageError("A stored run lacks a column its kind needs; the database was changed outside the app.")
    return json.loads(text)


def _run_record(run: Run) -> RunRecord:
    kind = RunKind(run.kind)
    common: dict[str, Any] = dict(
        run_id=run.id,
        case_id=run.case_id,
        kind=kind,
        facts=_facts(run.case),
        model_id=run.model_id,
        weights_sha256=run.weights_sha256,
        trained=run.trained,
        device=run.device,
        timing_ms=run.timing_ms,
        created_at=_utc(run.created_at),
    )
    if kind is RunKind.CLASSIFICATION:
        return ClassificationRunRecord(
            **common,
            bands_version=run.bands_version or "",
            thresholds=_json(run.thresholds_json),
            cam_method=run.cam_method or "",
            findings=tuple(Finding(f.label, f.score, Band(f.band)) for f in run.findings),
            params=_json(run.params_json) if run.params_json else {},
        )
    labels = _json(run.labels_json)
    return SegmentationRunRecord(
        **common,
        label_map_sha256=run.label_map_sha256 or "",
        params=_json(run.params_json),
        labels=tuple(LabelInfo(i["value"], i["name"], tuple(i["color"])) for i in labels),
        spacing=tuple(_json(run.spacing_json)),
        shape=tuple(_json(run.shape_json)),
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


def _verdict_record(row: VerdictEntry) -> VerdictRecord:
    return VerdictRecord(
        verdict_id=row.id,
        run_id=row.run_id,
        item=row.item,
        verdict=Verdict(row.verdict),
        note=row.note,
        reviewer=row.reviewer,
        cam_method=row.cam_method,
        supersedes_id=row.supersedes_id,
        created_at=_utc(row.created_at),
        reader_label=row.reader_label,
    )


def _note_record(row: CaseNote) -> NoteRecord:
    return NoteRecord(row.id, row.run_id, row.note, row.reviewer, row.supersedes_id, _utc(row.created_at))


# --- Cases and runs ----------------------------------------------------------------------------


def _get_or_create_case(session: Session, facts: CaseFacts, actor: str | None) -> Case:
    case = session.scalar(select(Case).where(Case.input_sha256 == facts.input_sha256))
    if case is not None:
        return case
    case = Case(
        input_sha256=facts.input_sha256,
        source_format=facts.source_format,
        modality=facts.modality,
        view_position=facts.view_position,
        body_part=facts.body_part,
        patient_key=facts.patient_key,
    )
    session.add(case)
    session.flush()
    audit.record_event(
        session, "case_created", actor, case_id=case.id, modality=facts.modality, source_format=facts.source_format
    )
    return case


def _store_run(session: Session, facts: CaseFacts, actor: str | None, run: Run, **detail: object) -> Run:
    """``run`` for this input, unless a run of the same kind and identity is stored already (then
    that one); a new run leaves an audit event with ``detail``."""
    case = _get_or_create_case(session, facts, actor)
    identity = (
        Run.bands_version == run.bands_version
        if run.kind == RunKind.CLASSIFICATION.value
        else Run.label_map_sha256 == run.label_map_sha256
    )
    existing = session.scalar(
        select(Run).where(
            Run.case_id == case.id,
            Run.kind == run.kind,
            Run.model_id == run.model_id,
            Run.weights_sha256 == run.weights_sha256,
            identity,
        )
    )
    if existing is not None:
        return existing
    run.case, run.input_sha256 = case, facts.input_sha256
    session.add(run)
    session.flush()
    words = KIND_WORDS[RunKind(run.kind)]
    audit.record_event(session, words.run_event, actor, case_id=case.id, run_id=run.id, **detail)
    return run


def store_analysis(
    session: Session,
    facts: CaseFacts,
    prediction: Prediction,
    cam_method: str,
    actor: str | None = None,
    params: Mapping[str, object] | None = None,
    features: ImageFeatures | None = None,
) -> ClassificationRunRecord:
    """The classification run for this input and model identity, stored once; re-analysing the same
    image with the same weights and bands returns the existing run instead of adding a duplicate.
    ``params``: what else the reader saw with the scores (test-time augmentation's spread...).
    ``features``: the image's embedding and patch features, kept with the run (similar cases, the
    anomaly map)."""
    model = prediction.model
    run = Run(
        params_json=json.dumps(params, sort_keys=True) if params else None,
        kind=RunKind.CLASSIFICATION.value,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        bands_version=prediction.bands_version,
        thresholds_json=json.dumps(prediction.thresholds, sort_keys=True),
        cam_method=cam_method,
        device=model.device,
        timing_ms=prediction.timing_ms,
        findings=[
            RunFinding(position=i, label=f.label, score=f.score, band=Band(f.band).value)
            for i, f in enumerate(prediction.findings)
        ],
    )
    stored = _store_run(
        session,
        facts,
        actor,
        run,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        bands_version=prediction.bands_version,
    )
    if features is not None:
        store_features(session, stored.id, model.model_id, model.weights_sha256, features)
    record = _run_record(stored)
    assert isinstance(record, ClassificationRunRecord)
    return record


def record_image_confirmation(session: Session, run_id: int, confirmed_as: str, actor: str | None) -> None:
    """A reader's word on what an image without a header is (a PNG or JPEG), kept with the run it
    let the model score: who said it, when, and what they said."""
    run = session.get(Run, run_id)
    if run is None:
        raise StorageError(f"Run {run_id} does not exist; the confirmation was not stored.")
    audit.record_event(session, "image_confirmed", actor, case_id=run.case_id, run_id=run_id, confirmed_as=confirmed_as)


def record_uncertainty(session: Session, run_id: int, uncertainty: Mapping[str, object], actor: str | None) -> None:
    """An uncertainty a reader asked for after the run was stored without one (test-time
    augmentation switched on for an image already scored): the run stays as it was stored, and
    what the reader then saw beside its scores is kept with it, append-only."""
    run = session.get(Run, run_id)
    if run is None:
        raise StorageError(f"Run {run_id} does not exist; the uncertainty was not stored.")
    audit.record_event(session, "uncertainty_shown", actor, case_id=run.case_id, run_id=run_id, uncertainty=uncertainty)


def _kind_of(segmentation: Segmentation) -> RunKind:
    source = segmentation.label_map.source.split(":", 1)[0]
    if source not in _KIND_OF_SOURCE:
        raise StorageError(
            f"A label map must come from a model or an upload; this one says {segmentation.label_map.source!r}."
        )
    return _KIND_OF_SOURCE[source]


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
        if not m.name or len(m.name) > MAX_ITEM_CHARS:
            raise StorageError(f"Structure names must have 1 to {MAX_ITEM_CHARS} characters; got {m.name[:80]!r}.")
        if m.name in seen:
            raise StorageError(f"The segmentation names the structure {m.name!r} twice.")
        seen.add(m.name)
    return measurements


def store_segmentation(
    session: Session, facts: CaseFacts, segmentation: Segmentation, actor: str | None = None
) -> SegmentationRunRecord:
    """The segmentation (or uploaded-mask) run for this input, model, weights and label map,
    stored once with its structures; storing the same identity again returns the existing run."""
    kind = _kind_of(segmentation)
    measurements = _checked_measurements(segmentation)
    model, label_map = segmentation.model, segmentation.label_map
    run = Run(
        kind=kind.value,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
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
    stored = _store_run(
        session,
        facts,
        actor,
        run,
        run_kind=kind.value,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        label_map_sha256=label_map.sha256,
        structures=len(measurements),
    )
    record = _run_record(stored)
    assert isinstance(record, SegmentationRunRecord)
    return record


@overload
def get_run(session: Session, run_id: int) -> RunRecord | None: ...
@overload
def get_run(session: Session, run_id: int, of: type[AnyRun]) -> AnyRun | None: ...
def get_run(session: Session, run_id: int, of: type[RunRecord] = RunRecord) -> RunRecord | None:
    """The stored run, as the record of its kind; None when there is none (or, with ``of``, when
    the run is of another kind)."""
    run = session.get(Run, run_id)
    record = _run_record(run) if run is not None else None
    return record if isinstance(record, of) else None


def runs_for_case(session: Session, case_id: int) -> list[RunRecord]:
    """Every run of a case, of every kind, oldest first (four queries, however many runs)."""
    rows = session.scalars(
        select(Run)
        .where(Run.case_id == case_id)
        .options(selectinload(Run.case), selectinload(Run.findings), selectinload(Run.structures))
        .order_by(Run.id)
    )
    return [_run_record(run) for run in rows]


def _prior_runs(session: Session, run_id: int, kinds: tuple[RunKind, ...]) -> list[Run]:
    """The latest run of one of ``kinds`` of each other case of the same patient (the same keyed
    hash), made before this run, newest first. None for a case without a patient key: a PNG,
    JPEG or NIfTI says nothing about whose it is."""
    run = session.get(Run, run_id)
    if run is None or run.case.patient_key is None:
        return []
    latest = (
        select(func.max(Run.id))
        .join(Case, Case.id == Run.case_id)
        .where(
            Case.patient_key == run.case.patient_key,
            Run.case_id != run.case_id,
            Run.kind.in_([k.value for k in kinds]),
            Run.id < run.id,
        )
        .group_by(Run.case_id)
    )
    return list(
        session.scalars(
            select(Run)
            .where(Run.id.in_(latest))
            .options(selectinload(Run.case), selectinload(Run.findings), selectinload(Run.structures))
            .order_by(Run.id.desc())
        )
    )


def prior_classifications(session: Session, run_id: int) -> list[ClassificationRunRecord]:
    """The latest chest X-ray run of each earlier case of the same patient, newest first."""
    records = (_run_record(r) for r in _prior_runs(session, run_id, (RunKind.CLASSIFICATION,)))
    return [record for record in records if isinstance(record, ClassificationRunRecord)]


def prior_segmentations(session: Session, run_id: int) -> list[SegmentationRunRecord]:
    """The latest segmentation (by a model or an uploaded mask) of each earlier case of the same
    patient, newest first."""
    kinds = (RunKind.SEGMENTATION, RunKind.UPLOADED_MASK)
    records = (_run_record(r) for r in _prior_runs(session, run_id, kinds))
    return [record for record in records if isinstance(record, SegmentationRunRecord)]


# --- Verdicts and case notes -------------------------------------------------------------------


def _clean_reviewer(reviewer: str) -> str:
    cleaned = " ".join(str(reviewer or "").split())
    if not cleaned:
        raise InvalidReview("Enter your name in the sidebar before recording a verdict.")
    if len(cleaned) > MAX_REVIEWER_CHARS:
        raise InvalidReview(f"Reviewer names are limited to {MAX_REVIEWER_CHARS} characters.")
    return cleaned


def _clean_note(note: str | None) -> str:
    text = (note or "").strip()
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidReview(
            f"Notes are limited to {MAX_NOTE_CHARS:,} characters; this one has {len(text):,}. "
            "Nothing was saved: shorten it and save again."
        )
    return text


def _as_verdict(verdict: Verdict | str) -> Verdict:
    try:
        return Verdict(verdict)
    except ValueError:
        choices = ", ".join(v.value for v in Verdict)
        raise InvalidReview(f"A verdict must be one of {choices}; got {verdict!r}.") from None


def _case_of_item(session: Session, run_id: int, item: str) -> tuple[int, RunKind]:
    """The case and kind of a run that has this item (finding or structure), in one query on the
    write path: loading the run and all its results only to check a name held SQLite's write lock
    noticeably longer."""
    has_item = or_(
        exists().where(RunFinding.run_id == Run.id, RunFinding.label == item),
        exists().where(RunStructure.run_id == Run.id, RunStructure.name == item),
    )
    row = session.execute(select(Run.case_id, Run.kind, has_item).where(Run.id == run_id)).one_or_none()
    if row is None:
        raise InvalidReview(f"Run {run_id} does not exist; reload the case.")
    case_id, kind, found = row
    kind = RunKind(kind)
    if not found:
        words = KIND_WORDS[kind]
        raise InvalidReview(f"{item!r} is not a {words.item} of {words.run} {run_id}.")
    return case_id, kind


def _latest_verdict(session: Session, run_id: int, item: str, reviewer: str) -> VerdictEntry | None:
    return session.scalar(
        select(VerdictEntry)
        .where(VerdictEntry.run_id == run_id, VerdictEntry.item == item, VerdictEntry.reviewer == reviewer)
        .order_by(VerdictEntry.id.desc())
        .limit(1)
    )


def record_verdict(
    session: Session,
    run_id: int,
    item: str,
    verdict: Verdict,
    reviewer: str,
    note: str | None = None,
    cam_method: str | None = None,
    reader_label: str | None = None,
) -> VerdictRecord:
    """Append a verdict on one item (a finding or a structure) of a run of any kind; it
    supersedes this reviewer's previous one for the item. Recording the same verdict, note and
    class again stores nothing new. ``cam_method``: the heatmap on screen, for a finding.
    ``reader_label``: with Disagree on a class of a classifier of exclusive classes, the class the
    reader says it is (another of the run's labels)."""
    verdict = _as_verdict(verdict)
    reviewer = _clean_reviewer(reviewer)
    note = _clean_note(note)
    case_id, kind = _case_of_item(session, run_id, item)
    if cam_method is not None and kind is not RunKind.CLASSIFICATION:
        raise InvalidReview(f"A heatmap method goes with a finding; run {run_id} is a {kind.value} run.")
    if reader_label is not None:
        labels = set(session.scalars(select(RunFinding.label).where(RunFinding.run_id == run_id)))
        if verdict is not Verdict.DISAGREE or reader_label == item or reader_label not in labels:
            raise InvalidReview(
                f"'It is {reader_label}' goes with a Disagree on another class of the same run; "
                f"not with {verdict.value} on {item}."
            )
    previous = _latest_verdict(session, run_id, item, reviewer)
    if (
        previous is not None
        and previous.verdict == verdict.value
        and previous.note == note
        and previous.reader_label == reader_label
    ):
        return _verdict_record(previous)
    supersedes_id = previous.id if previous is not None else None
    created_at = utcnow()
    # A Core INSERT ... RETURNING: the ORM unit of work added ~0.2 ms of CPU (about 15% of this
    # function) while SQLite's write lock is held, and the record needs nothing else from it.
    try:
        verdict_id = session.execute(
            insert(cast(Table, VerdictEntry.__table__))
            .values(
                run_id=run_id,
                item=item,
                verdict=verdict.value,
                note=note,
                reviewer=reviewer,
                cam_method=cam_method,
                reader_label=reader_label,
                supersedes_id=supersedes_id,
                created_at=created_at,
            )
            .returning(VerdictEntry.id)
        ).scalar_one()
    except IntegrityError as exc:
        # Another window superseded the same verdict first (supersedes_id is unique).
        raise InvalidReview("This verdict changed in another window at the same moment; reload and try again.") from exc
    words = KIND_WORDS[kind]
    audit.record_event(
        session,
        words.verdict_changed if previous is not None else words.verdict_set,
        reviewer,
        case_id=case_id,
        run_id=run_id,
        **{words.item: item},
        verdict=verdict.value,
        **({"reader_label": reader_label} if reader_label is not None else {}),
        entry=verdict_id,
        replaces=supersedes_id,
    )
    return VerdictRecord(
        verdict_id, run_id, item, verdict, note, reviewer, cam_method, supersedes_id, created_at, reader_label
    )


def current_verdicts(session: Session, run_id: int, reviewer: str | None = None) -> list[VerdictRecord]:
    """Each reviewer's latest verdict per item (all reviewers unless one is named)."""
    latest = (
        select(func.max(VerdictEntry.id))
        .where(VerdictEntry.run_id == run_id)
        .group_by(VerdictEntry.reviewer, VerdictEntry.item)
    )
    query = select(VerdictEntry).where(VerdictEntry.id.in_(latest))
    if reviewer is not None:
        query = query.where(VerdictEntry.reviewer == " ".join(reviewer.split()))
    return [_verdict_record(v) for v in session.scalars(query.order_by(VerdictEntry.id))]


def verdict_history(session: Session, run_id: int, reviewer: str | None = None) -> list[VerdictRecord]:
    """Every verdict entry of a run, oldest first: everyone's, or only ``reviewer``'s (blinded reads)."""
    query = select(VerdictEntry).where(VerdictEntry.run_id == run_id)
    if reviewer is not None:
        query = query.where(VerdictEntry.reviewer == reviewer)
    return [_verdict_record(v) for v in session.scalars(query.order_by(VerdictEntry.id))]


def record_case_note(session: Session, run_id: int, note: str, reviewer: str) -> NoteRecord | None:
    """Append a case note superseding this reviewer's previous one; None when nothing changed."""
    reviewer = _clean_reviewer(reviewer)
    note = _clean_note(note)
    case_id = session.scalar(select(Run.case_id).where(Run.id == run_id))
    if case_id is None:
        raise InvalidReview(f"Run {run_id} does not exist; reload the case.")
    previous = session.scalar(
        select(CaseNote)
        .where(CaseNote.run_id == run_id, CaseNote.reviewer == reviewer)
        .order_by(CaseNote.id.desc())
        .limit(1)
    )
    if (previous is None and not note) or (previous is not None and previous.note == note):
        return None
    row = CaseNote(run_id=run_id, note=note, reviewer=reviewer, supersedes_id=previous.id if previous else None)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise InvalidReview("This note changed in another window at the same moment; reload and try again.") from exc
    audit.record_event(session, "case_note", reviewer, case_id=case_id, run_id=run_id, entry=row.id)
    return _note_record(row)


def case_note_history(session: Session, run_id: int, reviewer: str | None = None) -> list[NoteRecord]:
    """Every case note entry of a run, oldest first: everyone's, or only ``reviewer``'s."""
    query = select(CaseNote).where(CaseNote.run_id == run_id)
    if reviewer is not None:
        query = query.where(CaseNote.reviewer == reviewer)
    return [_note_record(n) for n in session.scalars(query.order_by(CaseNote.id))]


def current_case_note(session: Session, run_id: int, reviewer: str) -> NoteRecord | None:
    reviewer = " ".join(reviewer.split())
    for record in reversed(case_note_history(session, run_id)):
        if record.reviewer == reviewer:
            return record
    return None


# --- Reviewers ---------------------------------------------------------------------------------


def register_reviewer(
    session: Session, identity: str, display_name: str, verified_email: str | None, issuer: str, subject: str
) -> None:
    """Remember how to show a signed-in identity key (its verified e-mail or name). The key in the
    verdict rows never changes; only the name shown for it does."""
    row = session.get(ReviewerIdentity, identity)
    display_name = display_name[:200]
    if row is None:
        session.add(
            ReviewerIdentity(
                identity=identity,
                display_name=display_name,
                verified_email=verified_email,
                issuer=issuer[:1000],
                subject=subject[:1000],
            )
        )
    elif (row.display_name, row.verified_email) != (display_name, verified_email):
        row.display_name, row.verified_email, row.updated_at = display_name, verified_email, utcnow()


def reviewer_names(session: Session) -> dict[str, str]:
    """identity key -> the name to show for it (open-mode names are shown as typed). A name that
    more than one identity goes by (two unverified users who chose the same one) is followed by
    each one's key, so reports and filters never show two people as one."""
    rows = session.execute(select(ReviewerIdentity.identity, ReviewerIdentity.display_name)).all()
    holders: dict[str, int] = defaultdict(int)
    for _, name in rows:
        holders[name] += 1
    return {identity: name if holders[name] == 1 else f"{name} [{identity}]" for identity, name in rows}


# --- Region explanations (classification runs) -------------------------------------------------


def store_region_explanation(session: Session, run_id: int, result: RegionExplanation) -> None:
    """Keep a run's region SHAP result; storing the same kind of explanation twice keeps the first."""
    run = session.execute(select(Run.case_id, Run.kind).where(Run.id == run_id)).one_or_none()
    if run is None:
        raise InvalidReview(f"Run {run_id} does not exist; reload the case.")
    if run.kind != RunKind.CLASSIFICATION.value:
        raise InvalidReview(f"Region explanations are of X-ray findings; run {run_id} is a {run.kind} run.")
    exists_already = session.scalar(
        select(RegionExplanationRow.id).where(
            RegionExplanationRow.run_id == run_id,
            RegionExplanationRow.method == REGION_SHAP_METHOD,
            RegionExplanationRow.regions_source == result.regions_source,
        )
    )
    if exists_already is not None:
        return
    session.add(
        RegionExplanationRow(
            run_id=run_id,
            method=REGION_SHAP_METHOD,
            regions_source=result.regions_source,
            masking=result.masking,
            region_names_json=json.dumps(list(result.region_names)),
            values_json=json.dumps({label: result.values[i].tolist() for i, label in enumerate(result.labels)}),
            base_values_json=json.dumps(dict(zip(result.labels, result.base_values.tolist()))),
            scores_json=json.dumps(dict(zip(result.labels, result.scores.tolist()))),
            evaluations=result.evaluations,
            max_err=result.max_err,
            timing_ms=result.timing_ms,
        )
    )
    session.flush()
    audit.record_event(
        session,
        "explanation_stored",
        None,
        case_id=run.case_id,
        run_id=run_id,
        method=REGION_SHAP_METHOD,
        evaluations=result.evaluations,
    )


def get_region_explanation(session: Session, run_id: int) -> RegionExplanation | None:
    row = session.scalar(
        select(RegionExplanationRow)
        .where(RegionExplanationRow.run_id == run_id, RegionExplanationRow.method == REGION_SHAP_METHOD)
        .order_by(RegionExplanationRow.id)
        .limit(1)
    )
    if row is None:
        return None
    values, base, scores = json.loads(row.values_json), json.loads(row.base_values_json), json.loads(row.scores_json)
    labels = tuple(values)
    return RegionExplanation(
        labels=labels,
        region_names=tuple(json.loads(row.region_names_json)),
        values=np.array([values[label] for label in labels], dtype=np.float64),
        base_values=np.array([base[label] for label in labels], dtype=np.float64),
        scores=np.array([scores[label] for label in labels], dtype=np.float64),
        evaluations=row.evaluations,
        regions_source=row.regions_source,
        masking=row.masking,
        timing_ms=row.timing_ms,
        max_err=row.max_err,
    )
