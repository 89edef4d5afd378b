"""Site calibration on the analytics page: fitted only when asked, per finding with its errors and
proposed thresholds and a reliability diagram; a signed-in admin takes the proposal to the band
editor, where it is reviewed and saved as a new, audited bands version."""

from __future__ import annotations

from tests.app.conftest import new_app, texts


def _seed(weights: str = "a" * 64) -> None:
    from dataclasses import replace

    import numpy as np

    from core.settings import load_settings
    from core.types import Finding, ModelIdentity, Prediction
    from core.vocabulary import Band, Verdict
    from storage import repository
    from storage.db import open_database
    from tests.unit.cli.test_cli_calibrate import band
    from tests.unit.storage.test_storage import FACTS

    sessions = open_database(load_settings().database_url)
    with sessions.begin() as s:
        for i, score in enumerate(np.linspace(0.02, 0.98, 60)):
            prediction = Prediction(
                (Finding("Effusion", float(score), band(score)),),
                ModelIdentity("xrv-densenet121-res224-all", weights, True, "cpu"),
                "v1",
                {},
                10.0,
            )
            stored = repository.store_analysis(s, replace(FACTS, input_sha256=f"{i:064x}"), prediction, "Grad-CAM")
            agree = (score >= 0.6) == (band(score) is not Band.NEGATIVE)
            repository.record_verdict(
                s, stored.run_id, "Effusion", Verdict.AGREE if agree else Verdict.DISAGREE, "Dr A"
            )
    sessions.kw["bind"].dispose()


def test_a_lead_fits_the_calibration_and_takes_the_proposal_to_the_band_editor(untrained_env, monkeypatch) -> None:
    import ui.widgets.band_editor
    from core.settings import load_settings
    from inference.models.loader import load_model
    from inference.models.registry import CXR_DENSENET
    from ui.identity import Reviewer

    running = load_model(CXR_DENSENET, load_settings(), allow_untrained=True).weights_sha256
    _seed(running)  # verdicts on the weights the app runs: a proposal for its bands
    at = new_app()
    at.switch_page("pages/analytics.py").run()
    assert not at.exception, at.exception
    assert "Site calibration from the verdicts" in texts(at)
    assert not [d for d in at.dataframe if "ECE" in d.value.columns]  # nothing fitted until asked
    at.toggle(key="an_calibration").set_value(True).run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "ECE" in d.value.columns]
    effusion = table.set_index("finding").loc["Effusion"]
    assert (effusion["cases"], effusion["present"]) == (60, 24)
    assert effusion["proposed high"].startswith("0.6")
    assert "A signed-in admin can take this proposal" in texts(at)  # open mode: nobody changes bands

    lead = Reviewer("lead@hospital.test", "Lead", signed_in=True, is_admin=True)
    monkeypatch.setattr(ui.widgets.band_editor, "auth_configured", lambda: True)
    monkeypatch.setattr(ui.widgets.band_editor, "current_reviewer", lambda: lead)
    at.run()
    at.button(key="an_to_bands").click().run()
    assert not at.exception, at.exception
    assert "Starting from the proposal of the site calibration of 60 verdicts" in texts(at)
    at.switch_page("pages/settings.py")  # AppTest stays on the page it was told: the one the button opened
    at.text_input(key="bands_version").input("2026.12-site").run()
    at.button(key="bands_save").click().run()
    assert "Bands 2026.12-site are now in force" in texts(at)

    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from storage import audit
    from storage.db import open_database

    saved = load_band_config(load_settings().edited_bands_file)
    threshold = saved.thresholds("cxr", "Effusion")
    assert 0.6 <= threshold.high <= 0.7 and threshold.low < threshold.high < threshold.critical
    with open_database(load_settings().database_url).begin() as session:
        [change] = audit.events_of_kind(session, "bands_changed")
    assert change.detail["starting_from"].startswith("site calibration of 60 verdicts")
    # Saved from the proposal: validated on the weights it was fitted on, and said so.
    assert saved.validated_with["cxr"] == ("xrv-densenet121-res224-all", running)
    at.run()
    assert f"Validated at this site on xrv-densenet121-res224-all weights {running[:12]}" in texts(at)
    assert not [w for w in at.warning if "validated on" in w.value]  # the weights it runs: no warning


def test_bands_validated_on_other_weights_are_warned_about_on_every_page(untrained_env) -> None:
    import json

    from core.settings import DEFAULT_BANDS_FILE, load_settings

    document = json.loads(DEFAULT_BANDS_FILE.read_text())
    document["version"] = "site-old"
    document["modalities"]["cxr"]["validated_with"] = {
        "model_id": "xrv-densenet121-res224-all",
        "weights_sha256": "b" * 64,
    }
    path = load_settings().edited_bands_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    at = new_app()
    at.switch_page("pages/worklist.py").run()
    assert not at.exception, at.exception
    [warning] = [w.value for w in at.sidebar.warning]
    assert "were validated on xrv-densenet121-res224-all weights bbbbbbbbbbbb" in warning
    at.switch_page("pages/settings.py").run()
    assert "Validated at this site on xrv-densenet121-res224-all weights bbbbbbbbbbbb" in texts(at)


def test_the_drift_check_runs_when_asked_and_says_when_there_are_too_few_weeks(untrained_env) -> None:
    """The known answers are in tests/unit/analytics/test_drift.py; here, the page: one week of
    runs is the reference itself, and the page says so rather than flagging or clearing anything."""
    _seed()
    at = new_app()
    at.switch_page("pages/analytics.py").run()
    assert "Drift, week by week" in texts(at) and not [d for d in at.dataframe if "PSI" in d.value.columns]
    at.toggle(key="an_drift").set_value(True).run()
    assert not at.exception, at.exception
    assert "Not enough weeks yet: drift is measured from week 5" in texts(at)
    [weeks] = [d.value for d in at.dataframe if "PSI" in d.value.columns]
    assert (
        list(weeks["finding"]) == ["Effusion"] and list(weeks["runs"]) == [60] and list(weeks["note"]) == ["reference"]
    )
    assert "Subgroups (sex, age band) are off" in texts(at)  # no patient characteristics kept by default


def test_a_site_that_keeps_patient_characteristics_gets_subgroups_from_a_real_dicom_film(
    untrained_env, samples, monkeypatch
) -> None:
    from tests.app.conftest import click_verdict, verdict_items

    monkeypatch.setenv("RETAIN_PATIENT_CHARACTERISTICS", "1")
    at = new_app()
    at.run()
    film = ("siim.dcm", (samples / "siim_sample.dcm").read_bytes(), "application/dicom")  # PatientSex M, age 62
    at.file_uploader[0].set_value(film).run()
    click_verdict(at, verdict_items(at)[0], "agree")
    at.switch_page("pages/analytics.py").run()
    at.toggle(key="an_drift").set_value(True).run()
    assert not at.exception, at.exception
    [groups] = [d.value for d in at.dataframe if "characteristic" in d.value.columns]
    assert set(zip(groups["characteristic"], groups["value"], groups["runs"])) == {
        ("sex", "M", 1),
        ("age band", "60-69", 1),
    }
    assert list(groups["agree"]) == ["100 %", "100 %"]


def test_a_reviewed_film_stores_what_drift_compares_of_its_input(untrained_env, samples) -> None:
    import json

    from sqlalchemy import text

    from core.settings import load_settings
    from storage.db import open_database
    from tests.app.test_other_pages import analysed_case

    analysed_case(samples)
    with open_database(load_settings().database_url).begin() as session:
        [params] = session.execute(text("SELECT params_json FROM analysis_runs")).scalars().all()
    profile = json.loads(params)["input"]
    assert profile["format"] == "png" and profile["rows"] > 0 and 0 < profile["mean"] < 255 and profile["std"] > 0
    at = new_app()
    at.switch_page("pages/analytics.py").run()
    at.toggle(key="an_drift").set_value(True).run()
    assert not at.exception, at.exception
    [inputs] = [d.value for d in at.dataframe if "p (KS or chi-square)" in d.value.columns]
    assert {"mean intensity", "intensity spread", "file format", "view"} <= set(inputs["measure"])
