"""Train a registered classifier of exclusive classes on a labelled folder.

Images pass through the app's own front door and preprocessing (``load_image``, the centred square,
the resize of ``model_input``), so a trained model sees at inference exactly what it saw in
training. The training split is held in memory at the model's input size (uint8: 5,383 slices at
160 px are 138 MB). Each step draws a class-balanced batch (every class as likely, whatever its
count), augments it on the fly with changes an MRI slice can show from one scanner or export to
another (``AUGMENTATIONS``), and minimises cross-entropy. After each epoch the validation part
(held back from the training split, never the test split) is scored; the epoch with the best
validation loss is kept and training stops after ``patience`` epochs without improvement. The
temperature is then fitted on the validation part. Everything random draws from one seed: the same
seed, data and device give the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.images.ingest import load_image
from inference.images.preprocess import NORMALISATIONS, centre_crop_box, crop, resize_square
from inference.models.spec import ClassifierSpec
from inference.training.config import TrainingConfig
from inference.training.data import LabelledSplit
from inference.training.evaluation import fit_temperature

log = logging.getLogger(__name__)

AUGMENTATIONS = (
    "horizontal flip (p 0.5)",
    "rotation within ±10°",
    "scale 0.9-1.1",
    "shift within ±6% of the side",
    "brightness ±10%",
    "contrast ±15%",
    "gamma 0.8-1.25",
    "down- and up-sampling to 50-100% of the side (p 0.3), as exports at other sizes do",
)
MAX_IMAGE_BYTES = 50_000_000
MAX_IMAGE_PIXELS = 64_000_000
HASH_KEY = b"training: no patient identifiers are kept"  # the front door hashes DICOM patient IDs

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    seconds: float


@dataclass
class TrainedModel:
    module: Any  # the network, in eval mode, with the best epoch's weights
    temperature: float
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    wall_s: float = 0.0


def square_pixels(path_bytes: bytes, name: str, size: int) -> np.ndarray:
    """(size, size) float: the image as the app reads it, centre-cropped and resized (``model_input``
    before normalisation)."""
    image = load_image(path_bytes, name, max_bytes=MAX_IMAGE_BYTES, max_pixels=MAX_IMAGE_PIXELS, hash_key=HASH_KEY)
    return resize_square(crop(image.pixels, centre_crop_box(image.pixels.shape)), size)


def load_split(split: LabelledSplit, size: int, progress: Progress | None = None, *, exact: bool = False) -> np.ndarray:
    """Every image of ``split`` at the model's input size: (N, size, size), uint8 (rounded, to hold a
    training split in memory) or, ``exact``, float32 as the app feeds the model (for measuring)."""
    out = np.empty((len(split.paths), size, size), dtype=np.float32 if exact else np.uint8)
    for i, path in enumerate(split.paths):
        square = square_pixels(path.read_bytes(), path.name, size)
        out[i] = square if exact else np.clip(np.rint(square), 0, 255)
        if progress is not None and (i % 200 == 0 or i == len(split.paths) - 1):
            progress(f"reading {split.name}", i + 1, len(split.paths))
    return out


def augment(batch: Any, generator: Any) -> Any:
    """Random, label-preserving changes to (B, 1, S, S) float pixels in 0..255 (``AUGMENTATIONS``)."""
    import torch
    import torch.nn.functional as F

    b, _, s, _ = batch.shape

    def uniform(low: float, high: float) -> Any:
        return low + (high - low) * torch.rand(b, generator=generator)

    # Down- and up-sampling first, on the original pixels.
    small = torch.rand(b, generator=generator) < 0.3
    if small.any():
        side = max(8, int(s * float(uniform(0.5, 1.0)[0])))
        resampled = F.interpolate(
            F.interpolate(batch[small], size=side, mode="area"), size=s, mode="bilinear", align_corners=False
        )
        batch = batch.clone()
        batch[small] = resampled
    angle = uniform(-10.0, 10.0) * math.pi / 180.0
    scale = uniform(0.9, 1.1)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=generator) * 2.0 - 1.0) * 0.12  # grid units: 2 = the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    unit = (moved / 255.0).clamp(0.0, 1.0)
    gamma = uniform(0.8, 1.25).view(b, 1, 1, 1)
    unit = unit.clamp_min(1e-6) ** gamma
    mean = unit.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(0.85, 1.15).view(b, 1, 1, 1)
    brightness = uniform(0.9, 1.1).view(b, 1, 1, 1)
    return ((unit - mean) * contrast + mean).mul(brightness).clamp(0.0, 1.0) * 255.0


def _logits(module: Any, pixels: np.ndarray, normalise: Callable, device: str, batch_size: int = 64) -> np.ndarray:
    import torch

    out = []
    module.eval()
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            x = torch.from_numpy(pixels[start : start + batch_size]).float()[:, None].to(device)
            out.append(module(normalise(x)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def predict_logits(module: Any, spec: ClassifierSpec, pixels: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(N, C) logits of (N, S, S) uint8 squares, as the app's preprocessing feeds them."""
    return _logits(module, pixels, NORMALISATIONS[spec.normalisation], device)


def initial_network(spec: ClassifierSpec, seed: int) -> Any:
    """The spec's network with its first weights drawn from ``seed`` alone, not from whatever drew
    from torch's global generator before (another training, a test run earlier in the process):
    with ``train_classifier``, the same seed gives the same weights."""
    import torch

    from inference.models.adapters import adapter_for

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return adapter_for(spec).build(spec)


def train_classifier(
    spec: ClassifierSpec,
    network: Any,
    train_pixels: np.ndarray,
    train_classes: np.ndarray,
    validation_pixels: np.ndarray,
    validation_classes: np.ndarray,
    config: TrainingConfig,
    progress: Progress | None = None,
) -> TrainedModel:
    """Train ``network`` (built by the spec's adapter) in place and return it with its temperature."""
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    normalise = NORMALISATIONS[spec.normalisation]
    device = config.device
    module = network.to(device)
    n_classes = len(spec.labels)
    counts = np.bincount(train_classes, minlength=n_classes)
    if (counts == 0).any():
        missing = [spec.labels[k] for k in np.flatnonzero(counts == 0)]
        raise ValueError(f"No training images of {', '.join(missing)}.")
    weights = torch.from_numpy(1.0 / counts[train_classes]).double()
    steps = max(1, len(train_classes) // config.batch_size)
    optimiser = torch.optim.AdamW(module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=steps * config.epochs, pct_start=0.15
    )
    pixels = torch.from_numpy(train_pixels)
    classes = torch.from_numpy(np.asarray(train_classes, dtype=np.int64))
    validation_truth = np.asarray(validation_classes, dtype=np.int64)
    best_loss, best_epoch, best_state, waited = math.inf, 0, None, 0
    history: list[EpochRecord] = []
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        module.train()
        total = 0.0
        for step in range(steps):
            picked = torch.multinomial(weights, config.batch_size, replacement=True, generator=generator)
            x = augment(pixels[picked].float()[:, None], generator).to(device)
            loss = F.cross_entropy(module(normalise(x)), classes[picked].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach())
            if progress is not None:
                progress(f"epoch {epoch} of {config.epochs}", step + 1, steps)
        logits = _logits(module, validation_pixels, normalise, device)
        validation_loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(validation_truth)).item())
        accuracy = float((logits.argmax(axis=1) == validation_truth).mean())
        record = EpochRecord(epoch, total / steps, validation_loss, accuracy, time.perf_counter() - epoch_started)
        history.append(record)
        log.info(
            "Epoch %d: training loss %.4f, validation loss %.4f, validation accuracy %.3f (%.0f s)",
            epoch, record.train_loss, validation_loss, accuracy, record.seconds,
        )  # fmt: skip
        if validation_loss < best_loss:
            best_loss, best_epoch, waited = validation_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        else:
            waited += 1
            if waited >= config.patience:
                log.info("No better validation loss for %d epochs: stopping after epoch %d.", waited, epoch)
                break
    assert best_state is not None
    module.load_state_dict(best_state)
    module.eval()
    temperature = fit_temperature(_logits(module, validation_pixels, normalise, device), validation_truth)
    return TrainedModel(module.cpu(), temperature, best_epoch, history, time.perf_counter() - started)
