"""Segmentations in the analytics and the case page: agreement per structure (readers with each
other and with the masks), the volumes the masks measure, and every run kind in the exports."""

from __future__ import annotations

from dataclasses import replace

from tests.app.conftest import new_app, texts


def _two_segmentations_read_by_two_readers() -> None:
    """Two CTs segmented by the same (untrained) network; both readers judge the tumour of each,
    one reader the liver of the first."""
    from core.settings import load_settings
    from core.vocabulary import Verdict
    from storage import repository
    from storage.db import open_database
    from tests.unit.storage.test_segmentation_storage import FACTS, segmentation

    sessions = open_database(load_settings().database_url)
    with sessions.begin() as s:
        first = repository.store_segmentation(s, FACTS, segmentation(), actor="Dr A")
        second = repository.store_segmentation(s, replace(FACTS, input_sha256="f" * 64), segmentation(extra=1))
        for run, (a, b) in ((first, ("agree", "agree")), (second, ("disagree", "agree"))):
            repository.record_verdict(s, run.run_id, "Tumour", Verdict(a), "Dr A")
            repository.record_verdict(s, run.run_id, "Tumour", Verdict(b), "Dr Test")
        repository.record_verdict(s, first.run_id, "Liver", Verdict.AGREE, "Dr A")
    sessions.kw["bind"].dispose()


def _frame_with(at, column: str):
    [frame] = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def test_analytics_gives_agreement_and_volumes_per_structure() -> None:
    _two_segmentations_read_by_two_readers()
    at = new_app()
    at.switch_page("pages/analytics.py").run()
    assert not at.exception, at.exception
    assert at.toggle(key="an_untrained").value is True  # a demo: only untrained runs
    assert any("UNTRAINED" in e.value and "masks" in e.value for e in at.error)
    metrics = {m.label: m.value for m in at.get("metric")}
    assert (metrics["Verdicts"], metrics["Cases"], metrics["Readers"], metrics["Agree with AI"]) == (
        "5",
        "2",
        "2",
        "80%",
    )

    agreement = _frame_with(at, "agree with the mask").set_index("structure")
    assert list(agreement.index) == ["Liver", "Tumour"] and set(agreement["masks from"]) == {"seg-test-unet"}
    tumour = agreement.loc["Tumour"]
    assert (tumour["verdicts"], tumour["agree with the mask"], tumour["readers"], tumour["cases read by all"]) == (
        4,
        "75%",
        2,
        2,
    )
    # Dr A: agree, disagree; Dr Test: agree, agree. Observed 0.5, expected by chance 0.5: kappa 0.
    assert (tumour["reader agreement"], tumour["measure"]) == ("0.00", "Cohen's kappa")
    assert agreement.loc["Liver", "reader agreement"] == "–"

    volumes = _frame_with(at, "median (mL)").set_index("structure")
    assert list(volumes.index) == ["Liver", "Tumour", "Liver and tumour"]
    assert list(volumes["runs"]) == [2, 2, 2]
    assert volumes.loc["Liver", "median (mL)"] == 0.31  # 26 voxels of 2 x 2 x 3 mm in both
    assert (volumes.loc["Tumour", "smallest (mL)"], volumes.loc["Tumour", "largest (mL)"]) == (0.01, 0.02)
    assert "Volume per structure" in texts(at)
    assert [b.label for b in at.get("download_button")] == [
        "Verdicts (CSV)",
        "Structure verdicts (CSV)",
        "Runs and verdict history (JSON)",
    ]

    # One reader's verdicts alone: the tumour is now one reader's, with no kappa.
    at.selectbox(key="an_reviewer").set_value("Dr A").run()
    tumour = _frame_with(at, "agree with the mask").set_index("structure").loc["Tumour"]
    assert (tumour["verdicts"], tumour["agree with the mask"], tumour["readers"]) == (2, "50%", 1)


def test_a_reopened_segmentation_offers_its_case_report() -> None:
    _two_segmentations_read_by_two_readers()
    at = new_app()
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    labels = [b.label for b in at.get("download_button")]
    assert "Download case report (HTML)" in labels and "Download my verdicts as DICOM SR" in labels


def test_a_readers_corrected_mask_is_compared_with_the_ais_when_asked() -> None:
    """The analytics page pairs a model's segmentation with a mask uploaded for the same volume,
    and reads their label maps only when the reader asks for the comparison."""
    from core.settings import load_settings
    from storage import repository
    from storage.db import open_database
    from storage.image_store import ImageStore
    from tests.unit.pipelines.test_mask_agreement import uploaded
    from tests.unit.storage.test_segmentation_storage import FACTS, segmentation

    settings = load_settings()
    sessions = open_database(settings.database_url)
    store = ImageStore(settings.image_store_dir, settings.image_retention_days)
    with sessions.begin() as s:
        for seg in (segmentation(), uploaded(extra=1)):
            repository.store_segmentation(s, FACTS, seg)
            store.put_label_map(seg.label_map)
    sessions.kw["bind"].dispose()

    at = new_app()
    at.switch_page("pages/analytics.py").run()
    assert not at.exception, at.exception
    assert "Readers' masks against the AI's" not in texts(at)  # an untrained model's masks: left out unless asked
    at.toggle(key="an_untrained").set_value(True).run()
    assert "Readers' masks against the AI's" in texts(at) and not [d for d in at.dataframe if "Dice" in d.value]
    at.toggle(key="an_mask_dice").set_value(True).run()
    assert not at.exception, at.exception
    compared = _frame_with(at, "Dice").set_index("structure")
    assert list(compared.index) == ["Liver", "Tumour", "Liver and tumour"]
    assert (compared.loc["Tumour", "Dice"], compared.loc["Liver and tumour", "Dice"]) == ("0.667", "1.000")
    assert compared.loc["Tumour", "difference"] == "+100%"  # the reader's tumour is twice the AI's
    assert set(compared["masks from"]) == {"seg-test-unet (UNTRAINED)"}
