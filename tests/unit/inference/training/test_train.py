"""The training loop on a tiny real subset (two tumour classes, 12 slices each, one epoch): what CI
can afford, and enough to show it runs the app's preprocessing, is deterministic for a seed, and
hands back a model and a temperature the evaluation can use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.vocabulary import Modality
from inference.models.spec import ClassifierSpec, WeightsSource
from inference.training.data import LabelledSplit, read_split, validation_part
from inference.training.evaluation import evaluate, softmax
from inference.training.train import (
    TrainingConfig,
    augment,
    initial_network,
    load_split,
    predict_logits,
    train_classifier,
)
from tests.conftest import SAMPLES, require_samples

TWO = ClassifierSpec(
    model_id="test-tumour-two-classes",
    modality=Modality.MR,
    display_name="Test ResNet-18 (glioma or none)",
    adapter="torchvision",
    architecture=(("name", "resnet18"), ("in_channels", 1), ("first_conv", "conv1"), ("head", "fc")),
    labels=("Glioma", "No tumour"),
    input_size=64,
    normalisation="unit",
    cam_target_layer="layer4",
    bands_key="mri",
    weights=WeightsSource(description="none", url="", filename="none.pt", installed="none.pt"),
)
FOLDERS = {"glioma": "Glioma", "notumor": "No tumour"}


def tiny(split: LabelledSplit, per_class: int) -> LabelledSplit:
    keep = [i for k in range(2) for i in [j for j, c in enumerate(split.classes) if c == k][:per_class]]
    return split.subset(split.name, keep)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple:
    require_samples()
    root = tmp_path_factory.mktemp("two-classes")
    for split in ("train", "test"):
        for folder in FOLDERS:
            (root / split / folder).mkdir(parents=True)
            for path in sorted((SAMPLES / "mri_tumour" / split / folder).iterdir())[:12]:
                (root / split / folder / path.name).symlink_to(path)
    train = read_split(root, "train", FOLDERS, TWO.labels)
    rest, held = validation_part(train, 0.25, seed=0)
    return load_split(rest, 64), np.array(rest.classes), load_split(held, 64), np.array(held.classes), root


def train_once(data, seed: int = 0):
    pixels, classes, held_pixels, held_classes, _ = data
    network = initial_network(TWO, seed)
    config = TrainingConfig(epochs=1, batch_size=8, seed=seed)
    return train_classifier(TWO, network, pixels, classes, held_pixels, held_classes, config)


def test_one_epoch_gives_a_model_a_temperature_and_figures(data) -> None:
    trained = train_once(data)
    assert trained.best_epoch == 1 and len(trained.history) == 1 and trained.temperature > 0
    test = read_split(data[4], "test", FOLDERS, TWO.labels)
    logits = predict_logits(trained.module, TWO, load_split(test, 64))
    figures = evaluate(softmax(logits, trained.temperature), test.classes, TWO.labels, split="test", bootstrap=50)
    assert figures.n == 24 and sum(map(sum, figures.confusion)) == 24


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(data) -> None:
    first = train_once(data)
    torch.rand(7)  # whatever drew from torch's generator in between (another test on this worker)
    again, other = train_once(data), train_once(data, seed=1)
    a, b, c = (m.module.state_dict()["fc.weight"] for m in (first, again, other))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmentation_keeps_the_range_and_shape_and_changes_the_image(data) -> None:
    batch = torch.from_numpy(data[0][:8]).float()[:, None]
    changed = augment(batch, torch.Generator().manual_seed(0))
    assert changed.shape == batch.shape and float(changed.min()) >= 0 and float(changed.max()) <= 255
    assert not torch.allclose(changed, batch)
    assert torch.equal(changed, augment(batch, torch.Generator().manual_seed(0)))
