"""Region SHAP on a real radiograph through the real DenseNet (untrained weights)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.images.preprocess import model_input
from pipelines.analyze import score_batch
from tests.conftest import load
from xai.masking import strongly_blurred
from xai.region_shap import explain_regions
from xai.regions import REGION_NAMES, grid_regions


def test_values_add_up_for_all_18_findings_from_256_shared_evaluations(samples, untrained_model) -> None:
    image = model_input(load(samples / "nih_00000001_000.png").pixels, 224)[0, 0]
    predict = score_batch(untrained_model)
    progress: list[float] = []
    result = explain_regions(
        predict,
        image,
        grid_regions(224),
        untrained_model.spec.labels,
        progress=lambda fraction, _text: progress.append(fraction),
    )
    assert result.values.shape == (18, 8) and result.region_names == REGION_NAMES
    assert result.evaluations == 256
    assert result.max_err <= 1e-9
    np.testing.assert_allclose(result.values.sum(axis=1), result.scores - result.base_values, atol=1e-5)
    np.testing.assert_allclose(result.scores, predict(image[None, None])[0], atol=1e-5)
    everything_hidden = predict(strongly_blurred(image)[None, None])[0]
    np.testing.assert_allclose(result.base_values, everything_hidden, atol=1e-5)
    assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)


def test_regions_cover_the_image_once() -> None:
    regions = grid_regions(224)
    counts = np.bincount(regions.label_map.ravel(), minlength=8)
    assert counts.sum() == 224 * 224 and np.all(counts > 0)
    # the patient's right lung is on the image's left
    assert regions.label_map[60, 40] == REGION_NAMES.index("Right upper zone")
    assert regions.label_map[170, 180] == REGION_NAMES.index("Left lower zone")
    assert regions.label_map[120, 112] == REGION_NAMES.index("Heart and mediastinum")
    assert regions.label_map[3, 3] == REGION_NAMES.index("Rest of image")
