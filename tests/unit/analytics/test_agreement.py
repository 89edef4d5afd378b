from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics import agreement
from core.vocabulary import Band, RunKind, Verdict
from storage.reporting import StructureVerdictFact, VerdictFact


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    # Fleiss (1971) style worked example: 10 items, 14 raters, 5 categories; kappa = 0.210.
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    categories = ["1", "2", "3", "4", "5"]
    items = [[c for c, n in zip(categories, row) for _ in range(n)] for row in counts]
    assert agreement.fleiss_kappa(items, categories) == pytest.approx(0.210, abs=5e-4)


def test_cohen_kappa_by_hand() -> None:
    first = ["agree"] * 25 + ["disagree"] * 25
    second = ["agree"] * 20 + ["disagree"] * 5 + ["agree"] * 10 + ["disagree"] * 15
    assert agreement.cohen_kappa(first, second) == pytest.approx(0.4)
    assert agreement.cohen_kappa(["agree"] * 5, ["agree"] * 5) is None  # undefined, not a fake 1.0
    with pytest.raises(ValueError, match="same items"):
        agreement.cohen_kappa(["agree"], ["agree", "unsure"])


def fact(run: int, reader: str, verdict: str, band: str = "positive", score: float = 0.7, finding: str = "Effusion"):
    return VerdictFact(
        entry=1,
        run_id=run,
        case_id=run,
        finding=finding,
        score=score,
        band=Band(band),
        model_id="m",
        weights_sha256="w",
        trained=True,
        bands_version="v",
        reviewer=reader,
        verdict=Verdict(verdict),
        note="",
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


def test_per_finding_agreement_between_readers_and_with_the_ai() -> None:
    facts = [
        fact(1, "A", "agree"),
        fact(1, "B", "agree"),
        fact(2, "A", "disagree"),
        fact(2, "B", "agree"),
        fact(3, "A", "agree"),
        fact(3, "B", "agree"),
        fact(4, "A", "disagree"),
        fact(4, "B", "disagree"),
        fact(5, "A", "unsure"),
    ]
    (result,) = agreement.per_finding(facts)
    assert result.readers == 2 and result.shared_items == 4 and result.kappa_kind == "Cohen's kappa"
    assert result.kappa == pytest.approx(
        agreement.cohen_kappa(["agree", "disagree", "agree", "disagree"], ["agree", "agree", "agree", "disagree"])
    )
    assert result.agree_rate == pytest.approx(5 / 8)


def test_reader_implied_presence_and_confusion() -> None:
    facts = [
        fact(1, "A", "agree", band="critical"),
        fact(2, "A", "disagree", band="positive"),
        fact(3, "A", "disagree", band="negative"),
        fact(4, "A", "agree", band="indeterminate"),
    ]
    table = agreement.confusion(facts)["Effusion"]
    assert table[(True, True)] == 1 and table[(True, False)] == 1 and table[(False, True)] == 1
    assert sum(table.values()) == 3


def test_agree_share_per_score_bin() -> None:
    bins = agreement.agree_share_by_score_bin(
        [fact(1, "A", "agree", score=0.95), fact(2, "A", "disagree", score=0.91), fact(3, "A", "agree", score=0.05)]
    )
    assert bins[9][2:] == (2, 0.5) and bins[0][2:] == (1, 1.0) and bins[5][3] is None


def test_ai_versus_reader_for_exclusive_classes_counts_only_verdicts_on_the_ais_answer() -> None:
    from dataclasses import replace

    classes = ("Glioma", "Meningioma", "No tumour")

    def on(run: int, reader: str, verdict: str, ai: str, finding: str | None = None, label: str | None = None):
        return replace(fact(run, reader, verdict, finding=finding or ai), run_top_label=ai, reader_label=label)

    facts = [
        on(1, "A", "agree", "Glioma"),
        on(1, "B", "disagree", "Glioma", label="Meningioma"),
        on(2, "A", "disagree", "Meningioma"),  # no class named
        on(3, "A", "unsure", "No tumour"),
        on(3, "B", "agree", "No tumour", finding="Glioma"),  # a verdict on another class: not counted
    ]
    columns, matrix = agreement.class_confusion(facts, classes)
    assert columns == [*classes, "disagree, class not named", "unsure"]
    assert matrix == [[1, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]


def structure_fact(run: int, reader: str, verdict: str, structure: str = "Tumour", source: str = "seg-unet"):
    return StructureVerdictFact(
        entry=1,
        run_id=run,
        case_id=run,
        modality="MR",
        structure=structure,
        voxels=1000,
        volume_ml=1.0,
        model_id=source,
        weights_sha256="w",
        trained=True,
        kind=RunKind.UPLOADED_MASK if source == "uploaded-mask" else RunKind.SEGMENTATION,
        reviewer=reader,
        verdict=Verdict(verdict),
        note="",
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


def test_per_structure_agreement_keeps_each_source_s_masks_apart() -> None:
    """Readers' kappa and their agreement with the masks, per structure of each source: a model's
    "Tumour" and an uploaded mask's "Tumour" are different masks, judged apart."""
    facts = [
        structure_fact(1, "A", "agree"),
        structure_fact(1, "B", "agree"),
        structure_fact(2, "A", "disagree"),
        structure_fact(2, "B", "disagree"),
        structure_fact(3, "A", "agree"),
        structure_fact(3, "B", "disagree"),
        structure_fact(3, "A", "agree", structure="Oedema"),
        structure_fact(9, "A", "disagree", source="uploaded-mask"),
    ]
    result = agreement.per_structure(facts)
    assert list(result) == ["seg-unet", "uploaded-mask"]
    oedema, tumour = result["seg-unet"]
    assert (oedema.item, oedema.verdicts, oedema.readers, oedema.agree_rate) == ("Oedema", 1, 1, 1.0)
    assert oedema.kappa is None and oedema.kappa_kind.startswith("needs 2")
    assert (tumour.item, tumour.readers, tumour.shared_items, tumour.kappa_kind) == ("Tumour", 2, 3, "Cohen's kappa")
    assert tumour.kappa == pytest.approx(
        agreement.cohen_kappa(["agree", "disagree", "agree"], ["agree", "disagree", "disagree"])
    )
    assert tumour.agree_rate == pytest.approx(3 / 6)
    (uploaded,) = result["uploaded-mask"]
    assert (uploaded.item, uploaded.verdicts, uploaded.agree_rate) == ("Tumour", 1, 0.0)
