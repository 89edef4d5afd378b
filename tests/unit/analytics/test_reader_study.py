"""Reader-study figures with known answers: readers who follow a wrong AI, an AI that helps, the
reference from an adjudicator or the other readers' majority, and the times with and without AI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics import reader_study
from core.types import Finding
from core.vocabulary import Band, Presence, StudyPhase
from storage.studies import StudyReadRecord

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
P, A, U = Presence.PRESENT, Presence.ABSENT, Presence.UNSURE


def read(reader: str, run: int, phase: StudyPhase, call: Presence, seconds: float = 30.0) -> StudyReadRecord:
    return StudyReadRecord(0, 1, run, reader, phase, {"Effusion": call}, T0, T0 + timedelta(seconds=seconds))


def ai(calls: dict[int, Band]) -> dict[int, tuple[Finding, ...]]:
    return {run: (Finding("Effusion", 0.5, band),) for run, band in calls.items()}


def test_a_reader_who_follows_a_wrong_ai_is_counted_and_an_adjudicated_reference_wins() -> None:
    # Ten cases, adjudicated: 1-5 present, 6-10 absent. The AI says present on 1-8 (wrong on 6-8).
    truth = {run: P if run <= 5 else A for run in range(1, 11)}
    bands = {run: Band.POSITIVE if run <= 8 else Band.NEGATIVE for run in range(1, 11)}
    reads = [read("Adj", run, StudyPhase.REFERENCE, truth[run]) for run in truth]
    for run, call in truth.items():
        first = call if run != 2 else A  # wrong without the AI on case 2 only
        second = P if run in (2, 6, 7) else call  # helped on 2; follows the wrong AI on 6 and 7, not 8
        reads += [read("Dr A", run, StudyPhase.UNAIDED, first, 60), read("Dr A", run, StudyPhase.AIDED, second, 20)]
    result = reader_study.summarise(reads, ai(bands), ["Effusion"])
    assert (result.readers, result.cases, result.calls, result.adjudicated) == (1, 10, 10, 10)
    assert (result.unaided.hits, result.aided.hits) == (9, 8)  # the AI made this reader worse
    assert result.change.value == pytest.approx(-0.1)
    assert result.followed_wrong_ai == reader_study.Proportion(2, 3)
    assert result.switched_to_wrong_ai == reader_study.Proportion(2, 3)
    assert result.helped_by_ai == reader_study.Proportion(1, 1)
    assert (result.changed, result.toward_ai, result.away_from_ai) == (3, 3, 0)
    assert result.ai_agreement == reader_study.Proportion(7, 10)
    assert result.seconds_unaided.value == 60 and result.seconds_aided.value == 20
    low, high = result.followed_wrong_ai.interval
    assert 0.2 < low < 2 / 3 < high < 1.0  # Wilson's interval for 2 of 3: 0.21-0.94
    assert result.change.interval[0] <= -0.1 <= result.change.interval[1]


def test_without_adjudication_the_reference_is_the_other_readers_majority_and_a_tie_is_none() -> None:
    reads = []
    for reader, call in [("A", P), ("B", P), ("C", A)]:
        reads += [read(reader, 1, StudyPhase.UNAIDED, call), read(reader, 1, StudyPhase.AIDED, call)]
    calls, pending = reader_study.study_calls(reads, ai({1: Band.NEGATIVE}), ["Effusion"])
    reference = {c.reader: c.reference for c in calls}
    # A's reference is B and C: a tie, none; C's is A and B: present.
    assert reference == {"A": None, "B": None, "C": P} and pending == 0
    result = reader_study.summarise(reads + [read("D", 1, StudyPhase.UNAIDED, U)], ai({1: Band.NEGATIVE}), ["Effusion"])
    assert result.without_reference == 2 and result.unaided == reader_study.Proportion(0, 1) and result.pending == 1


def test_the_others_reference_is_their_call_without_the_ai_so_following_it_cannot_hide_its_error() -> None:
    reads = []
    for reader in ("A", "B", "C"):  # all call absent alone, then follow the AI's wrong "present"
        reads += [read(reader, 1, StudyPhase.UNAIDED, A), read(reader, 1, StudyPhase.AIDED, P)]
    result = reader_study.summarise(reads, ai({1: Band.POSITIVE}), ["Effusion"])
    assert result.ai_agreement == reader_study.Proportion(0, 3)  # the AI was wrong against every reference
    assert result.followed_wrong_ai == reader_study.Proportion(3, 3)
    assert (result.unaided.hits, result.aided.hits) == (3, 0)


def test_a_first_call_that_was_already_the_ai_s_is_a_shared_error_not_following() -> None:
    reads = [
        read("Adj", 1, StudyPhase.REFERENCE, A),
        read("A", 1, StudyPhase.UNAIDED, P),
        read("A", 1, StudyPhase.AIDED, P),
    ]
    result = reader_study.summarise(reads, ai({1: Band.POSITIVE}), ["Effusion"])
    assert result.followed_wrong_ai.total == 0 and result.aided.hits == 0


def test_unsure_never_matches_and_an_indeterminate_ai_makes_no_call() -> None:
    reads = [
        read("Adj", 1, StudyPhase.REFERENCE, P),
        read("A", 1, StudyPhase.UNAIDED, U),
        read("A", 1, StudyPhase.AIDED, P),
    ]
    result = reader_study.summarise(reads, ai({1: Band.INDETERMINATE}), ["Effusion"])
    assert (result.unaided.hits, result.aided.hits) == (0, 1)
    assert result.ai_agreement.total == 0 and result.toward_ai == 0 and result.followed_wrong_ai.total == 0


def test_the_calls_export_has_both_reads_the_reference_the_ai_and_the_seconds() -> None:
    from analytics.exports import study_calls_csv

    reads = [
        read("Adj", 1, StudyPhase.REFERENCE, P),
        read("=cmd", 1, StudyPhase.UNAIDED, A, 61),
        read("=cmd", 1, StudyPhase.AIDED, P, 12.5),
    ]
    lines = study_calls_csv(reads, ai({1: Band.CRITICAL}), ["Effusion"]).decode().splitlines()
    assert lines[0].startswith("reader,run,finding,without_ai,with_ai,reference,ai_call")
    assert lines[1] == "'=cmd,1,Effusion,absent,present,present,present,61.0,12.5"  # a formula is neutralised


def test_a_nothing_found_class_is_called_from_the_other_classes_not_from_its_missing_band() -> None:
    def run(*bands: Band) -> tuple[Finding, ...]:
        labels = ("Glioma", "Meningioma", "No tumour")
        return tuple(Finding(label, 0.5, band) for label, band in zip(labels, bands))

    normal = ("No tumour",)
    nothing = reader_study.ai_calls(run(Band.NEGATIVE, Band.NEGATIVE, Band.NEGATIVE), normal)
    tumour = reader_study.ai_calls(run(Band.CRITICAL, Band.NEGATIVE, Band.NEGATIVE), normal)
    unsure = reader_study.ai_calls(run(Band.INDETERMINATE, Band.NEGATIVE, Band.NEGATIVE), normal)
    assert nothing == {"Glioma": A, "Meningioma": A, "No tumour": P}  # its band is always "negative"
    assert tumour["No tumour"] is A and unsure["No tumour"] is None
    # A reader and an adjudicator who say "no tumour" agree with an AI that called nothing.
    reads = [
        read("Adj", 1, StudyPhase.REFERENCE, P),
        read("A", 1, StudyPhase.UNAIDED, P),
        read("A", 1, StudyPhase.AIDED, P),
    ]
    found = {
        1: tuple(
            Finding("Effusion", 0.1, Band.NEGATIVE) if f.label == "No tumour" else f
            for f in run(Band.NEGATIVE, Band.NEGATIVE, Band.NEGATIVE)
        )
    }
    result = reader_study.summarise(reads, found, ["Effusion"], normal_labels=("Effusion",))
    assert result.ai_agreement == reader_study.Proportion(1, 1)
