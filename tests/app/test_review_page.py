"""The review page as a radiologist uses it, through AppTest with the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import create_engine, text

from tests.app.conftest import (
    cam_method_box,
    click_verdict,
    confirm_radiograph,
    new_app,
    texts,
    verdict_buttons,
    verdict_items,
)
from ui.session import case_note_key, case_note_save_key, note_save_key, note_text_key, selected_key


def db_rows(sql: str) -> list:
    """Rows from the app's database (created empty if the app never wrote to it)."""
    from core.settings import load_settings
    from storage.db import create_schema

    url = load_settings().database_url
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        create_schema(engine)
        with engine.connect() as connection:
            return list(connection.execute(text(sql)))
    finally:
        engine.dispose()


def upload(at, path: Path, name: str | None = None, mime: str = "image/png"):
    at.file_uploader[0].set_value((name or path.name, path.read_bytes(), mime)).run()
    confirm_radiograph(at)
    assert not at.exception, at.exception
    return at


def test_without_weights_the_page_says_what_is_missing_and_offers_untrained_mode() -> None:
    at = new_app()
    at.run()
    assert not at.exception
    said = texts(at)
    assert "cannot run" in said and "missing" in said
    assert "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121" in said
    assert any("python -m inference weights import" in c.value for c in at.code)
    assert not at.file_uploader, "no analysis without a model"
    at.button(key=None)
    [untrained] = [b for b in at.button if b.label.startswith("Use untrained weights")]
    untrained.click().run()
    assert "Untrained weights: scores are meaningless" in texts(at)
    assert at.file_uploader


def test_the_untrained_choice_holds_for_the_server_and_for_that_model_only() -> None:
    """Chosen in one tab, it holds in a reload or another reviewer's tab (one choice per server,
    labelled everywhere and audited), and it does not switch on any other model."""
    at = new_app()
    at.run()
    [untrained] = [b for b in at.button if b.label.startswith("Use untrained weights")]
    untrained.click().run()
    reloaded = new_app(reviewer="Dr Other")
    reloaded.run()
    assert "Untrained weights: scores are meaningless" in texts(reloaded) and reloaded.file_uploader
    assert any("UNTRAINED weights" in c.value for c in reloaded.sidebar.caption)
    [event] = db_rows("SELECT kind, actor, detail_json FROM audit_events WHERE kind = 'untrained_weights_chosen'")
    assert event[1] == "Dr Test" and "xrv-densenet121-res224-all" in event[2]
    reloaded.switch_page("pages/volumes.py").run()
    sidebar = " ".join(c.value for c in reloaded.sidebar.caption)
    assert "weights missing" in sidebar, "the MRI and CT models still ask for their own choice"


def test_upload_shows_18_findings_heatmap_and_stores_an_untrained_run(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    said = texts(at)
    assert "Untrained weights: scores are meaningless" in said
    assert "18 findings" in said
    verdict_rows = [m.value for m in at.markdown if "(untrained)" in m.value and not m.value.startswith("Selected: ")]
    assert len(verdict_rows) == 18, "every score carries the untrained label"
    captions = " ".join(c for image in at.image for c in image.captions)
    assert "Grad-CAM for" in captions and "untrained weights" in captions
    assert len(at.get("plotly_chart")) == 1
    [run] = db_rows("SELECT model_id, trained, bands_version, cam_method, device, weights_sha256 FROM analysis_runs")
    assert run[0] == "xrv-densenet121-res224-all" and run[1] == 0 and run[3] == "Grad-CAM" and run[4] == "cpu"
    assert len(db_rows("SELECT * FROM run_findings")) == 18


def test_opacity_and_colormap_never_call_the_model(untrained_env, samples: Path, monkeypatch) -> None:
    import pipelines.analyze as analysis

    calls = []
    real = analysis.forward_with_features
    monkeypatch.setattr(analysis, "forward_with_features", lambda *a: calls.append(1) or real(*a))
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert len(calls) == 1
    at.slider(key="cam_opacity").set_value(0.8).run()
    at.selectbox(key="cam_colormap").set_value("viridis").run()
    at.selectbox(key=selected_key("review", "finding", 1)).set_value("Effusion").run()
    assert not at.exception
    assert len(calls) == 1, "the cached analysis is reused"
    assert len(db_rows("SELECT * FROM analysis_runs")) == 1, "a rerun stores nothing new"


def test_other_cam_methods_are_offered_and_labelled(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert {"Grad-CAM", "Grad-CAM++"} <= set(cam_method_box(at).options)
    assert len(cam_method_box(at).options) >= 4
    cam_method_box(at).set_value("Grad-CAM++").run()
    assert not at.exception
    captions = " ".join(c for image in at.image for c in image.captions)
    assert "Grad-CAM++ for" in captions


def test_agree_is_stored_with_what_the_reviewer_saw(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    upload(at, samples / "siim_sample.dcm", mime="application/dicom")
    assert "modality CR" in texts(at)
    labels = verdict_items(at)
    assert len(labels) == 18 and len(verdict_buttons(at)) == 54
    label = labels[0]
    click_verdict(at, label, "agree")
    assert f"Saved: {label} — agree" in texts(at)
    at.text_input(key=note_text_key("review", "finding", 1, "Dr Test")).input("Old scarring, unchanged.")
    at.button(key=note_save_key("review", "finding", 1)).click().run()
    assert not at.exception
    assert f"Saved: {label} — agree with note." in texts(at)
    rows = db_rows("SELECT item, verdict, note, reviewer, cam_method, supersedes_id FROM verdicts ORDER BY id")
    assert rows[0][:5] == (label, "agree", "", "Dr Test", "Grad-CAM")
    assert rows[1][:4] == (label, "agree", "Old scarring, unchanged.", "Dr Test") and rows[1][5] == 1
    at.toggle(key="show_history").set_value(True).run()
    history = at.dataframe[-1].value
    assert list(history["verdict"]) == ["agree", "agree"]


def test_verdicts_need_a_reviewer_name(untrained_env, samples: Path) -> None:
    at = new_app(reviewer=None)
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert "Enter your name in the sidebar" in texts(at)
    buttons = verdict_buttons(at)
    assert len(buttons) == 54 and all(b.disabled for b in buttons.values())


@pytest.mark.parametrize(
    "source, name, phrase",
    [
        ("nih", "chest.dcm", "named as a DICOM file but contains a PNG image"),
        ("ct", "CT_small.dcm", "not a chest radiograph"),
        ("sr", "report.dcm", "without an image"),
        ("empty", "empty.png", "is empty"),
        ("text", "notes.png", "not a PNG, JPEG or DICOM"),
    ],
)
def test_bad_input_gets_a_clear_message_and_stores_nothing(untrained_env, samples: Path, source, name, phrase) -> None:
    data = {
        "nih": lambda: (samples / "nih_00000001_000.png").read_bytes(),
        "ct": lambda: Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        "sr": lambda: Path(get_testdata_file("test-SR.dcm")).read_bytes(),
        "empty": lambda: b"",
        "text": lambda: b"<html><script>alert(1)</script></html>",
    }[source]()
    at = new_app()
    at.run()
    at.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    confirm_radiograph(at)
    assert not at.exception
    assert any(phrase in e.value for e in at.error)
    assert db_rows("SELECT count(*) FROM cases")[0][0] == 0


def test_html_typed_by_a_user_is_shown_as_text(untrained_env, samples: Path) -> None:
    payload = "<img src=x onerror=alert(1)>"
    at = new_app(reviewer=payload)
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    label = verdict_items(at)[0]
    click_verdict(at, label, "unsure")
    at.text_input(key=note_text_key("review", "finding", 1, payload)).input(f"**bold** {payload}")
    at.button(key=note_save_key("review", "finding", 1)).click().run()
    assert not at.exception
    shown = [m.value for m in at.caption if "Note:" in m.value]
    assert shown and "\\<img" in shown[0] and "\\*\\*bold" in shown[0]
    assert not at.get("html")
    assert all(not m.proto.allow_html for m in [*at.markdown, *at.caption])


def test_identifiers_in_a_dicom_never_reach_the_database_or_the_screen(untrained_env, samples: Path) -> None:
    import io

    import pydicom

    ds = pydicom.dcmread(samples / "siim_sample.dcm")
    identifiers = {
        "PatientName": "Doe^Jane",
        "PatientID": "MRN-123456",
        "PatientBirthDate": "19700101",
        "AccessionNumber": "ACC-987654",
        "InstitutionName": "St Elsewhere Hospital",
        "ReferringPhysicianName": "Welby^Marcus",
        "PerformingPhysicianName": "House^Gregory",
        "OperatorsName": "Tech^Tina",
        "StudyDescription": "<img src=x onerror=alert(1)> chest",
        "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.111",
        "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.222",
    }
    for keyword, value in identifiers.items():
        setattr(ds, keyword, value)
    ds.ViewPosition = "<b>PA</b>"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("id.dcm", buffer.getvalue(), "application/dicom")).run()
    confirm_radiograph(at)
    assert not at.exception
    shown = texts(at)
    stored = " ".join(
        str(row)
        for table in ("cases", "analysis_runs", "run_findings", "verdicts")
        for row in db_rows(f"SELECT * FROM {table}")
    )
    for value in (
        "Doe",
        "Jane",
        "MRN-123456",
        "19700101",
        "ACC-987654",
        "Elsewhere",
        "Welby",
        "House",
        "Tina",
        "onerror",
        "1.2.826.0.1.3680043.8.498",
    ):
        assert value not in shown and value not in stored, value
    assert "pk-" in stored, "only the keyed hash of PatientID is kept"
    assert "view \\<b\\>PA\\</b\\>" in shown, "text from the file is escaped, never rendered"


def test_a_broken_bands_file_is_explained_not_a_traceback(untrained_env, samples: Path, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "bands.json"
    broken.write_text(
        '{"version": "x", "modalities": {"cxr": {"default": {"low": 0.6, "high": 0.5, "critical": 0.9}}}}'
    )
    monkeypatch.setenv("BANDS_CONFIG", str(broken))
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert any("low < high < critical" in e.value for e in at.error)


def test_a_database_that_cannot_be_written_is_explained(untrained_env, samples: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'sub' / 'x.sqlite3'}")
    (tmp_path / "missing-dir").write_text("a file where a folder should be")
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert any("review database" in e.value and "cannot be opened" in e.value for e in at.error)


def test_an_over_long_note_is_refused_with_a_message_and_kept_in_the_box(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    label = verdict_items(at)[0]
    click_verdict(at, label, "agree")
    pasted = "x" * 5000
    at.text_input(key=note_text_key("review", "finding", 1, "Dr Test")).input(pasted)
    at.button(key=note_save_key("review", "finding", 1)).click().run()
    assert not at.exception
    assert any("limited to 4,000 characters; this one has 5,000" in e.value for e in at.error)
    assert at.text_input(key=note_text_key("review", "finding", 1, "Dr Test")).value == pasted, "what was typed is kept"
    assert db_rows("SELECT count(*) FROM verdicts")[0][0] == 1, "only the click, not the note"
    at.text_area(key=case_note_key("review", 1, "Dr Test")).input(pasted).run()
    at.button(key=case_note_save_key("review", 1)).click().run()
    assert any("this one has 5,000" in e.value for e in at.error)
    assert at.text_area(key=case_note_key("review", 1, "Dr Test")).value == pasted
    assert db_rows("SELECT count(*) FROM case_notes")[0][0] == 0


def test_an_over_long_name_is_refused_and_nothing_is_recorded_under_it(untrained_env, samples: Path) -> None:
    at = new_app(reviewer=None)
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    pasted = "Dr " + "y" * 5000
    at.text_input(key="reviewer_name_input").input(pasted).run()
    assert not at.exception
    assert any("Names are limited to 80 characters; this one has 5,003" in e.value for e in at.sidebar.error)
    assert at.text_input(key="reviewer_name_input").value == pasted
    assert all(b.disabled for b in verdict_buttons(at).values())
    at.text_input(key="reviewer_name_input").input("Dr Short").run()
    assert not at.sidebar.error and not any(b.disabled for b in verdict_buttons(at).values())


def test_untrained_weights_asked_for_are_used_without_trying_the_download(
    untrained_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALLOW_UNTRAINED_WEIGHTS=1 with downloads on (the default): the page opens on labelled
    untrained weights at once; it used to wait on the network and log a failed download first."""
    monkeypatch.setenv("MODEL_AUTO_DOWNLOAD", "1")
    tried = []
    monkeypatch.setattr("ui.models.download_weights", lambda *args, **kwargs: tried.append(args))
    at = new_app().run()
    assert not at.exception
    assert "Untrained weights: scores are meaningless" in texts(at)
    assert tried == []


def test_test_time_augmentation_on_a_chest_xray_is_asked_for_shown_and_stored(untrained_env, samples: Path) -> None:
    """Off by default (four more model runs); on, the same image is scored four ways, the findings
    that could change band are named beside the chart, and the spread the reader saw is kept with
    the run already stored (append-only, in its audit trail); an image first scored with it on
    stores its run with the spread."""
    import json

    from ui.session import TTA_KEY

    at = new_app()
    at.run()
    upload(at, samples / "nih_00000001_000.png")
    assert "Test-time augmentation (" not in texts(at)
    [(stored,)] = db_rows("SELECT params_json FROM analysis_runs")
    assert "uncertainty" not in json.loads(stored) and json.loads(stored)["input"]["format"] == "png"
    at.toggle(key=TTA_KEY).set_value(True).run()
    assert not at.exception, at.exception
    line = next(c.value.replace("\\", "") for c in at.caption if "augmentation \\(" in c.value)
    assert line.startswith(
        ":red[Untrained weights, meaningless:] Test-time augmentation (original, horizontal flip, brightness +10%, "
        "brightness -10%):"
    )
    assert line.endswith(
        ("findings could fall in another band: read this case with care", "no finding leaves its band")
    )
    assert db_rows("SELECT params_json FROM analysis_runs") == [(stored,)], "the stored run is never changed"
    [(run_id, detail)] = db_rows("SELECT run_id, detail_json FROM audit_events WHERE kind = 'uncertainty_shown'")
    spread = json.loads(detail)["uncertainty"]
    assert run_id == 1 and spread["method"] == "test-time augmentation (4 views)" and len(spread["classes"]) == 18
    assert any(c["std"] > 0 for c in spread["classes"])

    upload(at, samples / "padchest_16747_3_1.jpg", mime="image/jpeg")  # switched on before this one
    [(second,)] = db_rows("SELECT params_json FROM analysis_runs WHERE id = 2")
    assert json.loads(second)["uncertainty"]["method"] == "test-time augmentation (4 views)"


def test_a_site_with_two_chest_xray_models_chooses_one_per_run(untrained_env, samples: Path) -> None:
    """The model is chosen on the page, not by one global setting: with a second chest X-ray model
    registered the page offers both (CXR_MODEL_ID's first), and the run records the one chosen."""
    from dataclasses import replace

    from inference.models import registry
    from ui.session import REVIEW_MODEL_KEY

    site = replace(registry.CXR_DENSENET, model_id="site-cxr-densenet121", display_name="Site chest X-ray DenseNet")
    registry.register(site)
    try:
        at = new_app()
        at.run()
        box = at.selectbox(key=REVIEW_MODEL_KEY)
        assert box.options == [registry.CXR_DENSENET.display_name, site.display_name]
        assert box.value == registry.CXR_DENSENET.display_name
        box.set_value(site.display_name).run()
        upload(at, samples / "nih_00000001_000.png")
        assert "model site\\-cxr\\-densenet121 in" in texts(at)
        assert db_rows("SELECT model_id, trained FROM analysis_runs") == [("site-cxr-densenet121", 0)]
    finally:
        registry.MODELS.pop(site.model_id)
