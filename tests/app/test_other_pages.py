"""Cases, Settings and About pages through AppTest."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import chosen_verdicts, click_verdict, confirm_radiograph, new_app, texts, verdict_items
from ui.session import audit_key, case_note_key, case_note_save_key, prior_key, selected_key


def analysed_case(samples: Path, verdict: str = "disagree"):
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("nih.png", (samples / "nih_00000001_000.png").read_bytes(), "image/png")).run()
    confirm_radiograph(at)
    label = verdict_items(at)[0]
    click_verdict(at, label, verdict)
    return at, label


def test_cases_page_reopens_a_case_with_its_findings_and_verdicts(untrained_env, samples: Path) -> None:
    at, label = analysed_case(samples)
    at.switch_page("pages/cases.py").run()
    assert not at.exception
    said = texts(at)
    assert "Case 1" in said and "UNTRAINED weights" in said and "bands version" in said
    controls = chosen_verdicts(at)
    assert len(controls) == 18 and controls[label] == "disagree"
    assert sum(v is not None for v in controls.values()) == 1
    history = at.dataframe[-1].value
    assert list(history["verdict"]) == ["disagree"] and list(history["reviewer"]) == ["Dr Test"]
    assert "Download my verdicts as DICOM SR" in [b.label for b in at.get("download_button")]


def test_a_second_reviewer_sees_the_case_but_not_as_their_own_verdict(untrained_env, samples: Path) -> None:
    analysed_case(samples)
    other = new_app(reviewer="Dr Other")
    other.switch_page("pages/cases.py").run()
    assert not other.exception
    # Nothing of theirs to send to PACS yet: no SR button, and the page says when there will be.
    assert "Download my verdicts as DICOM SR" not in [b.label for b in other.get("download_button")]
    assert "can be downloaded as a DICOM SR (for PACS) once you have given one" in texts(other)
    values = list(chosen_verdicts(other).values())
    assert len(values) == 18 and all(v is None for v in values)
    assert list(other.dataframe[-1].value["reviewer"]) == ["Dr Test"], "the history shows who said what"


def test_history_numbers_each_readers_entries_from_one_whatever_the_others_wrote(untrained_env, samples: Path) -> None:
    """Entry numbers are per reader: database ids are shared, and their gaps told a reader how much
    the others had written."""
    at, label = analysed_case(samples)  # Dr Test: disagree
    click_verdict(at, label, "agree")  # and changes it
    other = new_app(reviewer="Dr Other")
    other.switch_page("pages/cases.py").run()
    click_verdict(other, label, "unsure")
    history = other.dataframe[-1].value
    mine = history[history["reviewer"] == "Dr Other"]
    assert list(mine["entry"]) == ["#1"] and list(mine["replaces entry"]) == [""]
    theirs = history[history["reviewer"] == "Dr Test"]
    assert list(theirs["entry"]) == ["#1", "#2"] and list(theirs["replaces entry"]) == ["", "#1"]


def test_a_signed_in_readers_worklist_shows_their_own_progress_not_the_others(
    untrained_env, samples: Path, monkeypatch
) -> None:
    """Reader B has judged all 18 findings of case 1, reader A one: A's worklist must not say the
    case is reviewed, nor steer A away from it (readers read independently)."""
    import ui.identity
    import ui.widgets.next_case
    from core.settings import load_settings
    from core.vocabulary import Verdict
    from storage import repository
    from storage.db import open_database

    at, _ = analysed_case(samples)  # Dr Test: one verdict on case 1
    items = verdict_items(at)
    sessions = open_database(load_settings().database_url)
    with sessions.begin() as session:
        for item in items:
            repository.record_verdict(session, 1, item, Verdict.AGREE, "reader-b#0123456789", "", None)
    sessions.kw["bind"].dispose()

    at.switch_page("pages/worklist.py").run()
    assert at.dataframe[0].value["status"][0] == "reviewed by 1", "open mode (and the lead) see everyone's"

    # Signed in as a reader who is not the lead: whose verdicts this viewer may see is Dr Test's own.
    for module in (ui.identity, ui.widgets.next_case):
        monkeypatch.setattr(module, "visible_reviewer", lambda: "Dr Test", raising=False)
    at.run()
    assert not at.exception
    assert list(at.dataframe[0].value["status"]) == ["in review"]
    assert "Every case has been fully reviewed by at least one reader." not in texts(at)
    assert any(b.label.startswith("Next unreviewed case (case 1") for b in at.button)
    assert "your own progress" in texts(at)


def test_worklist_lists_cases_with_status_and_finds_the_next_unreviewed(untrained_env, samples: Path) -> None:
    at, _ = analysed_case(samples)
    at.file_uploader[0].set_value(("tbx.png", (samples / "tbx11k_h0001.png").read_bytes(), "image/png")).run()
    confirm_radiograph(at)
    at.switch_page("pages/worklist.py").run()
    assert not at.exception
    listing = at.dataframe[0].value
    assert sorted(listing["case"]) == [1, 2]
    assert set(listing["status"]) == {"in review", "new"}
    assert list(listing["weights"]) == ["UNTRAINED", "UNTRAINED"]
    assert "open" not in listing.columns  # a link opened a new tab, losing the name: rows open in place
    assert "click a row to open its case" in texts(at)
    next_button = next(b for b in at.button if b.label.startswith("Next unreviewed case"))
    assert next_button.proto.shortcut.upper() == "N"
    at.selectbox(key="wl_status").set_value("new").run()
    assert list(at.dataframe[0].value["case"]) == [2]
    next_button.click().run()
    assert not at.exception
    assert "Case 2" in texts(at), "the newest case not yet fully reviewed comes first"


def test_analytics_in_a_demo_starts_with_the_untrained_runs_labelled(untrained_env, samples: Path) -> None:
    """With only untrained runs (a demo) the page is not empty: they are in, under the red label;
    once a trained run is reviewed, the page starts with trained runs alone."""
    at, _ = analysed_case(samples, verdict="agree")
    at.switch_page("pages/analytics.py").run()
    assert not at.exception
    assert at.toggle(key="an_untrained").value is True
    assert any("UNTRAINED" in e.value for e in at.error)
    metrics = {m.label: m.value for m in at.get("metric")}
    assert metrics["Verdicts"] == "1" and metrics["Agree with AI"] == "100%"
    frame = at.dataframe[0].value
    assert list(frame["verdicts"]) == [1] and frame["measure"][0].startswith("needs 2")
    assert frame["reader agreement"][0] == "–" and frame["agree with AI"][0] == "100%"
    assert "None" not in frame.astype(str).to_numpy().ravel().tolist()
    [ai_vs_reader] = [d.value for d in at.dataframe[1:2]]
    assert list(ai_vs_reader.columns) == [
        "finding",
        "AI present · reader present",
        "AI present · reader absent",
        "AI absent · reader present",
        "AI absent · reader absent",
    ]
    assert int(ai_vs_reader.drop(columns="finding").to_numpy().sum()) == 1
    assert [b.label for b in at.get("download_button")] == [
        "Verdicts (CSV)",
        "Structure verdicts (CSV)",
        "Runs and verdict history (JSON)",
    ]
    at.toggle(key="an_untrained").set_value(False).run()
    assert "No verdicts match these filters yet." in texts(at)

    from core.settings import load_settings
    from core.vocabulary import Verdict
    from storage import repository
    from storage.db import open_database
    from tests.unit.storage.test_storage import FACTS, prediction

    with open_database(load_settings().database_url).begin() as session:
        run = repository.store_analysis(session, FACTS, prediction(weights="b" * 64, trained=True), "Grad-CAM")
        repository.record_verdict(session, run.run_id, "Effusion", Verdict.AGREE, "Dr Test", "")
    later = new_app()
    later.switch_page("pages/analytics.py").run()
    assert later.toggle(key="an_untrained").value is False
    assert {m.label: m.value for m in later.get("metric")}["Verdicts"] == "1"
    assert not any("UNTRAINED" in e.value for e in later.error)


def test_cases_page_when_empty(untrained_env) -> None:
    at = new_app()
    at.switch_page("pages/cases.py").run()
    assert not at.exception
    assert "No cases yet" in texts(at)


def test_settings_page_shows_bands_in_force_and_model_identity(untrained_env) -> None:
    at = new_app()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    said = texts(at)
    assert "Version **2026.12-1**" in said
    bands = at.dataframe[0].value
    assert len(bands) == 18 and set(bands.columns) >= {"finding", "low", "high", "critical"}
    pneumothorax = bands[bands["finding"] == "Pneumothorax"].iloc[0]
    assert (pneumothorax["low"], pneumothorax["high"], pneumothorax["critical"]) == (0.3, 0.5, 0.7)
    model = dict(zip(at.dataframe[1].value["setting"], at.dataframe[1].value["value"]))
    assert model["trained"].startswith("NO") and len(model["weights sha256"]) == 64
    storage = dict(zip(at.dataframe[2].value["setting"], at.dataframe[2].value["value"]))
    assert storage["database"].startswith("sqlite:///") and "kept 30 days" in storage["images"]


def test_settings_page_without_weights_explains_the_fix() -> None:
    at = new_app()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    assert "cannot run" in texts(at)


def test_about_page_says_it_is_not_a_medical_device() -> None:
    at = new_app()
    at.switch_page("pages/about.py").run()
    assert not at.exception
    assert "not a cleared medical device" in texts(at)
    assert "not where disease is" in texts(at)


def test_about_page_covers_every_registered_model_not_only_chest_xrays() -> None:
    from inference.models.registry import all_models
    from ui.text import md_escape as md

    at = new_app()
    at.switch_page("pages/about.py").run()
    said = texts(at)
    assert "MRI and CT volumes" in said and "Chest X-rays" in said
    entries = [m.value for m in at.markdown if m.value.startswith("- **")]
    assert len(entries) == len(all_models())
    assert all(f"**{md(spec.display_name)}**" in entry for spec, entry in zip(all_models(), entries))
    reads = " ".join(entries)
    assert "MRI volume" in reads and "CT volume" in reads and "18 findings" in reads


def test_sidebar_takes_the_reviewer_name() -> None:
    at = new_app(reviewer=None)
    at.run()
    assert any("Open mode" in c.value for c in at.sidebar.caption)
    at.text_input(key="reviewer_name_input").input("  Dr   Rahman ").run()
    assert at.session_state["reviewer_name"] == "Dr Rahman"


def test_case_note_is_saved_and_shown_in_history(untrained_env, samples: Path) -> None:
    at, _ = analysed_case(samples)
    at.switch_page("pages/cases.py").run()
    at.text_area(key=case_note_key("cases", 1, "Dr Test")).input("Compare with the prior film.").run()
    at.button(key=case_note_save_key("cases", 1)).click().run()
    assert not at.exception
    assert "Case note saved." in texts(at)
    history = at.dataframe[-1].value
    assert "(case note)" in list(history["finding"])
    assert "Compare with the prior film." in list(history["note"])


def test_the_case_page_shows_the_audit_trail(untrained_env, samples: Path) -> None:
    at, label = analysed_case(samples, verdict="agree")
    click_verdict(at, label, "disagree")
    at.switch_page("pages/cases.py").run()
    at.toggle(key=audit_key(1)).set_value(True).run()
    assert not at.exception
    trail = at.dataframe[-1].value
    # The reader's word that the PNG is a frontal chest radiograph is kept with the run.
    assert list(trail["event"]) == ["case created", "analysis run", "image confirmed", "verdict set", "verdict changed"]
    assert list(trail["who"]) == ["Dr Test"] * 5
    assert "trained False" in trail["detail"][1] and f"finding {label}" in trail["detail"][4]
    assert trail["detail"][2] == "confirmed as a frontal chest radiograph" and trail["run"][2] == "#1"
    assert trail["run"][0] == "–" and trail["run"][1] == "#1"  # the case event has no run: a dash, not None
    assert "None" not in trail.astype(str).to_numpy().ravel().tolist()
    assert not any("None" in detail for detail in trail["detail"])


def test_a_signed_in_admin_changes_the_bands_and_it_is_audited(untrained_env, monkeypatch) -> None:
    import ui.widgets.band_editor
    from ui.identity import Reviewer

    lead = Reviewer("lead@hospital.test", "Lead", signed_in=True, is_admin=True)
    monkeypatch.setattr(ui.widgets.band_editor, "auth_configured", lambda: True)
    monkeypatch.setattr(ui.widgets.band_editor, "current_reviewer", lambda: lead)
    at = new_app()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    at.text_input(key="bands_version").input("2026.12-lead").run()
    at.button(key="bands_save").click().run()
    assert not at.exception
    assert "Bands 2026.12-lead are now in force" in texts(at)
    at.run()
    assert "Version **2026.12-lead**" in texts(at)
    assert "by lead@hospital.test: 2026.12-1+" in texts(at)


def test_in_open_mode_nobody_changes_the_bands(untrained_env) -> None:
    at = new_app()
    at.switch_page("pages/settings.py").run()
    assert "Only a signed-in admin can change the bands" in texts(at)
    assert not [b for b in at.button if b.key == "bands_save"]


def test_open_mode_analytics_shows_everyone_s_verdicts_without_a_name(untrained_env, samples: Path) -> None:
    analysed_case(samples, verdict="agree")
    other = new_app(reviewer=None)
    other.switch_page("pages/analytics.py").run()
    assert not other.exception
    said = texts(other)
    assert "Open mode: everyone's verdicts are shown. A name is needed only to record verdicts." in said
    assert "Only your own verdicts" not in said and "No verdicts match" not in said
    assert {m.label: m.value for m in other.get("metric")}["Verdicts"] == "1"


def test_a_case_reopens_another_day_with_its_image_and_heatmap(untrained_env, samples: Path) -> None:
    """Analysed in one session; opened from a fresh one (caches cleared, as after a restart) with
    the kept image and its Grad-CAM; the verdict given there records the heatmap on screen."""
    import streamlit as st

    from core.settings import load_settings

    analysed_case(samples)
    kept = list(load_settings().image_store_dir.rglob("*.npz"))
    assert len(kept) == 1 and (samples / "nih_00000001_000.png").read_bytes() not in kept[0].read_bytes()
    st.cache_data.clear()
    st.cache_resource.clear()
    later = new_app(reviewer="Dr Later")
    later.switch_page("pages/cases.py").run()
    assert not later.exception, later.exception
    captions = [c for image in later.image for c in image.captions]
    assert any(c.startswith("Image (the square centre crop") for c in captions)
    assert any(c.startswith("Grad-CAM for") and "untrained" in c for c in captions)
    chooser = later.selectbox(key=selected_key("cases", "finding", 1))
    other = chooser.options[1]
    chooser.set_value(other).run()
    assert any(c.startswith(f"Grad-CAM for {other}") for image in later.image for c in image.captions)
    click_verdict(later, other, "agree")
    from tests.app.test_review_page import db_rows

    assert db_rows("SELECT item, cam_method, reviewer FROM verdicts ORDER BY id")[-1] == (
        other,
        "Grad-CAM",
        "Dr Later",
    )


def test_with_the_image_store_off_nothing_is_kept_and_the_case_page_says_so(
    untrained_env, samples: Path, monkeypatch
) -> None:
    from core.settings import load_settings

    monkeypatch.setenv("IMAGE_STORE", "0")
    at, _ = analysed_case(samples)
    assert not load_settings().image_store_dir.exists()
    at.switch_page("pages/cases.py").run()
    assert "The image store is turned off (IMAGE_STORE=0)" in texts(at)
    assert not at.image


def test_in_open_mode_the_typed_name_survives_a_reload() -> None:
    at = new_app(reviewer=None)
    at.run()
    at.text_input(key="reviewer_name_input").input("Dr Rahman").run()
    assert at.query_params["reader"] in ("Dr Rahman", ["Dr Rahman"])
    reloaded = new_app(reviewer=None)  # a reload: a new session with the same address
    reloaded.query_params["reader"] = "Dr Rahman"
    reloaded.run()
    assert reloaded.session_state["reviewer_name"] == "Dr Rahman"
    assert reloaded.text_input(key="reviewer_name_input").value == "Dr Rahman"
    too_long = new_app(reviewer=None)
    too_long.query_params["reader"] = "x" * 500
    too_long.run()
    assert too_long.text_input(key="reviewer_name_input").value == "", "an over-long name is not taken"


def _patient_dicom(samples: Path, patient_id: str, variant: int) -> bytes:
    import io

    import pydicom

    ds = pydicom.dcmread(samples / "siim_sample.dcm")
    ds.PatientID = patient_id
    ds.InstanceNumber = variant  # another film of the same patient: other bytes, another case
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_a_case_is_compared_with_the_prior_of_the_same_patient(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("old.dcm", _patient_dicom(samples, "MRN-1", 1), "application/dicom")).run()
    confirm_radiograph(at)
    prior_label = verdict_items(at)[0]
    click_verdict(at, prior_label, "agree")
    at.file_uploader[0].set_value(("other.dcm", _patient_dicom(samples, "MRN-2", 2), "application/dicom")).run()
    confirm_radiograph(at)
    at.file_uploader[0].set_value(("new.dcm", _patient_dicom(samples, "MRN-1", 3), "application/dicom")).run()
    confirm_radiograph(at)
    assert not at.exception, at.exception
    at.switch_page("pages/cases.py").run()
    at.selectbox[0].set_value(3).run()
    assert "Case 3" in texts(at)
    toggle = at.toggle(key=prior_key(3))
    assert toggle.label == "Compare with a prior of this patient (1)", "case 2 is another patient's"
    toggle.set_value(True).run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "**This case**" in said and "**Prior: case 1**" in said
    images = [
        c for image in at.image for c in image.captions if c.startswith("Image (the square centre crop the model saw)")
    ]
    assert len(images) == 2, "both films, from the image store"
    table = at.dataframe[0].value
    assert list(table.columns) == ["finding", "now", "prior", "change", "verdict on the prior"]
    assert len(table) == 18
    assert table.loc[table["finding"] == prior_label, "verdict on the prior"].iloc[0] == "agree"
    assert all(c.startswith(("+", "-")) for c in table["change"])

    at.selectbox[0].set_value(2).run()
    assert not [t for t in at.toggle if t.label.startswith("Compare with a prior")], "no prior for a first film"


def test_a_finding_judged_only_unsure_reads_as_a_dash_not_nan(untrained_env, samples: Path) -> None:
    at, label = analysed_case(samples, verdict="unsure")
    click_verdict(at, verdict_items(at)[1], "agree")  # another finding with a rate, so the column is numeric
    at.switch_page("pages/analytics.py").run()
    assert not at.exception
    frame = at.dataframe[0].value
    shown = dict(zip(frame["finding"], frame["agree with AI"]))
    assert shown[label] == "– (only unsure)"
    assert "nan" not in " ".join(frame.astype(str).to_numpy().ravel().tolist()).lower()


def test_settings_names_every_model_and_its_whole_weights_path(untrained_env) -> None:
    from core.settings import load_settings
    from inference.models.registry import all_models
    from inference.models.weights import installed_weights_path

    at = new_app()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    shown = [c.value for c in at.code]
    for spec in all_models():
        assert str(installed_weights_path(spec, load_settings())) in shown, spec.model_id


def test_the_about_page_says_what_is_kept_of_mri_and_ct() -> None:
    at = new_app()
    at.switch_page("pages/about.py").run()
    assert "MRI or CT's\n  decoded volume" in texts(at) or "decoded volume (every channel)" in texts(at)


def test_faithfulness_says_raises_for_a_negative_drop() -> None:
    from ui.widgets.cam_viewer import faithfulness_text
    from xai.faithfulness import Faithfulness

    result = Faithfulness("Grad-CAM", 0, full_score=0.5, drop_top=-0.006, drop_random=-0.016, problem="")
    text = faithfulness_text(result, trained=True)
    assert "raises by 0.006" in text and "-0.006" not in text
