"""The brain MRI models this project trained and ships: their weights load with strict keys, are the
files their cards were measured with, stay small, and score on the samples' test splits exactly
what their cards say, through the app's own front door and preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WeightsInvalid
from core.settings import load_settings
from inference.models.cards import card_of, check_shipped_weights
from inference.models.loader import load_model
from inference.models.registry import BRAIN_DEMENTIA, BRAIN_TUMOUR
from inference.models.weights import sha256_of_file
from tests.conftest import SAMPLES, load, require_samples

SHIPPED = [(BRAIN_TUMOUR, "mri_tumour"), (BRAIN_DEMENTIA, "mri_dementia")]
MAX_WEIGHTS_BYTES = 25_000_000


@pytest.mark.parametrize("spec", [s for s, _ in SHIPPED], ids=lambda s: s.model_id)
def test_shipped_weights_are_the_cards_and_load_as_trained(spec) -> None:
    path = spec.weights.shipped_path()
    card = card_of(spec)
    assert path is not None and path.is_file() and card is not None
    assert path.stat().st_size <= MAX_WEIGHTS_BYTES
    assert sha256_of_file(path) == card["weights"]["sha256"]
    loaded = load_model(spec, load_settings(), allow_untrained=False, device="cpu")  # strict keys
    assert loaded.trained and loaded.weights_sha256 == card["weights"]["sha256"]
    assert spec.temperature == card["calibration"]["temperature"]
    assert card["labels"] == list(spec.labels) and card["input"]["size"] == spec.input_size
    with pytest.raises(WeightsInvalid, match="not the file its model card was measured with"):
        check_shipped_weights(spec, path, "0" * 64)


@pytest.mark.parametrize(("spec", "folder"), SHIPPED, ids=lambda s: getattr(s, "model_id", s))
def test_the_cards_test_figures_are_what_the_app_scores_on_the_test_split(spec, folder: str) -> None:
    """Every test slice through ``load_image`` and the model's adapter, as the review page runs it."""
    import torch

    from inference.images.preprocess import model_input
    from inference.models.adapters import as_input
    from pipelines.classify import expected_image

    require_samples()
    card = card_of(spec)
    loaded = load_model(spec, load_settings(), allow_untrained=False, device="cpu")
    folders = dict(spec.class_folders)
    truth, inputs = [], []
    for class_folder, label in folders.items():
        for path in sorted((SAMPLES / folder / "test" / class_folder).iterdir()):
            image = load(path, expected=expected_image(spec))
            inputs.append(model_input(image.pixels, spec.input_size, spec.normalisation)[0])
            truth.append(spec.labels.index(label))
    with torch.inference_mode():
        scores = loaded.adapter.score(spec, loaded.module, as_input(np.stack(inputs), "cpu")).numpy()
    predicted = scores.argmax(axis=1)
    assert len(truth) == card["evaluation"]["n"]
    assert float((predicted == np.array(truth)).mean()) == pytest.approx(card["evaluation"]["accuracy"], abs=1e-9)
    confusion = np.zeros((4, 4), dtype=int)
    np.add.at(confusion, (np.array(truth), predicted), 1)
    assert confusion.tolist() == [list(row) for row in card["evaluation"]["confusion"]]
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_the_tumour_model_reaches_the_issues_accuracy() -> None:
    assert card_of(BRAIN_TUMOUR)["evaluation"]["accuracy"] >= 0.93
