"""Read-only queries for the worklist, analytics and exports. Plain dataclasses out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.vocabulary import Band
from storage.models import AnalysisRun, RunFinding, Verdict


@dataclass(frozen=True)
class VerdictFact:
    """A reviewer's current verdict on one finding, with what the AI showed them."""

    verdict_id: int
    run_id: int
    case_id: int
    finding: str
    score: float
    band: str
    model_id: str
    weights_sha256: str
    trained: bool
    bands_version: str
    reviewer: str
    verdict: str
    note: str
    created_at: datetime


@dataclass(frozen=True)
class WorklistRow:
    case_id: int
    run_id: int
    modality: str
    view_position: str | None
    analysed_at: datetime
    top_band: str
    top_finding: str
    trained: bool
    model_id: str
    readers_done: int  # reviewers with a verdict on every finding
    readers_started: int  # reviewers with at least one verdict

    @property
    def status(self) -> str:
        if self.readers_done:
            return f"reviewed by {self.readers_done}"
        if self.readers_started:
            return "in review"
        return "new"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def current_verdict_facts(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model_id: str | None = None,
    reviewer: str | None = None,
    include_untrained: bool = False,
) -> list[VerdictFact]:
    """Each reviewer's latest verdict per finding of each run, joined with the AI's score and band."""
    latest = select(func.max(Verdict.id)).group_by(Verdict.run_id, Verdict.reviewer, Verdict.finding_label)
    query = (
        select(Verdict, AnalysisRun, RunFinding)
        .join(AnalysisRun, AnalysisRun.id == Verdict.run_id)
        .join(RunFinding, (RunFinding.run_id == Verdict.run_id) & (RunFinding.label == Verdict.finding_label))
        .where(Verdict.id.in_(latest))
        .order_by(Verdict.id)
    )
    if not include_untrained:
        query = query.where(AnalysisRun.trained.is_(True))
    if model_id:
        query = query.where(AnalysisRun.model_id == model_id)
    if reviewer:
        query = query.where(Verdict.reviewer == reviewer)
    facts = []
    for verdict, run, finding in session.execute(query).all():
        created = _utc(verdict.created_at)
        if (since and created < since) or (until and created >= until):
            continue
        facts.append(
            VerdictFact(
                verdict_id=verdict.id,
                run_id=run.id,
                case_id=run.case_id,
                finding=finding.label,
                score=finding.score,
                band=finding.band,
                model_id=run.model_id,
                weights_sha256=run.weights_sha256,
                trained=run.trained,
                bands_version=run.bands_version,
                reviewer=verdict.reviewer,
                verdict=verdict.verdict,
                note=verdict.note,
                created_at=created,
            )
        )
    return facts


def first_and_last_verdict_times(session: Session) -> dict[tuple[int, str], tuple[datetime, datetime]]:
    """(run, reviewer) -> time of their first and last verdict entry: the reading time window."""
    rows = session.execute(
        select(Verdict.run_id, Verdict.reviewer, func.min(Verdict.created_at), func.max(Verdict.created_at)).group_by(
            Verdict.run_id, Verdict.reviewer
        )
    ).all()
    return {(run, reviewer): (_utc(first), _utc(last)) for run, reviewer, first, last in rows}


def worklist(session: Session, limit: int = 500) -> list[WorklistRow]:
    """The latest run of every case, critical first, then newest."""
    latest_runs = select(func.max(AnalysisRun.id)).group_by(AnalysisRun.case_id)
    runs = session.scalars(
        select(AnalysisRun).where(AnalysisRun.id.in_(latest_runs)).order_by(AnalysisRun.id.desc()).limit(limit)
    ).all()
    run_ids = [r.id for r in runs]
    coverage = session.execute(
        select(Verdict.run_id, Verdict.reviewer, func.count(func.distinct(Verdict.finding_label)))
        .where(Verdict.run_id.in_(run_ids))
        .group_by(Verdict.run_id, Verdict.reviewer)
    ).all()
    rows = []
    for run in runs:
        top = max(run.findings, key=lambda f: (Band(f.band).rank, f.score))
        per_reader = [count for run_id, _reader, count in coverage if run_id == run.id]
        rows.append(
            WorklistRow(
                case_id=run.case_id,
                run_id=run.id,
                modality=run.case.modality,
                view_position=run.case.view_position,
                analysed_at=_utc(run.created_at),
                top_band=top.band,
                top_finding=top.label,
                trained=run.trained,
                model_id=run.model_id,
                readers_done=sum(1 for c in per_reader if c >= len(run.findings)),
                readers_started=len(per_reader),
            )
        )
    rows.sort(key=lambda r: (-Band(r.top_band).rank, -r.run_id))
    return rows
