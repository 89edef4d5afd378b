"""Region SHAP, faithfulness and the method comparison through the review page, on a model whose
answer is known (a CNN trained in the test to find a blob in the left lower zone)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import click_verdict, confirm_radiograph, new_app, texts
from tests.support import synthetic_model as synth
from ui.session import compare_cams_key, start_shap_key
from xai.regions import REGION_NAMES


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    return synth.loaded(synth.trained_once(tmp_path_factory.getbasetemp().parent))


@pytest.fixture
def app_with_blob_model(blob_model, monkeypatch):
    import ui.models

    monkeypatch.setattr(ui.models, "classifier", lambda: blob_model)
    return blob_model


def blob_png() -> bytes:
    image = synth.make_image(np.random.default_rng(123), blob=True)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(image).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def shap_job():
    import ui.resources

    (job,) = ui.resources.jobs().local._jobs.values()
    return job


def test_region_shap_runs_in_the_background_and_explains_the_blob(app_with_blob_model) -> None:
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("blob.png", blob_png(), "image/png")).run()
    confirm_radiograph(at)
    assert not at.exception
    assert at.button(key=start_shap_key(1)).label == "Explain the scores with region SHAP"
    at.button(key=start_shap_key(1)).click().run()
    assert not at.exception
    job = shap_job()
    # The reviewer keeps working while SHAP runs.
    click_verdict(at, "Blob", "agree")
    assert "Saved: Blob — agree" in texts(at)
    assert job.wait(120) and job.error is None
    at.run()
    assert not at.exception
    said = texts(at)
    assert "fixed grid on the centred crop (not anatomy)" in said and "256 model evaluations" in said
    assert any(c.startswith("Regions tinted by their effect on Blob") for i in at.image for c in i.captions)
    result = job.result
    values, base, score = result.for_label("Blob")
    target = REGION_NAMES.index(synth.TARGET_REGION)
    assert abs(values[target]) / np.abs(values).sum() >= 0.9
    assert values.sum() == pytest.approx(score - base, abs=1e-5)
    import json

    waterfall = json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]
    assert waterfall["y"][1] == synth.TARGET_REGION, "the blob's region is the largest step of the waterfall on screen"
    from sqlalchemy import create_engine, text

    from core.settings import load_settings

    engine = create_engine(load_settings().database_url)
    with engine.connect() as connection:
        (row,) = connection.execute(text("SELECT run_id, evaluations, values_json FROM region_explanations")).all()
    engine.dispose()
    assert row[0] == 1 and row[1] == 256 and "Blob" in row[2]


def test_faithfulness_is_shown_beside_the_heatmap_and_methods_compare(app_with_blob_model) -> None:
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("blob.png", blob_png(), "image/png")).run()
    confirm_radiograph(at)
    # Five model runs: not on opening the case (they held the page and the viewer for seconds), on request.
    assert not [c for c in at.caption if c.value.startswith("Faithfulness")]
    at.button(key="check_faithfulness").click().run()
    faith = [c.value for c in at.caption if c.value.startswith("Faithfulness")]
    assert len(faith) == 1
    score = float(faith[0].split()[1].rstrip(":"))
    assert score > 0.2, "blurring the Grad-CAM hot spot (the blob) drops the score far more than chance"
    [compare] = [t for t in at.toggle if (t.key or "").startswith(compare_cams_key(""))]
    compare.set_value(True).run()
    assert not at.exception
    headings = [
        c
        for i in at.image
        for c in i.captions
        if c.split(":")[0] in ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "HiRes-CAM", "Layer-CAM", "Eigen-CAM")
    ]
    assert len(headings) + sum("not scored" in w.value or "flat" in w.value for w in at.warning) >= 6
    assert "Ranked by faithfulness for Blob" in texts(at)


def test_cases_page_shows_the_stored_waterfall(app_with_blob_model) -> None:
    at = new_app()
    at.run()
    at.file_uploader[0].set_value(("blob.png", blob_png(), "image/png")).run()
    confirm_radiograph(at)
    at.button(key=start_shap_key(1)).click().run()
    assert shap_job().wait(120)
    at.switch_page("pages/cases.py").run()
    assert not at.exception
    assert "Region SHAP stored with this run" in texts(at)
    assert len(at.get("plotly_chart")) == 2


@pytest.fixture(autouse=True)
def fresh_jobs():
    yield
    import ui.resources

    for job in list(ui.resources.jobs().local._jobs.values()):
        job.wait(120)
