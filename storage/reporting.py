"""Read-only queries for the worklist, analytics and exports. Plain dataclasses out; each query
takes a fixed number of statements, however many runs there are."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased, joinedload, selectinload
from sqlalchemy.sql.selectable import ScalarSelect

from core.review_rules import required_count
from core.vocabulary import Band, RunKind, Verdict
from storage import audit
from storage.models import Case, CaseNote, Run, RunFeatures, RunFinding, RunStructure, VerdictEntry

CLASSIFICATION = RunKind.CLASSIFICATION.value


@dataclass(frozen=True)
class VerdictFact:
    """A reviewer's current verdict on one finding, with what the AI showed them."""

    entry: int  # the verdict's number among its reviewer's entries on the run (entry_numbers)
    run_id: int
    case_id: int
    finding: str
    score: float
    band: Band
    model_id: str
    weights_sha256: str
    trained: bool
    bands_version: str
    reviewer: str
    verdict: Verdict
    note: str
    created_at: datetime
    reader_label: str | None = None  # the reader's own class, on a Disagree with exclusive classes
    run_top_label: str = ""  # the run's highest-scoring label (a classifier of exclusive classes: its answer)


@dataclass(frozen=True)
class StructureVerdictFact:
    """A reviewer's current verdict on one structure, with what the masks showed them."""

    entry: int  # the verdict's number among its reviewer's entries on the run (entry_numbers)
    run_id: int
    case_id: int
    modality: str
    structure: str
    voxels: int
    volume_ml: float
    model_id: str
    weights_sha256: str
    trained: bool
    kind: RunKind  # a segmentation by a model, or an uploaded mask
    reviewer: str
    verdict: Verdict
    note: str
    created_at: datetime


class _ReviewProgress:
    readers_done: int  # reviewers with a verdict on every item under review
    readers_started: int  # reviewers with at least one verdict
    own: bool  # the counts are one reader's own (worklist(reviewer=...)): 0 or 1 each

    @property
    def status(self) -> str:
        if self.readers_done:
            return "reviewed by you" if self.own else f"reviewed by {self.readers_done}"
        return "in review" if self.readers_started else "new"


@dataclass(frozen=True)
class WorklistRow(_ReviewProgress):
    """A chest X-ray case, by its latest classification run."""

    case_id: int
    run_id: int
    modality: str
    view_position: str | None
    analysed_at: datetime
    top_band: Band
    top_finding: str
    trained: bool
    model_id: str
    readers_done: int  # reviewers with a verdict on every finding
    readers_started: int
    input_sha256: str = ""  # the case's input, the key of its image in the image store
    own: bool = False


@dataclass(frozen=True)
class SegmentationWorklistRow(_ReviewProgress):
    """A segmentation or uploaded-mask run."""

    run_id: int
    case_id: int
    kind: RunKind
    modality: str
    model_id: str
    trained: bool
    created_at: datetime
    structures: int
    readers_done: int  # reviewers with a verdict on every structure under review (core.review_rules)
    readers_started: int
    own: bool = False


@dataclass(frozen=True)
class Worklist:
    cases: list[WorklistRow]  # critical first, then newest
    segmentations: list[SegmentationWorklistRow]  # newest first
    in_study: int = 0  # cases left out: in an open reader study this reader has not read yet


def entry_numbers(entries: Iterable[tuple[int, str]]) -> dict[int, int]:
    """(entry id, reviewer) of one run's entries (verdicts, or case notes) -> each entry's number
    among its own reviewer's entries, 1, 2, ... in the order they were written. Histories and
    exports show these: database ids are shared by every reader, and their gaps told a reader how
    much the others had written."""
    written: dict[str, int] = defaultdict(int)
    numbers = {}
    for entry_id, reviewer in sorted(entries):
        written[reviewer] += 1
        numbers[entry_id] = written[reviewer]
    return numbers


def _entry_number() -> ScalarSelect[int]:
    """The same number as ``entry_numbers`` for the VerdictEntry row of the enclosing query,
    counted in SQL: exports must not show database ids, shared by every reader."""
    earlier = aliased(VerdictEntry)
    return (
        select(func.count(earlier.id))
        .where(
            (earlier.run_id == VerdictEntry.run_id)
            & (earlier.reviewer == VerdictEntry.reviewer)
            & (earlier.id <= VerdictEntry.id)
        )
        .scalar_subquery()
    )


def case_trail(session: Session, case_id: int, actor: str | None = None) -> list[audit.AuditRecord]:
    """``audit.events_for_case`` as a page shows it: the verdict and note ids in the events'
    details (``entry``, ``replaces``) become the entry numbers the history table shows ("#2"), so
    a reader's trail does not tell by its gaps how much the others wrote. Two statements besides
    the events', however long the trail."""
    events = audit.events_for_case(session, case_id, actor)
    runs = {e.run_id for e in events if e.run_id is not None}
    numbers: dict[type, dict[int, int]] = {}
    for table in (VerdictEntry, CaseNote):
        per_run: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for entry_id, run_id, reviewer in session.execute(
            select(table.id, table.run_id, table.reviewer).where(table.run_id.in_(runs))
        ):
            per_run[run_id].append((entry_id, reviewer))
        numbers[table] = {k: v for entries in per_run.values() for k, v in entry_numbers(entries).items()}

    def numbered(event: audit.AuditRecord) -> audit.AuditRecord:
        if "entry" not in event.detail:
            return event
        of = numbers[CaseNote if event.kind == "case_note" else VerdictEntry]
        detail = dict(event.detail)
        for key in ("entry", "replaces"):
            if detail.get(key) is not None:
                detail[key] = f"#{of[detail[key]]}"
        return replace(event, detail=detail)

    return [numbered(e) for e in events]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _current_entries(run_ids: Sequence[int] | None = None) -> Select:
    """The ids of each reviewer's current (latest) verdict entry per item, of these runs or all."""
    query = select(func.max(VerdictEntry.id))
    if run_ids is not None:
        query = query.where(VerdictEntry.run_id.in_(list(run_ids)))
    return query.group_by(VerdictEntry.run_id, VerdictEntry.reviewer, VerdictEntry.item)


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
    latest = _current_entries()
    query = (
        select(VerdictEntry, Run, RunFinding, _entry_number())
        .join(Run, Run.id == VerdictEntry.run_id)
        .join(RunFinding, (RunFinding.run_id == VerdictEntry.run_id) & (RunFinding.label == VerdictEntry.item))
        .where(VerdictEntry.id.in_(latest))
        .order_by(VerdictEntry.id)
    )
    if not include_untrained:
        query = query.where(Run.trained.is_(True))
    if model_id:
        query = query.where(Run.model_id == model_id)
    if reviewer:
        query = query.where(VerdictEntry.reviewer == reviewer)
    rows = session.execute(query).all()
    top = _top_labels(session, {run.id for _v, run, _f, _e in rows})
    facts = []
    for verdict, run, finding, entry in rows:
        created = _utc(verdict.created_at)
        if (since and created < since) or (until and created >= until):
            continue
        facts.append(
            VerdictFact(
                entry=entry,
                run_id=run.id,
                case_id=run.case_id,
                finding=finding.label,
                score=finding.score,
                band=Band(finding.band),
                model_id=run.model_id,
                weights_sha256=run.weights_sha256,
                trained=run.trained,
                bands_version=run.bands_version or "",
                reviewer=verdict.reviewer,
                verdict=Verdict(verdict.verdict),
                note=verdict.note,
                created_at=created,
                reader_label=verdict.reader_label,
                run_top_label=top.get(run.id, ""),
            )
        )
    return facts


def _top_labels(session: Session, run_ids: set[int]) -> dict[int, str]:
    """run id -> its highest-scoring label (the first in label order on a tie), in one query."""
    best: dict[int, tuple[float, int, str]] = {}
    if not run_ids:
        return {}
    query = select(RunFinding.run_id, RunFinding.position, RunFinding.label, RunFinding.score).where(
        RunFinding.run_id.in_(run_ids)
    )
    for run_id, position, label, score in session.execute(query):
        if run_id not in best or (score, -position) > (best[run_id][0], -best[run_id][1]):
            best[run_id] = (score, position, label)
    return {run_id: label for run_id, (_s, _p, label) in best.items()}


def current_structure_verdict_facts(session: Session, reviewer: str | None = None) -> list[StructureVerdictFact]:
    """Each reviewer's latest verdict on every structure of every run, oldest first (only
    ``reviewer``'s when one is named)."""
    latest = _current_entries()
    query = (
        select(VerdictEntry, Run, RunStructure, Case.modality, _entry_number())
        .join(Run, Run.id == VerdictEntry.run_id)
        .join(RunStructure, (RunStructure.run_id == VerdictEntry.run_id) & (RunStructure.name == VerdictEntry.item))
        .join(Case, Case.id == Run.case_id)
        .where(VerdictEntry.id.in_(latest))
    )
    if reviewer is not None:
        query = query.where(VerdictEntry.reviewer == reviewer)
    rows = session.execute(query.order_by(VerdictEntry.id)).all()
    return [
        StructureVerdictFact(
            entry=entry,
            run_id=run.id,
            case_id=run.case_id,
            modality=modality,
            structure=v.item,
            voxels=structure.voxels,
            volume_ml=structure.volume_ml,
            model_id=run.model_id,
            weights_sha256=run.weights_sha256,
            trained=run.trained,
            kind=RunKind(run.kind),
            reviewer=v.reviewer,
            verdict=Verdict(v.verdict),
            note=v.note,
            created_at=_utc(v.created_at),
        )
        for v, run, structure, modality, entry in rows
    ]


@dataclass(frozen=True)
class StructureVolume:
    """One measured structure of a segmentation or uploaded-mask run: what the volume
    distributions are drawn from, reviewed or not."""

    run_id: int
    case_id: int
    modality: str
    model_id: str
    trained: bool
    kind: RunKind
    structure: str
    volume_ml: float
    created_at: datetime


def structure_volumes(session: Session) -> list[StructureVolume]:
    """Every structure of every segmentation and uploaded-mask run, oldest run first (one query)."""
    rows = session.execute(
        select(Run, RunStructure, Case.modality)
        .join(RunStructure, RunStructure.run_id == Run.id)
        .join(Case, Case.id == Run.case_id)
        .where(Run.kind != CLASSIFICATION)
        .order_by(Run.id, RunStructure.position)
    ).all()
    return [
        StructureVolume(
            run_id=run.id,
            case_id=run.case_id,
            modality=modality,
            model_id=run.model_id,
            trained=run.trained,
            kind=RunKind(run.kind),
            structure=structure.name,
            volume_ml=structure.volume_ml,
            created_at=_utc(run.created_at),
        )
        for run, structure, modality in rows
    ]


@dataclass(frozen=True)
class ScoreRow:
    """One finding's score in one classification run, reviewed or not: what drift is measured on."""

    run_id: int
    model_id: str
    weights_sha256: str
    trained: bool
    finding: str
    score: float
    created_at: datetime


def classification_scores(session: Session, model_id: str | None = None) -> list[ScoreRow]:
    """Every finding's score of every classification run (of ``model_id`` when given), oldest first: one query."""
    query = (
        select(
            Run.id, Run.model_id, Run.weights_sha256, Run.trained, Run.created_at, RunFinding.label, RunFinding.score
        )
        .join(RunFinding, RunFinding.run_id == Run.id)
        .where(Run.kind == CLASSIFICATION)
        .order_by(Run.id, RunFinding.position)
    )
    if model_id:
        query = query.where(Run.model_id == model_id)
    return [
        ScoreRow(run_id, model, weights, trained, label, score, _utc(created))
        for run_id, model, weights, trained, created, label, score in session.execute(query)
    ]


@dataclass(frozen=True)
class InputRow:
    """What one classification run's input was (``pipelines.analyze.input_profile``, stored with it)."""

    run_id: int
    model_id: str
    weights_sha256: str
    trained: bool
    created_at: datetime
    profile: dict


def latest_run_id(session: Session) -> int:
    """The newest run's id (0 when none): what names the stored runs' state for a cache."""
    return int(session.scalar(select(func.max(Run.id))) or 0)


def input_profiles(session: Session, model_id: str | None = None) -> list[InputRow]:
    """The stored input profile of every classification run that has one, oldest first: one query."""
    import json

    query = (
        select(Run.id, Run.model_id, Run.weights_sha256, Run.trained, Run.created_at, Run.params_json)
        .where(Run.kind == CLASSIFICATION)
        .order_by(Run.id)
    )
    if model_id:
        query = query.where(Run.model_id == model_id)
    found = []
    for run_id, model, weights, trained, created, params in session.execute(query):
        profile = (json.loads(params) if params else {}).get("input")
        if isinstance(profile, dict):
            found.append(InputRow(run_id, model, weights, trained, _utc(created), profile))
    return found


def first_and_last_verdict_times(session: Session) -> dict[tuple[int, str], tuple[datetime, datetime]]:
    """(classification run, reviewer) -> time of their first and last verdict entry: the reading
    time window."""
    rows = session.execute(
        select(
            VerdictEntry.run_id,
            VerdictEntry.reviewer,
            func.min(VerdictEntry.created_at),
            func.max(VerdictEntry.created_at),
        )
        .join(Run, Run.id == VerdictEntry.run_id)
        .where(Run.kind == CLASSIFICATION)
        .group_by(VerdictEntry.run_id, VerdictEntry.reviewer)
    ).all()
    return {(run, reviewer): (_utc(first), _utc(last)) for run, reviewer, first, last in rows}


def _coverage(session: Session, run_ids: Sequence[int], reviewer: str | None) -> dict[int, list[int]]:
    """run -> how many distinct items each of its readers (or ``reviewer`` alone) has judged (one
    query for every run)."""
    per_run: dict[int, list[int]] = defaultdict(list)
    if not run_ids:
        return per_run
    query = (
        select(VerdictEntry.run_id, VerdictEntry.reviewer, func.count(func.distinct(VerdictEntry.item)))
        .where(VerdictEntry.run_id.in_(run_ids))
        .group_by(VerdictEntry.run_id, VerdictEntry.reviewer)
    )
    if reviewer is not None:
        query = query.where(VerdictEntry.reviewer == reviewer)
    rows = session.execute(query).all()
    for run_id, _reader, count in rows:
        per_run[run_id].append(count)
    return per_run


def worklist(session: Session, limit: int = 500, reviewer: str | None = None) -> Worklist:
    """The latest classification run of every case (critical first, then newest) and every
    segmentation or uploaded-mask run (newest first), each with how far its readers have got, or
    with ``reviewer`` how far that reader alone has (a reader reads independently, and must not
    learn from the worklist that another finished a case): four queries, whatever the number of runs."""
    latest_per_case = select(func.max(Run.id)).where(Run.kind == CLASSIFICATION).group_by(Run.case_id)
    xray = (
        session.scalars(
            select(Run)
            .where(Run.id.in_(latest_per_case))
            .options(joinedload(Run.case), selectinload(Run.findings))
            .order_by(Run.id.desc())
            .limit(limit)
        )
        .unique()
        .all()
    )
    segmentations = session.execute(
        select(
            Run,
            Case.modality,
            func.count(RunStructure.id),
            func.count(RunStructure.id).filter(RunStructure.voxels > 0),
        )
        .join(Case, Case.id == Run.case_id)
        .join(RunStructure, RunStructure.run_id == Run.id)
        .where(Run.kind != CLASSIFICATION)
        .group_by(Run.id, Case.modality)
        .order_by(Run.id.desc())
        .limit(limit)
    ).all()
    coverage = _coverage(session, [run.id for run in xray] + [row[0].id for row in segmentations], reviewer)
    own = reviewer is not None

    cases = []
    for run in xray:
        top = max(run.findings, key=lambda f: (Band(f.band).rank, f.score))
        per_reader = coverage.get(run.id, [])
        cases.append(
            WorklistRow(
                case_id=run.case_id,
                run_id=run.id,
                modality=run.case.modality,
                view_position=run.case.view_position,
                analysed_at=_utc(run.created_at),
                top_band=Band(top.band),
                top_finding=top.label,
                trained=run.trained,
                model_id=run.model_id,
                readers_done=sum(1 for c in per_reader if c >= len(run.findings)),
                readers_started=len(per_reader),
                input_sha256=run.case.input_sha256,
                own=own,
            )
        )
    cases.sort(key=lambda r: (-r.top_band.rank, -r.run_id))

    volumes = []
    for run, modality, structures, with_voxels in segmentations:
        per_reader = coverage.get(run.id, [])
        required = required_count(structures, with_voxels)
        volumes.append(
            SegmentationWorklistRow(
                run_id=run.id,
                case_id=run.case_id,
                kind=RunKind(run.kind),
                modality=modality,
                model_id=run.model_id,
                trained=run.trained,
                created_at=_utc(run.created_at),
                structures=structures,
                readers_done=sum(1 for c in per_reader if c >= required),
                readers_started=len(per_reader),
                own=own,
            )
        )
    return Worklist(cases=cases, segmentations=volumes)


@dataclass(frozen=True)
class ReviewedRun:
    """A classification run someone has given a verdict on, as a similar case shows it."""

    run_id: int
    case_id: int
    input_sha256: str
    created_at: datetime
    called: tuple[str, ...]  # the findings the AI put in a positive or critical band
    verdicts: tuple[tuple[str, str, str], ...]  # (reviewer, finding, verdict) the viewer may see, current
    readers: int  # how many readers gave a verdict (whoever they are)


def reviewed_runs(session: Session, run_ids: Sequence[int], reviewer: str | None = None) -> dict[int, ReviewedRun]:
    """Of these runs, the ones with at least one verdict (of ``reviewer``, when named): what the AI
    called and the current verdicts ``reviewer`` may see (everyone's when None)."""
    ids = list(run_ids)
    latest = _current_entries(ids)
    current = session.execute(
        select(VerdictEntry.run_id, VerdictEntry.reviewer, VerdictEntry.item, VerdictEntry.verdict)
        .where(VerdictEntry.id.in_(latest))
        .order_by(VerdictEntry.id)
    ).all()
    # A reader sees only the cases they judged themselves (whether others read one is not theirs to know).
    judged = {r.run_id for r in current if reviewer is None or r.reviewer == reviewer}
    if not judged:
        return {}
    runs = session.execute(
        select(Run.id, Run.case_id, Run.input_sha256, Run.created_at).where(Run.id.in_(judged))
    ).all()
    called = session.execute(
        select(RunFinding.run_id, RunFinding.label)
        .where(RunFinding.run_id.in_(judged), RunFinding.band.in_([Band.POSITIVE.value, Band.CRITICAL.value]))
        .order_by(RunFinding.run_id, RunFinding.score.desc())
    ).all()
    out = {}
    for run in runs:
        mine = [r for r in current if r.run_id == run.id]
        out[run.id] = ReviewedRun(
            run.id,
            run.case_id,
            run.input_sha256,
            _utc(run.created_at),
            tuple(label for rid, label in called if rid == run.id),
            tuple((r.reviewer, r.item, r.verdict) for r in mine if reviewer is None or r.reviewer == reviewer),
            len({r.reviewer for r in mine}),
        )
    return out


def confirmed_normals(
    session: Session, model_id: str, weights_sha256: str, normal_labels: Sequence[str] = (), limit: int = 200
) -> list[int]:
    """The most recent runs of these weights, with features kept, that readers confirmed as normal:
    the AI called nothing (every finding but the model's "nothing found" class, which has no band,
    in the negative band), at least one reader agreed on every finding, and no current verdict says otherwise."""
    candidates = list(
        session.scalars(
            select(Run.id)
            .join(RunFeatures, RunFeatures.run_id == Run.id)
            .where(Run.model_id == model_id, Run.weights_sha256 == weights_sha256)
            .order_by(Run.id.desc())
            .limit(20 * limit)
        )
    )
    if not candidates:
        return []
    findings = session.execute(
        select(RunFinding.run_id, RunFinding.label, RunFinding.band).where(RunFinding.run_id.in_(candidates))
    ).all()
    latest = _current_entries(candidates)
    verdicts = session.execute(
        select(VerdictEntry.run_id, VerdictEntry.item, VerdictEntry.verdict).where(VerdictEntry.id.in_(latest))
    ).all()
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for run_id, label, band in findings:
        labels[run_id][label] = band
    agreed: dict[int, set[str]] = defaultdict(set)
    doubted: set[int] = set()
    for run_id, item, verdict in verdicts:
        if verdict == Verdict.AGREE.value:
            agreed[run_id].add(item)
        else:
            doubted.add(run_id)
    normal = set(normal_labels)
    out = []
    for run_id in candidates:  # newest first
        bands = labels.get(run_id, {})
        # A "nothing found" class carries no band of its own (it is never drawn in one).
        called_nothing = all(band == Band.NEGATIVE.value for label, band in bands.items() if label not in normal)
        if bands and called_nothing and run_id not in doubted and agreed[run_id] >= set(bands):
            out.append(run_id)
            if len(out) == limit:
                break
    return out


def review_state(session: Session) -> tuple[int, int]:
    """(the newest verdict entry, the newest stored features): what names the confirmed normals and
    the similar-case candidates for a cache, in one cheap query."""
    row = session.execute(select(func.max(VerdictEntry.id), select(func.max(RunFeatures.id)).scalar_subquery())).one()
    return int(row[0] or 0), int(row[1] or 0)
