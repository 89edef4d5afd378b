"""A real radiograph through the real pipeline (untrained weights, labelled)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from core.vocabulary import Band
from inference.images.preprocess import centre_crop_box, model_input
from inference.models.registry import CXR_DENSENET
from pipelines.analyze import analyze
from pipelines.forward import forward_with_features
from tests.conftest import load


def test_forward_matches_torchxrayvision_forward_without_a_second_sigmoid(samples, untrained_model) -> None:
    x = model_input(load(samples / "nih_00000001_000.png").pixels, 224)
    scores, features = forward_with_features(untrained_model, x)
    with torch.inference_mode():
        reference = untrained_model.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(scores, reference, atol=1e-6)
    assert features.shape == (1, 1024, 7, 7)


def test_all_eighteen_findings_with_bands_and_identity(samples, untrained_model, bands) -> None:
    image = load(samples / "siim_sample.dcm")
    result = analyze(untrained_model, image, bands)
    prediction = result.prediction
    assert [f.label for f in prediction.findings] == list(CXR_DENSENET.labels)
    assert all(0.0 <= f.score <= 1.0 for f in prediction.findings)
    for f in prediction.findings:
        assert f.band is bands.thresholds("cxr", f.label).band_of(f.score)
    assert prediction.model.trained is False
    assert prediction.model.model_id == CXR_DENSENET.model_id
    assert prediction.model.weights_sha256 == untrained_model.weights_sha256
    assert prediction.bands_version == bands.identity and bands.identity.startswith(bands.version + "+")
    assert len({round(f.score, 3) for f in prediction.findings}) > 5, "scores are not saturated"
    ranked = prediction.ranked()
    criticals = [f for f in ranked if f.band is Band.CRITICAL]
    assert list(ranked[: len(criticals)]) == criticals
    # Then positive, indeterminate, negative, each by score (highest first).
    keys = [(-f.band.rank, -f.score) for f in ranked]
    assert keys == sorted(keys)
    assert result.gradcam.maps.shape == (18, 224, 224)
    assert result.display.dtype == np.uint8 and result.display.shape == (512, 512)
    # Nothing is encoded by the analysis (the page encodes what it shows, once: ui.results).
    assert not any(isinstance(getattr(result, f.name), bytes) for f in dataclasses.fields(result))


def test_centre_crop_of_a_wide_image(samples) -> None:
    image = load(samples / "padchest_16747_3_1.jpg")
    box = centre_crop_box(image.shape)
    assert box.size == 885 and box.top == 0 and box.left == (1036 - 885) // 2
    x = model_input(image.pixels, 224)
    assert x.shape == (1, 1, 224, 224)
    assert -1024.0 <= x.min() and x.max() <= 1024.0
