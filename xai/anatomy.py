"""Anatomical regions from torchxrayvision's chest anatomy segmentation (PSPNet), when its weights
are installed; otherwise the caller falls back to the fixed grid (``xai.regions``).

The weights file is looked for in the model weights directory under its release name; nothing is
downloaded here. Lungs are split into upper, middle and lower zones by thirds of each lung's own
height; heart, mediastinum and aorta form one region; the rest is everything else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from xai.regions import REGION_NAMES, RegionSet, grid_regions

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PSPNET_FILENAME = "pspnet_chestxray_best_model_4.pth"
PSPNET_URL = f"https://github.com/mlmed/torchxrayvision/releases/download/v1/{PSPNET_FILENAME}"
ANATOMY_SOURCE = "anatomy segmentation (torchxrayvision PSPNet)"
_MIN_SHARE = 0.005  # a structure covering less than 0.5% of the image is treated as not found


def load_anatomy_model(weights_dir: Path) -> "torch.nn.Module | None":
    """torchxrayvision's PSPNet with the installed weights, or None when they are not installed."""
    path = weights_dir / PSPNET_FILENAME
    if not path.is_file():
        return None
    from inference.models.loader import import_xrv

    model: torch.nn.Module = import_xrv().baseline_models.chestx_det.PSPNet(cache_dir=str(weights_dir))
    log.info("Loaded the chest anatomy segmentation from %s", path)
    return model.eval()


def regions_from_masks(masks: dict[str, np.ndarray]) -> RegionSet | None:
    """Eight named regions from boolean (S, S) structure masks, or None if a lung or the heart is missing."""
    right, left = masks["Right Lung"], masks["Left Lung"]
    centre = masks["Heart"] | masks["Mediastinum"] | masks.get("Aorta", np.zeros_like(right))
    size = right.shape[0]
    if min(right.mean(), left.mean(), centre.mean()) < _MIN_SHARE:
        return None
    label_map = np.full(right.shape, REGION_NAMES.index("Rest of image"), dtype=np.int8)
    label_map[centre] = REGION_NAMES.index("Heart and mediastinum")
    for first_zone, lung in ((0, right), (3, left)):
        rows = np.nonzero(lung.any(axis=1))[0]
        top, height = rows.min(), rows.max() + 1 - rows.min()
        row_index = np.arange(size)[:, None]
        zone = np.clip((row_index - top) * 3 // max(height, 1), 0, 2)
        label_map[lung] = (first_zone + np.broadcast_to(zone, lung.shape))[lung]
    label_map.setflags(write=False)
    return RegionSet(names=REGION_NAMES, label_map=label_map, source=ANATOMY_SOURCE)


def anatomy_masks(model: "torch.nn.Module", image: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks on the (S, S) model-input grid, one per structure the PSPNet knows."""
    import cv2
    import torch

    size = image.shape[0]
    x = cv2.resize(image.astype(np.float32), (512, 512), interpolation=cv2.INTER_LINEAR)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)[None, None])[0]
    probabilities = torch.sigmoid(logits).numpy()
    # PSPNet's structure names; Module.__getattr__ types every attribute as Tensor | Module.
    targets = cast("list[str]", model.targets)
    return {
        target: cv2.resize((probabilities[i] > 0.5).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
        for i, target in enumerate(targets)
    }


def choose_regions(model: "torch.nn.Module | None", image: np.ndarray) -> tuple[RegionSet, str | None]:
    """Anatomical regions when the segmentation is installed and finds the lungs and heart, else
    the fixed grid; the note says why the grid was used when anatomy was available."""
    size = image.shape[0]
    if model is None:
        return grid_regions(size), None
    regions = regions_from_masks(anatomy_masks(model, image))
    if regions is None:
        return grid_regions(
            size
        ), "The anatomy segmentation did not find both lungs and the heart; the fixed grid was used."
    return regions, None
