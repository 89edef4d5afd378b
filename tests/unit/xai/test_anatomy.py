"""Anatomical regions: derived from structure masks, and loaded through the real PSPNet path from
a weights file saved where the loader looks (no network)."""

from __future__ import annotations

import socket

import numpy as np
import torch

from inference.images.preprocess import model_input
from tests.conftest import load
from xai.anatomy import ANATOMY_SOURCE, PSPNET_FILENAME, choose_regions, load_anatomy_model, regions_from_masks
from xai.regions import GRID_SOURCE, REGION_NAMES


def synthetic_masks(size: int = 64) -> dict[str, np.ndarray]:
    empty = np.zeros((size, size), bool)
    right, left, heart = empty.copy(), empty.copy(), empty.copy()
    right[8:56, 6:26] = True  # patient's right lung is on the image's left
    left[12:56, 38:58] = True
    heart[30:56, 26:38] = True
    return {"Right Lung": right, "Left Lung": left, "Heart": heart, "Mediastinum": empty.copy(), "Aorta": empty.copy()}


def test_lungs_are_split_in_thirds_of_their_own_height() -> None:
    regions = regions_from_masks(synthetic_masks())
    assert regions is not None and regions.source == ANATOMY_SOURCE
    name = lambda r, c: REGION_NAMES[regions.label_map[r, c]]  # noqa: E731
    assert (
        name(10, 10) == "Right upper zone"
        and name(30, 10) == "Right middle zone"
        and name(50, 10) == "Right lower zone"
    )
    assert name(14, 45) == "Left upper zone" and name(50, 45) == "Left lower zone"
    assert name(40, 30) == "Heart and mediastinum" and name(2, 2) == "Rest of image"


def test_a_missing_lung_means_no_anatomical_regions() -> None:
    masks = synthetic_masks()
    masks["Left Lung"][:] = False
    assert regions_from_masks(masks) is None


def test_installed_segmentation_weights_load_offline_and_are_used(tmp_path, monkeypatch, samples) -> None:
    from torchxrayvision.baseline_models.chestx_det.ptsemseg.pspnet import pspnet

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert load_anatomy_model(tmp_path) is None, "no weights installed: no segmentation, grid regions"
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in pspnet(14).state_dict().items()}  # the release checkpoint's key format
    torch.save(state, tmp_path / PSPNET_FILENAME)
    model = load_anatomy_model(tmp_path)
    assert model is not None and "Left Lung" in model.targets
    image = model_input(load(samples / "nih_00000001_000.png").pixels, 224)[0, 0]
    regions, note = choose_regions(model, image)
    # Random weights segment nothing sensible: the grid is used, and the page is told why.
    assert (regions.source, note is not None) in {(GRID_SOURCE, True), (ANATOMY_SOURCE, False)}
    assert regions.label_map.shape == (224, 224)


def test_without_a_model_the_grid_is_used_silently() -> None:
    regions, note = choose_regions(None, np.zeros((32, 32), np.float32))
    assert regions.source == GRID_SOURCE and note is None
