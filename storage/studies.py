"""Reader studies: an admin sets up a study over stored classification runs of one model; each
reader calls its findings first with the AI hidden, then with it shown; an adjudicator may record a
reference. Reads are written once each (the database refuses a second first read, so nobody redoes
the read they made without the AI after seeing it) and never changed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InvalidReview
from core.types import Finding
from core.vocabulary import Band, Presence, RunKind, StudyPhase
from storage import audit
from storage.models import ReaderStudy, ReaderStudyCase, Run, RunFinding, StudyRead, utcnow
from storage.repository import _clean_reviewer

MAX_NAME_CHARS = 120
MIN_CASES = 2


@dataclass(frozen=True)
class StudyRecord:
    study_id: int
    name: str
    model_id: str
    findings: tuple[str, ...]
    run_ids: tuple[int, ...]  # in the order readers get them
    created_by: str
    created_at: datetime
    closed_at: datetime | None

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class StudyReadRecord:
    read_id: int
    study_id: int
    run_id: int
    reviewer: str
    phase: StudyPhase
    answers: dict[str, Presence]
    started_at: datetime
    submitted_at: datetime

    @property
    def seconds(self) -> float:
        return (self.submitted_at - self.started_at).total_seconds()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _study_record(row: ReaderStudy, run_ids: Sequence[int]) -> StudyRecord:
    return StudyRecord(
        row.id,
        row.name,
        row.model_id,
        tuple(json.loads(row.findings_json)),
        tuple(run_ids),
        row.created_by,
        _utc(row.created_at),
        _utc(row.closed_at) if row.closed_at is not None else None,
    )


def _read_record(row: StudyRead) -> StudyReadRecord:
    return StudyReadRecord(
        row.id,
        row.study_id,
        row.run_id,
        row.reviewer,
        StudyPhase(row.phase),
        {k: Presence(v) for k, v in json.loads(row.answers_json).items()},
        _utc(row.started_at),
        _utc(row.submitted_at),
    )


def create_study(
    session: Session, name: str, run_ids: Sequence[int], findings: Sequence[str], created_by: str
) -> StudyRecord:
    """A new open study over these classification runs (all of one model), its readers to call these
    findings (each one the model scores). Refused, with nothing stored, when any of that is not so."""
    created_by = _clean_reviewer(created_by)
    name = " ".join(name.split())
    if not name:
        raise InvalidReview("Give the study a name, so its readers and its results can tell it from others.")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidReview(f"Study names are limited to {MAX_NAME_CHARS} characters.")
    run_ids = list(dict.fromkeys(run_ids))
    if len(run_ids) < MIN_CASES:
        raise InvalidReview(f"A reader study needs at least {MIN_CASES} cases; {len(run_ids)} chosen.")
    if not findings:
        raise InvalidReview("Choose at least one finding for the readers to call.")
    rows = session.execute(select(Run.id, Run.kind, Run.model_id).where(Run.id.in_(run_ids))).all()
    if len(rows) != len(run_ids):
        missing = sorted(set(run_ids) - {r.id for r in rows})
        raise InvalidReview(f"Runs {missing} do not exist; reload the page and choose again.")
    if any(RunKind(r.kind) is not RunKind.CLASSIFICATION for r in rows):
        raise InvalidReview("A reader study reads classifications (findings with scores), not segmentations.")
    models = sorted({r.model_id for r in rows})
    if len(models) != 1:
        raise InvalidReview(
            f"The chosen cases were read by {len(models)} models ({', '.join(models)}): a study compares readers "
            "with one model's output, so choose cases of one model."
        )
    scored = session.execute(select(RunFinding.run_id, RunFinding.label).where(RunFinding.run_id.in_(run_ids))).all()
    for run_id in run_ids:
        labels = {label for rid, label in scored if rid == run_id}
        unknown = [f for f in findings if f not in labels]
        if unknown:
            raise InvalidReview(f"Run {run_id} has no score for {', '.join(unknown)}; choose the model's own findings.")
    if session.scalar(select(ReaderStudy.id).where(ReaderStudy.name == name)) is not None:
        raise InvalidReview(f"A study named {name!r} exists already; choose another name.")
    in_open = sorted(
        set(
            session.scalars(
                select(ReaderStudyCase.run_id)
                .join(ReaderStudy, ReaderStudy.id == ReaderStudyCase.study_id)
                .where(ReaderStudy.closed_at.is_(None), ReaderStudyCase.run_id.in_(run_ids))
            )
        )
    )
    if in_open:
        raise InvalidReview(
            f"Runs {in_open} are in another open study: a first read there would show the AI here. Close that "
            "study first, or choose other cases."
        )
    study = ReaderStudy(name=name, model_id=models[0], findings_json=json.dumps(list(findings)), created_by=created_by)
    session.add(study)
    session.flush()
    session.execute(
        insert(cast(Table, ReaderStudyCase.__table__)),
        [{"study_id": study.id, "run_id": run_id, "position": i} for i, run_id in enumerate(run_ids)],
    )
    audit.record_event(
        session, "study_created", created_by, study=study.id, name=name, cases=len(run_ids), findings=len(findings)
    )
    return _study_record(study, run_ids)


def close_study(session: Session, study_id: int, actor: str) -> None:
    """Close a study: its cases are then read as any other (the AI shown at once)."""
    actor = _clean_reviewer(actor)
    done = session.execute(
        update(ReaderStudy)
        .where(ReaderStudy.id == study_id, ReaderStudy.closed_at.is_(None))
        .values(closed_at=utcnow())
    )
    if getattr(done, "rowcount", 0) != 1:
        raise InvalidReview(f"Study {study_id} does not exist or is closed already.")
    audit.record_event(session, "study_closed", actor, study=study_id)


def studies(session: Session, open_only: bool = False) -> list[StudyRecord]:
    """Every study, newest first, with its cases in their order."""
    query = select(ReaderStudy).order_by(ReaderStudy.id.desc())
    if open_only:
        query = query.where(ReaderStudy.closed_at.is_(None))
    rows = list(session.scalars(query))
    cases = session.execute(
        select(ReaderStudyCase.study_id, ReaderStudyCase.run_id)
        .where(ReaderStudyCase.study_id.in_([r.id for r in rows]))
        .order_by(ReaderStudyCase.position)
    ).all()
    return [_study_record(r, [run for sid, run in cases if sid == r.id]) for r in rows]


def get_study(session: Session, study_id: int) -> StudyRecord | None:
    return next((s for s in studies(session) if s.study_id == study_id), None)


def record_read(
    session: Session,
    study_id: int,
    run_id: int,
    reviewer: str,
    phase: StudyPhase,
    answers: Mapping[str, Presence | str],
    started_at: datetime,
) -> StudyReadRecord:
    """Store one read. Refused, with nothing stored, when the study is closed (but for an
    adjudicator's reference, which may come after) or lacks the case,
    a finding is left uncalled, the read with the AI comes before the one without it, or this
    reader has made this read of this case already."""
    reviewer = _clean_reviewer(reviewer)
    study = get_study(session, study_id)
    if study is None or (not study.open and phase is not StudyPhase.REFERENCE):
        raise InvalidReview("This reader study is closed or no longer exists; nothing was stored.")
    if run_id not in study.run_ids:
        raise InvalidReview(f"Run {run_id} is not one of this study's cases.")
    try:
        calls = {finding: Presence(answers[finding]) for finding in study.findings}
    except KeyError as missing:
        raise InvalidReview(f"Call every finding before submitting: {missing.args[0]} has no answer.") from None
    except ValueError:
        raise InvalidReview("Each finding is called present, absent or unsure.") from None
    mine = {r.phase for r in reads(session, study_id, reviewer=reviewer) if r.run_id == run_id}
    if phase is StudyPhase.AIDED and StudyPhase.UNAIDED not in mine:
        raise InvalidReview("Make your first read (the AI hidden) before the read with the AI.")
    if phase in mine:
        raise InvalidReview(
            "You have made this read of this case already; a read is kept as it was submitted."
            if phase is not StudyPhase.UNAIDED
            else "Your first read of this case is kept as you made it, before you saw the AI; it cannot be redone."
        )
    submitted_at = utcnow()
    try:
        read_id = session.execute(
            insert(cast(Table, StudyRead.__table__))
            .values(
                study_id=study_id,
                run_id=run_id,
                reviewer=reviewer,
                phase=phase.value,
                answers_json=json.dumps({k: v.value for k, v in calls.items()}),
                started_at=_utc(started_at),
                submitted_at=submitted_at,
            )
            .returning(StudyRead.id)
        ).scalar_one()
    except IntegrityError as exc:
        raise InvalidReview("This read was submitted in another window at the same moment; reload the page.") from exc
    return StudyReadRecord(read_id, study_id, run_id, reviewer, phase, calls, _utc(started_at), submitted_at)


def reads(session: Session, study_id: int, reviewer: str | None = None) -> list[StudyReadRecord]:
    """A study's reads in the order submitted (one reader's only, when named)."""
    query = select(StudyRead).where(StudyRead.study_id == study_id)
    if reviewer is not None:
        query = query.where(StudyRead.reviewer == " ".join(reviewer.split()))
    return [_read_record(r) for r in session.scalars(query.order_by(StudyRead.id))]


def study_findings(session: Session, study: StudyRecord) -> dict[int, tuple[Finding, ...]]:
    """Each case's stored scores and bands, every finding of the run (a "nothing found" class's call
    depends on the others, whether the study asks for them or not): what the AI said."""
    rows = session.execute(
        select(RunFinding.run_id, RunFinding.label, RunFinding.score, RunFinding.band)
        .where(RunFinding.run_id.in_(study.run_ids))
        .order_by(RunFinding.run_id, RunFinding.position)
    ).all()
    out: dict[int, list[Finding]] = {run_id: [] for run_id in study.run_ids}
    for run_id, label, score, band in rows:
        out[run_id].append(Finding(label, score, Band(band)))
    return {k: tuple(v) for k, v in out.items()}


def hidden_cases(session: Session, reviewer: str) -> set[int]:
    """The cases of ``hidden_runs``: any run of such a case (another model's, a new bands version,
    a prior) would show the AI's output of that image too."""
    hidden = hidden_runs(session, reviewer)
    if not hidden:
        return set()
    return set(session.scalars(select(Run.case_id).where(Run.id.in_(hidden))))


def hidden_runs(session: Session, reviewer: str) -> set[int]:
    """The runs whose AI output this reader must not see yet: cases of an open study they have not
    made their first read of. Where a reader has no name yet, every open study's cases."""
    who = " ".join(str(reviewer or "").split())
    open_cases = set(
        session.scalars(
            select(ReaderStudyCase.run_id)
            .join(ReaderStudy, ReaderStudy.id == ReaderStudyCase.study_id)
            .where(ReaderStudy.closed_at.is_(None))
        )
    )
    if not open_cases or not who:
        return open_cases
    read = set(
        session.scalars(
            select(StudyRead.run_id)
            .join(ReaderStudy, ReaderStudy.id == StudyRead.study_id)
            .where(
                ReaderStudy.closed_at.is_(None),
                StudyRead.reviewer == who,
                StudyRead.phase == StudyPhase.UNAIDED.value,
            )
        )
    )
    return open_cases - read


def untrained_cases(session: Session, study: StudyRecord) -> int:
    """How many of the study's cases were read by untrained weights (one query)."""
    return len(list(session.scalars(select(Run.id).where(Run.id.in_(study.run_ids), Run.trained.is_(False)))))
