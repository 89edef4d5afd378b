"""Agreement between readers and between each reader and the AI, from current verdicts.

A verdict is a reader's answer to "is the AI right about this finding?": agree / disagree /
unsure. From it and the AI's band we also derive what the reader thinks of the finding itself:
the AI called it present (positive or critical band) or absent (negative), and the reader agreed
or disagreed. Indeterminate bands and "unsure" verdicts have no such reading.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.vocabulary import Band, Verdict
from storage.reporting import StructureVerdictFact, VerdictFact

CATEGORIES: tuple[str, ...] = tuple(Verdict)
AI_PRESENT = frozenset({Band.POSITIVE, Band.CRITICAL})


def fleiss_kappa(items: Sequence[Sequence[str]], categories: Sequence[str] = CATEGORIES) -> float | None:
    """Fleiss' kappa for items each rated by the same number (>= 2) of raters.

    Returns None when it is undefined (fewer than 2 items, or every rating in one category).
    """
    items = [list(item) for item in items]
    if len(items) < 2:
        return None
    raters = len(items[0])
    if raters < 2 or any(len(item) != raters for item in items):
        raise ValueError(f"every item needs the same number (>= 2) of ratings, got {sorted({len(i) for i in items})}.")
    counts = [[item.count(c) for c in categories] for item in items]
    n_items = len(items)
    p_category = [sum(row[j] for row in counts) / (n_items * raters) for j in range(len(categories))]
    p_items = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    p_bar = sum(p_items) / n_items
    p_expected = sum(p * p for p in p_category)
    if p_expected >= 1.0:
        return None
    return (p_bar - p_expected) / (1.0 - p_expected)


def cohen_kappa(first: Sequence[str], second: Sequence[str], categories: Sequence[str] = CATEGORIES) -> float | None:
    if len(first) != len(second):
        raise ValueError(f"both readers must rate the same items, got {len(first)} and {len(second)}.")
    n = len(first)
    if n < 2:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    a_counts, b_counts = Counter(first), Counter(second)
    expected = sum(a_counts[c] * b_counts[c] for c in categories) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class ItemAgreement:
    """Agreement on one finding, or one structure of one source's masks."""

    item: str
    verdicts: int
    agree_rate: float | None  # share of "agree" among agree + disagree: readers with the AI
    readers: int
    shared_items: int  # runs read by every one of those readers
    kappa: float | None  # Cohen's (2 readers) or Fleiss' kappa between readers over the shared items
    kappa_kind: str


class _Rated(Protocol):
    """A verdict fact of either kind, as agreement reads it."""

    @property
    def run_id(self) -> int: ...

    @property
    def reviewer(self) -> str: ...

    @property
    def verdict(self) -> Verdict: ...


def reader_implied_presence(fact: VerdictFact) -> bool | None:
    """What the reader's verdict says about the finding itself (None when it says nothing)."""
    if fact.verdict == Verdict.UNSURE or fact.band == Band.INDETERMINATE:
        return None
    ai_present = fact.band in AI_PRESENT
    return ai_present if fact.verdict == Verdict.AGREE else not ai_present


def _agreement(item: str, rows: Sequence[_Rated]) -> ItemAgreement:
    decided = [r for r in rows if r.verdict != Verdict.UNSURE]
    agree_rate = sum(r.verdict == Verdict.AGREE for r in decided) / len(decided) if decided else None
    ratings: dict[int, dict[str, str]] = defaultdict(dict)
    for r in rows:
        ratings[r.run_id][r.reviewer] = r.verdict
    readers = sorted({r.reviewer for r in rows})
    shared = [run for run, by_reader in ratings.items() if set(readers) <= set(by_reader)]
    kappa, kind = None, "needs 2 or more readers on 2 or more cases"
    if len(readers) >= 2 and len(shared) >= 2:
        items = [[ratings[run][reader] for reader in readers] for run in shared]
        if len(readers) == 2:
            kappa, kind = cohen_kappa([i[0] for i in items], [i[1] for i in items]), "Cohen's kappa"
        else:
            kappa, kind = fleiss_kappa(items), "Fleiss' kappa"
        if kappa is None:
            kind = "undefined: every verdict was the same"
    return ItemAgreement(item, len(rows), agree_rate, len(readers), len(shared), kappa, kind)


def per_finding(facts: Iterable[VerdictFact]) -> list[ItemAgreement]:
    by_finding: dict[str, list[VerdictFact]] = defaultdict(list)
    for fact in facts:
        by_finding[fact.finding].append(fact)
    return [_agreement(finding, rows) for finding, rows in sorted(by_finding.items())]


def per_structure(facts: Iterable[StructureVerdictFact]) -> dict[str, list[ItemAgreement]]:
    """Masks' source (a model's id, or "uploaded-mask") -> agreement on each of its structures, by
    name: the same name from two sources is two structures (the readers judged different masks)."""
    by_source: dict[str, dict[str, list[StructureVerdictFact]]] = defaultdict(lambda: defaultdict(list))
    for fact in facts:
        by_source[fact.model_id][fact.structure].append(fact)
    return {
        source: [_agreement(name, rows) for name, rows in sorted(structures.items())]
        for source, structures in sorted(by_source.items())
    }


def confusion(facts: Iterable[VerdictFact]) -> dict[str, Counter]:
    """finding -> Counter of (AI says present?, reader says present?) over decided verdicts."""
    table: dict[str, Counter] = defaultdict(Counter)
    for fact in facts:
        reader = reader_implied_presence(fact)
        if reader is None:
            continue
        table[fact.finding][(fact.band in AI_PRESENT, reader)] += 1
    return dict(table)


def agree_share_by_score_bin(
    facts: Iterable[VerdictFact], bins: int = 10
) -> list[tuple[float, float, int, float | None]]:
    """(bin start, bin end, verdicts, share of agree) over the calibrated score."""
    counts = [[0, 0] for _ in range(bins)]
    for fact in facts:
        if fact.verdict == Verdict.UNSURE:
            continue
        index = min(int(fact.score * bins), bins - 1)
        counts[index][0] += 1
        counts[index][1] += fact.verdict == Verdict.AGREE
    return [(i / bins, (i + 1) / bins, n, (a / n if n else None)) for i, (n, a) in enumerate(counts)]


UNSURE_COLUMN = "unsure"
UNNAMED_COLUMN = "disagree, class not named"


def class_confusion(facts: Iterable[VerdictFact], classes: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """AI versus reader for a classifier of exclusive classes: rows are the AI's answer (each run's
    top class), columns the reader's reading of it: the same class when they agreed, the class they
    named when they disagreed, then "disagree, class not named" and "unsure". Only verdicts on the
    AI's answer count (one per reader and run). Returns (column names, rows in ``classes`` order)."""
    columns = [*classes, UNNAMED_COLUMN, UNSURE_COLUMN]
    matrix = [[0] * len(columns) for _ in classes]
    for fact in facts:
        if fact.finding != fact.run_top_label or fact.finding not in classes:
            continue
        if fact.verdict == Verdict.AGREE:
            column = fact.finding
        elif fact.verdict == Verdict.UNSURE:
            column = UNSURE_COLUMN
        else:
            column = fact.reader_label if fact.reader_label and fact.reader_label in classes else UNNAMED_COLUMN
        matrix[list(classes).index(fact.finding)][columns.index(column)] += 1
    return columns, matrix
