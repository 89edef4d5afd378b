"""Labelled image folders, as the samples lay them out: ``<root>/<split>/<class folder>/<image>``.

A split is read as (path, class index) pairs in a stable order, with a manifest (each image's
path, sha256 and class, hashed in turn) that a model card records, so a card says exactly which
images trained and tested its model. Class folders are named by the data set (``notumor``,
``MildDemented``); a model's spec maps them to the labels a reader sees ("No tumour", "Mild
Impairment"). ``validation_part`` holds back a stratified share of the training split, chosen by
the seed, for early stopping and for fitting the temperature: the test split is never used for
either."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import TrainingDataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".dcm"})


@dataclass(frozen=True)
class LabelledSplit:
    name: str  # "train", "test", "validation" (held back from train)
    labels: tuple[str, ...]
    paths: tuple[Path, ...]
    classes: tuple[int, ...]  # index into labels, one per path
    root: Path

    def counts(self) -> dict[str, int]:
        found = Counter(self.classes)
        return {label: found.get(i, 0) for i, label in enumerate(self.labels)}

    def manifest_sha256(self) -> str:
        """sha256 over "relative path, file sha256, label" lines in path order: the same images
        with the same labels give the same value wherever the folder lies."""
        digest = hashlib.sha256()
        for path, k in sorted(zip(self.paths, self.classes, strict=True)):
            file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
            digest.update(f"{path.relative_to(self.root).as_posix()}\t{file_hash}\t{self.labels[k]}\n".encode())
        return digest.hexdigest()

    def subset(self, name: str, keep: Sequence[int]) -> LabelledSplit:
        return LabelledSplit(
            name, self.labels, tuple(self.paths[i] for i in keep), tuple(self.classes[i] for i in keep), self.root
        )


def read_split(root: Path, split: str, folders: Mapping[str, str], labels: Sequence[str]) -> LabelledSplit:
    """``root/split``'s images; ``folders`` maps each class folder's name to one of ``labels``."""
    where = root / split
    if not where.is_dir():
        raise TrainingDataError(f"No '{split}' folder in {root}: expected {root}/{split}/<class folder>/<images>.")
    unknown = sorted(p.name for p in where.iterdir() if p.is_dir() and p.name not in folders)
    if unknown:
        raise TrainingDataError(
            f"{where} holds class folders this model does not know ({', '.join(unknown)}); "
            f"it knows {', '.join(sorted(folders))}."
        )
    paths: list[Path] = []
    classes: list[int] = []
    for folder, label in sorted(folders.items()):
        if label not in labels:
            raise ValueError(f"Folder {folder!r} maps to {label!r}, which is not one of {list(labels)}.")
        images = (
            sorted(p for p in (where / folder).glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if (where / folder).is_dir()
            else []
        )
        if not images:
            raise TrainingDataError(f"No images for {label} in {where / folder}.")
        paths += images
        classes += [list(labels).index(label)] * len(images)
    return LabelledSplit(split, tuple(labels), tuple(paths), tuple(classes), root)


def validation_part(split: LabelledSplit, fraction: float, seed: int) -> tuple[LabelledSplit, LabelledSplit]:
    """(what is left to train on, the validation part): ``fraction`` of each class, at least one
    case of each, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.asarray(split.classes)
    held: list[int] = []
    for k in range(len(split.labels)):
        members = np.flatnonzero(classes == k)
        if len(members) < 2:
            raise TrainingDataError(
                f"{split.labels[k]} has {len(members)} training image(s): too few to hold one back."
            )
        take = max(1, round(len(members) * fraction))
        held += rng.choice(members, size=take, replace=False).tolist()
    held_set = set(held)
    kept = [i for i in range(len(split.paths)) if i not in held_set]
    return split.subset(split.name, kept), split.subset("validation", sorted(held))
