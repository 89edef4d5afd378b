"""What a reader study says: do readers agree more with the reference once they see the AI, how long
they take with and without it, and how often they follow the AI when it is wrong (automation bias).

The design is sequential: each reader calls each finding of a case with the AI hidden, then sees
it and may revise. The reference for a reader's call is the adjudicated call where an adjudicator
recorded one, else the majority of the *other* readers' first calls, made with the AI hidden (the
calls made with it would pull the reference toward the AI, and hide the AI's errors whenever
everyone followed it); present or absent: a tie or only "unsure" gives no reference and the item
is left out, counted. A call of "unsure"
counts as not matching the reference. The AI's call is its band: positive or critical is present,
negative absent; indeterminate makes no call. A model's "nothing found" class (no tumour) has no
band of its own: the AI calls it present when it called every other class absent, absent when it
called another present, and nothing otherwise.

Intervals are 95 %: Wilson's for a proportion; for the change in agreement and the median times,
a percentile bootstrap that resamples cases (a case's calls are not independent of each other)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.types import Finding
from core.vocabulary import Presence, StudyPhase, ai_call
from storage.studies import StudyReadRecord

BOOTSTRAP_REPEATS = 2000
_Z = 1.959964


@dataclass(frozen=True)
class Proportion:
    hits: int
    total: int

    @property
    def estimate(self) -> float | None:
        return self.hits / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson's 95 % interval; None without cases."""
        if not self.total:
            return None
        n, p = self.total, self.hits / self.total
        centre = (p + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
        half = _Z * np.sqrt(p * (1 - p) / n + _Z**2 / (4 * n * n)) / (1 + _Z**2 / n)
        return max(0.0, float(centre - half)), min(1.0, float(centre + half))


@dataclass(frozen=True)
class Estimate:
    value: float | None
    interval: tuple[float, float] | None
    n: int


@dataclass(frozen=True)
class Call:
    """One reader's calls on one finding of one case, with the reference and the AI's call."""

    reader: str
    run_id: int
    finding: str
    unaided: Presence
    aided: Presence
    reference: Presence | None
    ai: Presence | None

    @property
    def changed(self) -> bool:
        return self.aided is not self.unaided

    @property
    def toward_ai(self) -> bool:
        return self.ai is not None and self.changed and self.aided is self.ai

    @property
    def away_from_ai(self) -> bool:
        return self.ai is not None and self.changed and self.unaided is self.ai


@dataclass(frozen=True)
class ReaderFigures:
    reader: str
    cases: int
    unaided: Proportion
    aided: Proportion
    changed: int
    toward_ai: int
    followed_wrong_ai: Proportion
    median_seconds_unaided: float | None
    median_seconds_aided: float | None


@dataclass(frozen=True)
class StudyResult:
    readers: int
    cases: int  # cases with at least one complete pair of reads
    calls: int  # reader x case x finding with both reads
    without_reference: int  # of those, how many had no reference (left out of the agreement)
    adjudicated: int  # of those with a reference, how many from an adjudicator
    unaided: Proportion  # agreement with the reference, AI hidden
    aided: Proportion  # with the AI shown
    change: Estimate  # aided minus unaided agreement, paired, bootstrap over cases
    ai_agreement: Proportion  # the AI's own call against the reference, where it made one
    changed: int
    toward_ai: int
    away_from_ai: int
    # AI wrong and the reader's first call not the AI's: their call with the AI became the AI's
    followed_wrong_ai: Proportion
    switched_to_wrong_ai: Proportion  # AI wrong, reader right unaided: the reader changed to the AI's call
    helped_by_ai: Proportion  # AI right, reader wrong unaided: the reader changed to the right call
    seconds_unaided: Estimate  # median seconds per case, AI hidden (first read)
    seconds_aided: Estimate  # median seconds per case with the AI shown, until the final read
    per_reader: tuple[ReaderFigures, ...]
    pending: int  # reader x case with a first read and no read with the AI yet


def _majority(calls: Sequence[Presence]) -> Presence | None:
    counted = Counter(c for c in calls if c is not Presence.UNSURE)
    if not counted:
        return None
    (top, n), *rest = counted.most_common()
    return None if rest and rest[0][1] == n else top


def ai_calls(found: Sequence[Finding], normal_labels: Sequence[str] = ()) -> dict[str, Presence | None]:
    """What the AI called of each finding of one run (all of its findings: a "nothing found"
    class's call depends on the others)."""
    normal = set(normal_labels)
    calls: dict[str, Presence | None] = {f.label: ai_call(f.band) for f in found if f.label not in normal}
    others = list(calls.values())
    for f in found:
        if f.label in normal:
            if others and all(c is Presence.ABSENT for c in others):
                calls[f.label] = Presence.PRESENT
            elif any(c is Presence.PRESENT for c in others):
                calls[f.label] = Presence.ABSENT
            else:
                calls[f.label] = None
    return calls


def study_calls(
    reads: Sequence[StudyReadRecord],
    ai_findings: Mapping[int, Sequence[Finding]],
    findings: Sequence[str],
    normal_labels: Sequence[str] = (),
) -> tuple[list[Call], int]:
    """Every reader's pair of calls per case and finding, each with its reference and the AI's
    call; and how many reader x case have a first read without a second yet."""
    by: dict[tuple[str, int], dict[StudyPhase, StudyReadRecord]] = defaultdict(dict)
    adjudicated: dict[int, StudyReadRecord] = {}
    for read in reads:
        if read.phase is StudyPhase.REFERENCE:
            adjudicated[read.run_id] = read  # the latest adjudication of a case wins
        else:
            by[(read.reviewer, read.run_id)][read.phase] = read
    unaided_by_case: dict[int, dict[str, StudyReadRecord]] = defaultdict(dict)
    for (reader, run_id), phases in by.items():
        if StudyPhase.UNAIDED in phases:
            unaided_by_case[run_id][reader] = phases[StudyPhase.UNAIDED]
    ai = {run_id: ai_calls(found, normal_labels) for run_id, found in ai_findings.items()}
    calls: list[Call] = []
    pending = 0
    for (reader, run_id), phases in sorted(by.items()):
        if StudyPhase.AIDED not in phases or StudyPhase.UNAIDED not in phases:
            pending += StudyPhase.UNAIDED in phases
            continue
        first, second = phases[StudyPhase.UNAIDED], phases[StudyPhase.AIDED]
        others = [r for who, r in unaided_by_case[run_id].items() if who != reader]
        for finding in findings:
            if run_id in adjudicated:
                reference = adjudicated[run_id].answers.get(finding)
                reference = None if reference is Presence.UNSURE else reference
            else:
                reference = _majority([o.answers[finding] for o in others if finding in o.answers])
            calls.append(
                Call(
                    reader,
                    run_id,
                    finding,
                    first.answers[finding],
                    second.answers[finding],
                    reference,
                    ai.get(run_id, {}).get(finding),
                )
            )
    return calls, pending


def _proportion(calls: Sequence[Call], hit) -> Proportion:
    return Proportion(sum(1 for c in calls if hit(c)), len(calls))


def _bootstrap(cases: Sequence[int], statistic, rng: np.random.Generator) -> tuple[float, float] | None:
    """The 2.5th and 97.5th percentiles of a statistic of case lists drawn with replacement."""
    if len(cases) < 2:
        return None
    values = []
    for _ in range(BOOTSTRAP_REPEATS):
        drawn = [cases[i] for i in rng.integers(0, len(cases), len(cases))]
        value = statistic(drawn)
        if value is not None:
            values.append(value)
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _agreement_change(calls: Sequence[Call], cases: Sequence[int], rng: np.random.Generator) -> Estimate:
    by_case: dict[int, list[Call]] = defaultdict(list)
    for c in calls:
        by_case[c.run_id].append(c)

    def change(drawn: Sequence[int]) -> float | None:
        chosen = [c for run_id in drawn for c in by_case[run_id]]
        if not chosen:
            return None
        return (sum(c.aided is c.reference for c in chosen) - sum(c.unaided is c.reference for c in chosen)) / len(
            chosen
        )

    present = [run_id for run_id in cases if by_case[run_id]]
    return Estimate(change(present), _bootstrap(present, change, rng), len(calls))


def _median_seconds(seconds: Mapping[int, list[float]], rng: np.random.Generator) -> Estimate:
    cases = sorted(seconds)

    def median(drawn: Sequence[int]) -> float | None:
        pooled = [s for run_id in drawn for s in seconds[run_id]]
        return float(np.median(pooled)) if pooled else None

    n = sum(len(v) for v in seconds.values())
    return Estimate(median(cases), _bootstrap(cases, median, rng), n)


def _seconds(
    reads: Sequence[StudyReadRecord], phase: StudyPhase, pairs: set[tuple[str, int]]
) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for read in reads:
        if read.phase is phase and (read.reviewer, read.run_id) in pairs:
            out[read.run_id].append(read.seconds)
    return out


def summarise(
    reads: Sequence[StudyReadRecord],
    ai_findings: Mapping[int, Sequence[Finding]],
    findings: Sequence[str],
    normal_labels: Sequence[str] = (),
    seed: int = 0,
) -> StudyResult:
    """The study's figures from its reads and the AI's stored findings of its cases."""
    rng = np.random.default_rng(seed)
    calls, pending = study_calls(reads, ai_findings, findings, normal_labels)
    judged = [c for c in calls if c.reference is not None]
    cases = sorted({c.run_id for c in calls})
    pairs = {(c.reader, c.run_id) for c in calls}
    adjudicated_cases = {r.run_id for r in reads if r.phase is StudyPhase.REFERENCE}
    ai_wrong = [c for c in judged if c.ai is not None and c.ai is not c.reference]
    # Following needs a call of one's own to leave: a first call already the AI's is a shared error.
    could_follow = [c for c in ai_wrong if c.unaided is not c.ai]
    ai_right = [c for c in judged if c.ai is not None and c.ai is c.reference]
    per_reader = []
    for reader in sorted({c.reader for c in calls}):
        own = [c for c in judged if c.reader == reader]
        own_pairs = {p for p in pairs if p[0] == reader}
        first = [s for v in _seconds(reads, StudyPhase.UNAIDED, own_pairs).values() for s in v]
        second = [s for v in _seconds(reads, StudyPhase.AIDED, own_pairs).values() for s in v]
        per_reader.append(
            ReaderFigures(
                reader,
                len(own_pairs),
                _proportion(own, lambda c: c.unaided is c.reference),
                _proportion(own, lambda c: c.aided is c.reference),
                sum(c.changed for c in calls if c.reader == reader),
                sum(c.toward_ai for c in calls if c.reader == reader),
                _proportion([c for c in could_follow if c.reader == reader], lambda c: c.aided is c.ai),
                float(np.median(first)) if first else None,
                float(np.median(second)) if second else None,
            )
        )
    return StudyResult(
        readers=len({c.reader for c in calls}),
        cases=len(cases),
        calls=len(calls),
        without_reference=len(calls) - len(judged),
        adjudicated=sum(1 for c in judged if c.run_id in adjudicated_cases),
        unaided=_proportion(judged, lambda c: c.unaided is c.reference),
        aided=_proportion(judged, lambda c: c.aided is c.reference),
        change=_agreement_change(judged, cases, rng),
        ai_agreement=_proportion([c for c in judged if c.ai is not None], lambda c: c.ai is c.reference),
        changed=sum(c.changed for c in calls),
        toward_ai=sum(c.toward_ai for c in calls),
        away_from_ai=sum(c.away_from_ai for c in calls),
        followed_wrong_ai=_proportion(could_follow, lambda c: c.aided is c.ai),
        switched_to_wrong_ai=_proportion([c for c in ai_wrong if c.unaided is c.reference], lambda c: c.aided is c.ai),
        helped_by_ai=_proportion([c for c in ai_right if c.unaided is not c.reference], lambda c: c.aided is c.ai),
        seconds_unaided=_median_seconds(_seconds(reads, StudyPhase.UNAIDED, pairs), rng),
        seconds_aided=_median_seconds(_seconds(reads, StudyPhase.AIDED, pairs), rng),
        per_reader=tuple(per_reader),
        pending=pending,
    )
