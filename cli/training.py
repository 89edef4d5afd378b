"""``python -m inference train``: train a registered classifier on a labelled folder.

    python -m inference train --model ID --data DIR [--epochs N] [--patience P] [--seed S] [--device cpu|cuda] [--out DIR]
        [--ensemble-member]

``DIR`` holds ``train/`` and ``test/``, each with one sub-folder per class (the samples' layout).
The weights and the model card go to ``--out`` (default: the shipped models' folder). With
``--ensemble-member`` another checkpoint (another ``--seed``) joins the card already there: the
app then shows the spread of every checkpoint's scores as the uncertainty.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from core.errors import ReviewError


def add_commands(commands: argparse._SubParsersAction) -> None:
    from inference.models.spec import SHIPPED_DIR
    from inference.training.config import TrainingConfig

    defaults = TrainingConfig()
    train = commands.add_parser("train", help="train a registered classifier on a labelled folder")
    train.add_argument("--model", required=True, help="a registered classifier of exclusive classes")
    train.add_argument(
        "--data", required=True, type=Path, help="folder with train/ and test/, one sub-folder per class"
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs, help=f"at most (default {defaults.epochs})")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help=f"stop after this many epochs without a better validation loss (default {defaults.patience})",
    )
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument(
        "--out", type=Path, default=SHIPPED_DIR, help=f"where weights and card go (default {SHIPPED_DIR})"
    )
    train.add_argument(
        "--ensemble-member",
        action="store_true",
        help="add another checkpoint (another --seed, same data) to the model card in --out, for uncertainty",
    )
    train.add_argument("--json", action="store_true", help="print the model card as JSON when done")


class ProgressBar:
    """A one-line bar on a terminal; a line per tenth of each stage otherwise (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.stage = ""
        self.shown = -1
        self.started = time.monotonic()

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != self.stage:
            if self.live and self.stage:
                self.stream.write("\n")
            self.stage, self.shown, self.started = what, -1, time.monotonic()
        tenth = done * 10 // max(total, 1)
        if not self.live and tenth == self.shown:
            return
        self.shown = tenth
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "." * (width - filled)
        line = f"{what:<20} [{bar}] {done}/{total} {time.monotonic() - self.started:.0f} s"
        self.stream.write(("\r" + line) if self.live else line + "\n")
        if self.live and done == total:
            self.stream.write("\n")
            self.stage = ""
        self.stream.flush()


def train_command(args: argparse.Namespace, out: TextIO) -> int:
    from inference.models.registry import get_classifier
    from inference.training.config import TrainingConfig
    from inference.training.run import card_summary, train_from_folder

    try:
        spec = get_classifier(args.model)
    except KeyError as exc:
        raise ReviewError(str(exc).strip("'\"")) from None
    if not spec.exclusive or not spec.class_folders:
        raise ReviewError(
            f"{spec.model_id} cannot be trained here: only classifiers of exclusive classes with class folders."
        )
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ReviewError("--device cuda was asked for, but this machine has no CUDA GPU.")
    if args.epochs < 1 or args.batch_size < 2 or args.patience < 1:
        raise ReviewError("--epochs and --patience must be at least 1 and --batch-size at least 2.")
    config = TrainingConfig(
        epochs=args.epochs, seed=args.seed, device=args.device, batch_size=args.batch_size, patience=args.patience
    )
    run = train_from_folder(
        spec, args.data, config, args.out, progress=ProgressBar(sys.stderr), ensemble_member=args.ensemble_member
    )
    if args.json:
        out.write(json.dumps(run.card) + "\n")
    else:
        ev = run.card["evaluation"]
        out.write(f"{spec.model_id}: {card_summary(run.card)}\n")
        out.write(f"  macro AUC {ev['macro_auc']:.3f}, ECE {ev['ece_before_temperature']:.3f} -> {ev['ece']:.3f}\n")
        out.write(f"  weights {run.weights_path} ({run.weights_path.stat().st_size / 1e6:.1f} MB)\n")
        members = run.card["weights"].get("ensemble", [])
        if args.ensemble_member:
            out.write(f"  this checkpoint: test accuracy {members[-1]['evaluation']['accuracy']:.3f}\n")
        if members:
            out.write(
                f"  ensemble: {len(members) + 1} checkpoints (seeds {run.card['training']['seed']}, "
                f"{', '.join(str(m['seed']) for m in members)})\n"
            )
        out.write(f"  card    {run.card_path}\n")
    return 0
