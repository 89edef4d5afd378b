"""Region SHAP on a real radiograph through the real DenseNet (untrained weights)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.images.preprocess import model_input
from pipelines.analyze import score_batch
from tests.conftest import CXR, load, require_samples
from xai.masking import strongly_blurred
from xai.region_shap import coalition_table, explain_regions, shap_exact_reference, shapley_from_table
from xai.regions import REGION_NAMES, grid_regions


@pytest.fixture(scope="module")
def explained(untrained_model):
    """Region SHAP of a real radiograph, once for the module (256 DenseNet evaluations, about 17 s
    on one thread), with the image, the scorer and the coalition table the explanation came from:
    every batch the scorer answered, in order."""
    require_samples()
    image = model_input(load(CXR / "nih_00000001_000.png").pixels, 224)[0, 0]
    predict = score_batch(untrained_model)
    answered: list[np.ndarray] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        answered.append(predict(batch))
        return answered[-1]

    progress: list[float] = []
    result = explain_regions(
        recording,
        image,
        grid_regions(224),
        untrained_model.spec.labels,
        progress=lambda fraction, _text: progress.append(fraction),
    )
    return result, image, predict, np.concatenate(answered), progress


def test_values_add_up_for_all_18_findings_from_256_shared_evaluations(explained) -> None:
    result, image, predict, _table, progress = explained
    assert result.values.shape == (18, 8) and result.region_names == REGION_NAMES
    assert result.evaluations == 256
    assert result.max_err <= 1e-9
    np.testing.assert_allclose(result.values.sum(axis=1), result.scores - result.base_values, atol=1e-5)
    np.testing.assert_allclose(result.scores, predict(image[None, None])[0], atol=1e-5)
    everything_hidden = predict(strongly_blurred(image)[None, None])[0]
    np.testing.assert_allclose(result.base_values, everything_hidden, atol=1e-5)
    assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)


def test_values_are_what_shaps_exact_explainer_gives_on_the_same_scores(explained) -> None:
    # shap's Exact explainer is the reference implementation; the app computes the same values
    # from the same coalition table without shap's numba compile.
    result, image, predict, table, _progress = explained
    assert table.shape == (256, 18)
    # The table is what coalition_table builds: spot-check rows against composites scored afresh.
    regions = grid_regions(224)
    again = coalition_table(lambda batch: predict(batch[[0, 37, 255]]), image, regions, batch_size=256)
    np.testing.assert_allclose(again, table[[0, 37, 255]], atol=1e-5)
    values, base = shap_exact_reference(table, 8)
    np.testing.assert_allclose(result.values, values, atol=1e-12)
    np.testing.assert_allclose(shapley_from_table(table, 8).T, values, atol=1e-12)
    np.testing.assert_allclose(result.base_values, base, atol=1e-12)


def test_shapley_values_of_games_with_known_answers() -> None:
    rng = np.random.default_rng(5)
    keys = np.arange(256)
    bits = (keys[:, None] >> np.arange(8)) & 1  # (256, 8): region i shown
    # An additive game: each region adds its own amount, so its value is exactly that amount.
    amounts = rng.normal(size=(8, 3))
    np.testing.assert_allclose(shapley_from_table(bits @ amounts, 8), amounts, atol=1e-12)
    # A pure interaction: 1 only when regions 0 and 1 are both shown; they split it, others get 0.
    both = (bits[:, 0] & bits[:, 1]).astype(float)[:, None]
    np.testing.assert_allclose(shapley_from_table(both, 8)[:, 0], [0.5, 0.5, 0, 0, 0, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match="256"):
        shapley_from_table(np.zeros((128, 1)), 8)


def test_regions_cover_the_image_once() -> None:
    regions = grid_regions(224)
    counts = np.bincount(regions.label_map.ravel(), minlength=8)
    assert counts.sum() == 224 * 224 and np.all(counts > 0)
    # the patient's right lung is on the image's left
    assert regions.label_map[60, 40] == REGION_NAMES.index("Right upper zone")
    assert regions.label_map[170, 180] == REGION_NAMES.index("Left lower zone")
    assert regions.label_map[120, 112] == REGION_NAMES.index("Heart and mediastinum")
    assert regions.label_map[3, 3] == REGION_NAMES.index("Rest of image")
