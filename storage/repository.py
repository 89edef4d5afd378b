"""Reads and writes of cases, runs and verdicts. Each function takes an open Session (inside
``with Session.begin()``) and returns plain frozen dataclasses, never ORM objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InvalidReview
from core.types import CaseFacts, Finding, Prediction, rank_findings
from core.vocabulary import Band
from storage import audit
from storage.models import (
    AnalysisRun,
    Case,
    CaseNote,
    RegionExplanationRow,
    ReviewerIdentity,
    RunFinding,
    Verdict,
    utcnow,
)
from xai.region_shap import METHOD as REGION_SHAP_METHOD
from xai.region_shap import RegionExplanation

VERDICTS = ("agree", "disagree", "unsure")
MAX_REVIEWER_CHARS = 80
MAX_NOTE_CHARS = 4000


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    case_id: int
    facts: CaseFacts
    model_id: str
    weights_sha256: str
    trained: bool
    bands_version: str
    thresholds: dict[str, dict[str, float]]
    cam_method: str
    device: str
    timing_ms: float
    created_at: datetime
    findings: tuple[Finding, ...]

    def ranked(self) -> tuple[Finding, ...]:
        return rank_findings(self.findings)


@dataclass(frozen=True)
class VerdictRecord:
    verdict_id: int
    run_id: int
    finding_label: str
    verdict: str
    note: str
    reviewer: str
    cam_method: str | None
    supersedes_id: int | None
    created_at: datetime


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


def _run_record(run: AnalysisRun) -> RunRecord:
    case = run.case
    return RunRecord(
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
        bands_version=run.bands_version,
        thresholds=json.loads(run.thresholds_json),
        cam_method=run.cam_method,
        device=run.device,
        timing_ms=run.timing_ms,
        created_at=_utc(run.created_at),
        findings=tuple(Finding(f.label, f.score, Band(f.band)) for f in run.findings),
    )


def _verdict_record(row: Verdict) -> VerdictRecord:
    return VerdictRecord(
        verdict_id=row.id,
        run_id=row.run_id,
        finding_label=row.finding_label,
        verdict=row.verdict,
        note=row.note,
        reviewer=row.reviewer,
        cam_method=row.cam_method,
        supersedes_id=row.supersedes_id,
        created_at=_utc(row.created_at),
    )


def _note_record(row: CaseNote) -> NoteRecord:
    return NoteRecord(row.id, row.run_id, row.note, row.reviewer, row.supersedes_id, _utc(row.created_at))


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


def store_analysis(
    session: Session, facts: CaseFacts, prediction: Prediction, cam_method: str, actor: str | None = None
) -> RunRecord:
    """The run for this input and model identity, stored once; re-analysing the same image with the
    same weights and bands returns the existing run instead of adding a duplicate."""
    case = _get_or_create_case(session, facts, actor)
    model = prediction.model
    existing = session.scalar(
        select(AnalysisRun).where(
            AnalysisRun.case_id == case.id,
            AnalysisRun.model_id == model.model_id,
            AnalysisRun.weights_sha256 == model.weights_sha256,
            AnalysisRun.bands_version == prediction.bands_version,
        )
    )
    if existing is not None:
        return _run_record(existing)
    run = AnalysisRun(
        case=case,
        input_sha256=facts.input_sha256,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        bands_version=prediction.bands_version,
        thresholds_json=json.dumps(prediction.thresholds, sort_keys=True),
        cam_method=cam_method,
        device=model.device,
        timing_ms=prediction.timing_ms,
        findings=[
            RunFinding(position=i, label=f.label, score=f.score, band=f.band.value)
            for i, f in enumerate(prediction.findings)
        ],
    )
    session.add(run)
    session.flush()
    audit.record_event(
        session,
        "analysis_run",
        actor,
        case_id=case.id,
        run_id=run.id,
        model_id=model.model_id,
        weights_sha256=model.weights_sha256,
        trained=model.trained,
        bands_version=prediction.bands_version,
    )
    return _run_record(run)


def get_run(session: Session, run_id: int) -> RunRecord | None:
    run = session.get(AnalysisRun, run_id)
    return _run_record(run) if run is not None else None


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


def _latest_verdict(session: Session, run_id: int, label: str, reviewer: str) -> Verdict | None:
    return session.scalar(
        select(Verdict)
        .where(Verdict.run_id == run_id, Verdict.finding_label == label, Verdict.reviewer == reviewer)
        .order_by(Verdict.id.desc())
        .limit(1)
    )


def _case_of_finding(session: Session, run_id: int, label: str) -> int:
    """The case id of a run that has this finding, in one query on the write path: loading
    the run and all its findings only to check a label held SQLite's write lock noticeably longer."""
    case_id = session.scalar(
        select(AnalysisRun.case_id)
        .join(RunFinding, RunFinding.run_id == AnalysisRun.id)
        .where(AnalysisRun.id == run_id, RunFinding.label == label)
    )
    if case_id is not None:
        return case_id
    if session.scalar(select(AnalysisRun.id).where(AnalysisRun.id == run_id)) is None:
        raise InvalidReview(f"Analysis run {run_id} does not exist; reload the case.")
    raise InvalidReview(f"{label!r} is not a finding of run {run_id}.")


def record_verdict(
    session: Session,
    run_id: int,
    finding_label: str,
    verdict: str,
    reviewer: str,
    note: str | None = None,
    cam_method: str | None = None,
) -> VerdictRecord:
    """Append a verdict; it supersedes this reviewer's previous one for the finding. Recording the
    same verdict and note again stores nothing new."""
    if verdict not in VERDICTS:
        raise InvalidReview(f"A verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}.")
    reviewer = _clean_reviewer(reviewer)
    note = _clean_note(note)
    case_id = _case_of_finding(session, run_id, finding_label)
    previous = _latest_verdict(session, run_id, finding_label, reviewer)
    if previous is not None and previous.verdict == verdict and previous.note == note:
        return _verdict_record(previous)
    values = dict(
        run_id=run_id,
        finding_label=finding_label,
        verdict=verdict,
        note=note,
        reviewer=reviewer,
        cam_method=cam_method,
        supersedes_id=previous.id if previous is not None else None,
        created_at=utcnow(),
    )
    # A Core INSERT ... RETURNING: the ORM unit of work added ~0.2 ms of CPU (about 15% of this
    # function) while SQLite's write lock is held, and the record needs nothing else from it.
    try:
        verdict_id = session.execute(insert(Verdict.__table__).values(**values).returning(Verdict.id)).scalar_one()
    except IntegrityError as exc:
        raise InvalidReview("This verdict changed in another window at the same moment; reload and try again.") from exc
    audit.record_event(
        session,
        "verdict_changed" if previous is not None else "verdict_set",
        reviewer,
        case_id=case_id,
        run_id=run_id,
        finding=finding_label,
        verdict=verdict,
        entry=verdict_id,
        replaces=values["supersedes_id"],
    )
    return VerdictRecord(verdict_id=verdict_id, **values)


def current_verdicts(session: Session, run_id: int, reviewer: str | None = None) -> list[VerdictRecord]:
    """Each reviewer's latest verdict per finding (all reviewers unless one is named)."""
    latest = (
        select(func.max(Verdict.id)).where(Verdict.run_id == run_id).group_by(Verdict.reviewer, Verdict.finding_label)
    )
    query = select(Verdict).where(Verdict.id.in_(latest))
    if reviewer is not None:
        query = query.where(Verdict.reviewer == " ".join(reviewer.split()))
    return [_verdict_record(v) for v in session.scalars(query.order_by(Verdict.id))]


def verdict_history(session: Session, run_id: int, reviewer: str | None = None) -> list[VerdictRecord]:
    """Every verdict entry of a run, oldest first: everyone's, or only ``reviewer``'s (blinded reads)."""
    query = select(Verdict).where(Verdict.run_id == run_id)
    if reviewer is not None:
        query = query.where(Verdict.reviewer == reviewer)
    return [_verdict_record(v) for v in session.scalars(query.order_by(Verdict.id))]


def record_case_note(session: Session, run_id: int, note: str, reviewer: str) -> NoteRecord | None:
    """Append a case note superseding this reviewer's previous one; None when nothing changed."""
    reviewer = _clean_reviewer(reviewer)
    note = _clean_note(note)
    run = session.get(AnalysisRun, run_id)
    if run is None:
        raise InvalidReview(f"Analysis run {run_id} does not exist; reload the case.")
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
    audit.record_event(session, "case_note", reviewer, case_id=run.case_id, run_id=run_id, entry=row.id)
    return _note_record(row)


def case_note_history(session: Session, run_id: int, reviewer: str | None = None) -> list[NoteRecord]:
    """Every case note entry of a run, oldest first: everyone's, or only ``reviewer``'s."""
    query = select(CaseNote).where(CaseNote.run_id == run_id)
    if reviewer is not None:
        query = query.where(CaseNote.reviewer == reviewer)
    return [_note_record(n) for n in session.scalars(query.order_by(CaseNote.id))]


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
    """identity key -> the name to show for it (open-mode names are shown as typed)."""
    rows = session.execute(select(ReviewerIdentity.identity, ReviewerIdentity.display_name)).all()
    return {identity: name for identity, name in rows}


def current_case_note(session: Session, run_id: int, reviewer: str) -> NoteRecord | None:
    reviewer = " ".join(reviewer.split())
    for record in reversed(case_note_history(session, run_id)):
        if record.reviewer == reviewer:
            return record
    return None


def store_region_explanation(session: Session, run_id: int, result: RegionExplanation) -> None:
    """Keep a run's region SHAP result; storing the same kind of explanation twice keeps the first."""
    run = session.get(AnalysisRun, run_id)
    if run is None:
        raise InvalidReview(f"Analysis run {run_id} does not exist; reload the case.")
    exists = session.scalar(
        select(RegionExplanationRow.id).where(
            RegionExplanationRow.run_id == run_id,
            RegionExplanationRow.method == REGION_SHAP_METHOD,
            RegionExplanationRow.regions_source == result.regions_source,
        )
    )
    if exists is not None:
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
