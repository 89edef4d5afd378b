"""``python -m inference train``: a registered classifier trained on a labelled folder, its weights
written as a plain state_dict and its model card as JSON beside them.

The card holds what a reader or a site needs to judge the model: the architecture, labels, input
size and normalisation; the training data (source, images per class, sha256 of each split's
manifest); augmentations, epochs, seed, device and wall time; the test split's figures
(``evaluation``), with the expected calibration error before and after the temperature; and the
intended use and limits from the model's registry entry. The test split is read once, after
training, and only to be measured.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import TrainingDataError
from inference.models.spec import ClassifierSpec
from inference.training.data import LabelledSplit, read_split, validation_part
from inference.training.evaluation import Evaluation, evaluate, expected_calibration_error, fit_temperature, softmax
from inference.training.train import (
    AUGMENTATIONS,
    Progress,
    TrainedModel,
    TrainingConfig,
    initial_network,
    load_split,
    predict_logits,
    train_classifier,
)

log = logging.getLogger(__name__)

CARD_VERSION = 1


@dataclass(frozen=True)
class TrainingRun:
    weights_path: Path
    card_path: Path
    card: dict
    evaluation: Evaluation


def _split_facts(split: LabelledSplit) -> dict:
    return {"n": len(split.paths), "per_class": split.counts(), "manifest_sha256": split.manifest_sha256()}


def _sha256(path: Path) -> str:
    from inference.models.weights import sha256_of_file

    return sha256_of_file(path)


def _write_atomically(data: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # a model file and its card are public, and committed
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _half_precision(trained: TrainedModel) -> dict:
    """The weights as float16 (half the file: a ResNet-18 fits the repository's 25 MB per model), put
    back into the network so that every figure on the card is measured with what is shipped."""
    half = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in trained.module.state_dict().items()
    }
    trained.module.load_state_dict(half)  # copied into the float32 parameters: the shipped values
    return half


def _write_weights(state_dict: dict, dest: Path) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    _write_atomically(buffer.getvalue(), dest)


def train_from_folder(
    spec: ClassifierSpec,
    data_root: Path,
    config: TrainingConfig,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    ensemble_member: bool = False,
) -> TrainingRun:
    """Train ``spec`` on ``data_root/train``, measure it on ``data_root/test``, write weights and card.

    ``ensemble_member``: train another checkpoint of a model whose card is already in ``out_dir``
    (another seed, the same training data) and add it to the card's ensemble, with its own
    temperature and test figures; the card's own figures stay those of its first checkpoint.

    Raises:
        TrainingDataError: the folder does not hold the spec's classes in a train/test layout, or
            an ensemble member cannot join the card in ``out_dir``.
    """
    import torch

    if not spec.exclusive:
        raise ValueError(f"{spec.model_id} has a {spec.head} head; training covers exclusive classes (softmax).")
    folders = dict(spec.class_folders)
    train_all = read_split(data_root, "train", folders, spec.labels)
    test = read_split(data_root, "test", folders, spec.labels)  # checked now, read after training
    card_path = out_dir / (spec.card or f"{spec.model_id}.card.json")
    primary = _joinable_card(card_path, train_all, config.seed) if ensemble_member else None
    rest, held = validation_part(train_all, config.validation_fraction, config.seed)
    log.info("Training %s on %d images (%d held back for validation)", spec.model_id, len(rest.paths), len(held.paths))
    size = spec.input_size
    train_pixels = load_split(rest, size, progress)
    held_pixels = load_split(held, size, progress)
    network = initial_network(spec, config.seed)
    trained = train_classifier(
        spec, network, train_pixels, np.array(rest.classes), held_pixels, np.array(held.classes), config, progress
    )
    shipped = _half_precision(trained)
    validation_logits = predict_logits(trained.module, spec, held_pixels)
    temperature = fit_temperature(validation_logits, np.array(held.classes))  # of the stored weights
    test_logits = predict_logits(trained.module, spec, load_split(test, size, progress, exact=True))
    before = expected_calibration_error(softmax(test_logits), np.array(test.classes))
    figures = evaluate(softmax(test_logits, temperature), test.classes, spec.labels, split="test")

    if primary is not None:
        weights_path = out_dir / f"{spec.model_id}.seed{config.seed}.pt"
        _write_weights(shipped, weights_path)
        primary["weights"].setdefault("ensemble", []).append(
            {
                "file": weights_path.name,
                "sha256": _sha256(weights_path),
                "bytes": weights_path.stat().st_size,
                "seed": config.seed,
                "temperature": round(temperature, 6),
                "epochs_run": len(trained.history),
                "best_epoch": trained.best_epoch,
                "wall_s": round(trained.wall_s, 1),
                "evaluation": {
                    k: figures.as_dict()[k] for k in ("split", "n", "accuracy", "balanced_accuracy", "macro_auc", "ece")
                },
            }
        )
        _write_atomically((json.dumps(primary, indent=2, ensure_ascii=False) + "\n").encode(), card_path)
        return TrainingRun(weights_path, card_path, primary, figures)

    weights_path = out_dir / spec.weights.filename
    _write_weights(shipped, weights_path)
    card = {
        "card_version": CARD_VERSION,
        "model_id": spec.model_id,
        "display_name": spec.display_name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": {**spec.architecture_kwargs(), "adapter": spec.adapter, "head": spec.head},
        "labels": list(spec.labels),
        "class_folders": folders,
        "input": {
            "modality": spec.modality.value,
            "size": size,
            "preprocessing": "grayscale, centred square crop, area resize",
            "normalisation": spec.normalisation,
        },
        "weights": {
            "file": weights_path.name,
            "sha256": _sha256(weights_path),
            "bytes": weights_path.stat().st_size,
            "format": "plain PyTorch state_dict, float16 (torch.load weights_only=True; loaded into float32)",
        },
        "calibration": {
            "method": "temperature scaling",
            "temperature": round(temperature, 6),
            "fitted_on": f"validation part of the training split ({len(held.paths)} images)",
        },
        "training": {
            "source": spec.weights.description,
            "train": _split_facts(rest),
            "validation": _split_facts(held),
            "train_split_manifest_sha256": train_all.manifest_sha256(),
            "augmentations": list(AUGMENTATIONS),
            "sampling": "class-balanced (each class equally likely in every batch)",
            "loss": "cross-entropy",
            "optimiser": f"AdamW, one-cycle learning rate peaking at {config.learning_rate}",
            "config": asdict(config),
            "epochs_run": len(trained.history),
            "best_epoch": trained.best_epoch,
            "history": [asdict(r) for r in trained.history],
            "seed": config.seed,
            "device": config.device,
            "wall_s": round(trained.wall_s, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores" if config.device == "cpu" else config.device,
            "torch": torch.__version__,
        },
        "evaluation": {
            **figures.as_dict(),
            "test_manifest_sha256": test.manifest_sha256(),
            "ece_before_temperature": before,
            "ece_after_temperature": figures.ece,
        },
        "intended_use": spec.intended_use,
        "limitations": list(spec.limitations),
    }
    _write_atomically((json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode(), card_path)
    return TrainingRun(weights_path, card_path, card, figures)


def _joinable_card(card_path: Path, train_all: LabelledSplit, seed: int) -> dict[str, Any]:
    """The card an ensemble member joins, checked before any training: it exists, it was trained
    on the same images, and no checkpoint of it has this seed."""
    if not card_path.is_file():
        raise TrainingDataError(f"No model card at {card_path}: train the model first, then add ensemble members.")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card["training"]["train_split_manifest_sha256"] != train_all.manifest_sha256():
        raise TrainingDataError(
            f"The card at {card_path} was trained on other images: an ensemble member must be trained on the same "
            "training split."
        )
    seeds = [card["training"]["seed"], *(m["seed"] for m in card["weights"].get("ensemble", []))]
    if seed in seeds:
        raise TrainingDataError(
            f"A checkpoint with seed {seed} is already in the card (seeds {seeds}): choose another --seed."
        )
    return card


def card_summary(card: dict[str, Any]) -> str:
    """One line for a terminal or a page: what it was trained on and how it scored on unseen data."""
    train = card["training"]["train"]["n"] + card["training"]["validation"]["n"]
    ev = card["evaluation"]
    return (
        f"trained on {train:,} public MRI slices; test accuracy {ev['accuracy']:.2f} on {ev['n']} "
        f"(balanced {ev['balanced_accuracy']:.2f}); research use only"
    )
