"""Explanations checked against a model whose answer we know: a CNN trained here, in seconds, on
images whose label depends only on a blob in the left lower zone."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.analyze import score_batch
from pipelines.forward import closed_form_gradcam, forward_with_features
from tests.support import synthetic_model as synth
from xai.faithfulness import faithfulness_of
from xai.region_shap import explain_regions, shap_explanation
from xai.regions import REGION_NAMES, grid_regions


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    return synth.loaded(synth.trained_once(tmp_path_factory.getbasetemp().parent))


@pytest.fixture(scope="module")
def positive_case():
    rng = np.random.default_rng(123)
    return synth.to_input(synth.make_image(rng, blob=True, distractor=True)[None])[0, 0]


def test_the_model_learned_the_task(blob_model) -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(200) < 0.5
    images = synth.to_input(np.stack([synth.make_image(rng, bool(y)) for y in labels]))
    scores = score_batch(blob_model)(images)[:, 0]
    assert np.mean((scores >= 0.5) == labels) >= 0.95


def test_shap_gives_the_blob_region_at_least_90_percent(blob_model, positive_case) -> None:
    regions = grid_regions(synth.SIZE)
    result = explain_regions(score_batch(blob_model), positive_case, regions, ["Blob"], batch_size=64)
    values, base, score = result.for_label("Blob")
    target = REGION_NAMES.index(synth.TARGET_REGION)
    assert abs(values[target]) / np.abs(values).sum() >= 0.9
    assert values[target] > 0
    assert values.sum() == pytest.approx(score - base, abs=1e-5)
    assert result.evaluations == 256 and result.max_err <= 1e-9
    explanation = shap_explanation(result, "Blob")
    assert explanation.feature_names == list(REGION_NAMES)
    assert explanation.values.sum() + explanation.base_values == pytest.approx(score, abs=1e-5)


def test_gradcam_peak_falls_inside_the_blob_region(blob_model, positive_case) -> None:
    _, features = forward_with_features(blob_model, positive_case[None, None])
    cam = closed_form_gradcam(blob_model, features[0])[0]
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert grid_regions(synth.SIZE).label_map[peak] == REGION_NAMES.index(synth.TARGET_REGION)


def test_blurring_top_cam_pixels_drops_confidence_more_than_random(blob_model, positive_case) -> None:
    _, features = forward_with_features(blob_model, positive_case[None, None])
    cam = closed_form_gradcam(blob_model, features[0])[0]
    flat = np.zeros_like(cam)
    result = faithfulness_of(score_batch(blob_model), positive_case, {"Grad-CAM": cam, "flat": flat}, 0)
    assert result["Grad-CAM"].drop_top > result["Grad-CAM"].drop_random + 0.2
    assert result["Grad-CAM"].score > 0.2
    assert result["flat"].score is None and "flat" in result["flat"].problem


def test_a_finding_that_no_masking_moves_is_reported_flat() -> None:
    regions = grid_regions(16)
    result = explain_regions(lambda x: np.full((len(x), 2), 0.3), np.zeros((16, 16), np.float32), regions, ["A", "B"])
    assert result.is_flat("A") and result.is_flat("B")
    assert np.abs(result.values).max() <= 1e-12 and result.base_values[0] == pytest.approx(0.3)
