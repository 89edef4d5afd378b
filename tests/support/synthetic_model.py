"""A small CNN trained in seconds on synthetic radiograph-like images whose label depends only on a
blob in one region (the left lower zone of the region grid). Shaped like the torchxrayvision
DenseNet (features -> ReLU -> global average pool -> linear, calibrated by op_norm) so that the
app's own analysis, Grad-CAM, SHAP and faithfulness code run on it unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from inference.models.loader import LoadedModel
from inference.models.registry import CXR_DENSENET
from xai.regions import REGION_NAMES, grid_regions

SIZE = 64
TARGET_REGION = "Left lower zone"
SPEC = replace(
    CXR_DENSENET,
    model_id="synthetic-blob-cnn",
    display_name="synthetic blob detector (test model)",
    labels=("Blob",),
    input_size=SIZE,
    op_thresholds=(0.5,),
    cam_target_layer="features.cam_relu",
)


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 1024.0


class BlobNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("scale", Scale())
        self.features.add_module("conv1", nn.Conv2d(1, 8, 5, padding=2))
        self.features.add_module("relu1", nn.ReLU())
        self.features.add_module("pool1", nn.MaxPool2d(2))
        self.features.add_module("conv2", nn.Conv2d(8, 16, 3, padding=1))
        self.features.add_module("relu2", nn.ReLU())
        self.features.add_module("pool2", nn.MaxPool2d(2))
        self.features.add_module("conv3", nn.Conv2d(16, 16, 3, padding=1))
        self.classifier = nn.Linear(16, 1)
        self.register_buffer("op_threshs", torch.tensor([0.5]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.features(x)).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from inference.models.loader import import_xrv

        return import_xrv().models.op_norm(torch.sigmoid(self.logits(x)), self.op_threshs)


def _blob(size: int, row: float, col: float, radius: float) -> np.ndarray:
    rr, cc = np.mgrid[0:size, 0:size]
    return np.exp(-((rr - row) ** 2 + (cc - col) ** 2) / (2 * radius**2))


def target_centre() -> tuple[float, float]:
    mask = grid_regions(SIZE).mask(REGION_NAMES.index(TARGET_REGION))
    rows, cols = np.nonzero(mask)
    return float(rows.mean()), float(cols.mean())


def make_image(rng: np.random.Generator, blob: bool, distractor: bool = True) -> np.ndarray:
    """0..255 grayscale: smooth background, maybe a square distractor anywhere, maybe the blob."""
    import cv2

    noise = cv2.resize(rng.random((8, 8)).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    image = 60 + 60 * noise + rng.normal(0, 4, (SIZE, SIZE))
    if distractor:
        top, left = rng.integers(2, SIZE - 12, size=2)
        image[top : top + 8, left : left + 8] -= 50  # a dark square: present or not, it never decides the label
    if blob:
        row, col = target_centre()
        image += 110 * _blob(SIZE, row + rng.uniform(-2, 2), col + rng.uniform(-2, 2), 4.0)
    return np.clip(image, 0, 255).astype(np.float32)


def _scatter_blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Augmentation: blur a random scattered 20% of pixels in half the images, so that scattered
    masking (the faithfulness baseline) is not out of distribution for such a small network."""
    from xai.masking import composite, strongly_blurred

    if rng.random() < 0.5:
        return image
    return composite(image, strongly_blurred(image), rng.random(image.shape) < 0.2)


def to_input(images: np.ndarray) -> np.ndarray:
    return ((images / 255.0 * 2.0 - 1.0) * 1024.0)[:, None].astype(np.float32)


def train(seed: int = 0, steps: int = 250) -> BlobNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = BlobNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(steps):
        labels = rng.random(64) < 0.5
        images = np.stack(
            [_scatter_blur(rng, make_image(rng, bool(y), distractor=bool(rng.random() < 0.7))) for y in labels]
        )
        logits = model.logits(torch.from_numpy(to_input(images)))[:, 0]
        loss = loss_fn(logits, torch.from_numpy(labels.astype(np.float32)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def trained_once(folder: Path) -> BlobNet:
    """``train()``'s model, trained once for all the test processes that share ``folder`` (pytest's
    temporary root: the xdist workers' parent folder) and kept there under this file's hash, so a
    change to the training code trains afresh. Two modules of two workers each trained it (9 s)."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    kept = folder / f"synthetic-blob-cnn-{digest}.pt"
    with FileLock(str(kept) + ".lock"):
        if not kept.exists():
            torch.save(train().state_dict(), kept)
    model = BlobNet()
    model.load_state_dict(torch.load(kept, weights_only=True))
    return model.eval()


def loaded(model: BlobNet) -> LoadedModel:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(spec=SPEC, module=model, weights_sha256="0" * 64, trained=True, weights_path=None, device="cpu")
