"""The training command's settings, importable without the training code (the CLI builds its
options from these defaults on every start, and the training code imports scikit-learn and SciPy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.1
    patience: int = 3
    seed: int = 0
    device: str = "cpu"
