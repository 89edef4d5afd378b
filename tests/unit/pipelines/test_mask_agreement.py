"""A reader's uploaded mask against a model's masks of the same volume: the pairs found from the
stored measurements, and Dice computed from the kept label maps, structure by structure."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.results import Segmentation
from core.types import ModelIdentity
from pipelines.mask_agreement import compare, dice, mask_pairs
from storage import reporting, repository
from storage.db import open_database
from storage.image_store import ImageStore
from tests.unit.storage.test_segmentation_storage import FACTS, label_data, measure, segmentation


def uploaded(extra: int) -> Segmentation:
    """The model's structures, as a reader's corrected mask of the same volume would carry them
    (a SEG exported from the app keeps its segment names)."""
    model = segmentation()
    data = label_data(extra)
    label_map = replace(
        model.label_map,
        data=data,
        source="uploaded:corrected.nii.gz",
        sha256=hashlib.sha256(data.tobytes()).hexdigest(),
    )
    return replace(
        model,
        label_map=label_map,
        model=ModelIdentity("uploaded-mask", label_map.sha256, True, "n/a"),
        measurements=tuple(measure(data, s) for s in label_map.structures),
    )


def seeded(tmp_path: Path, *segmentations: Segmentation):
    sessions = open_database(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    store = ImageStore(tmp_path / "images", 30)
    with sessions.begin() as s:
        for seg in segmentations:
            repository.store_segmentation(s, FACTS, seg)
            store.put_label_map(seg.label_map)
    return sessions, store


def test_dice_of_two_masks() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice(a, b) is None  # both empty: nothing to agree on, not a perfect 1
    a[0, :2] = True
    b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0


def test_a_readers_corrected_mask_is_compared_with_the_models_structure_by_structure(tmp_path: Path) -> None:
    sessions, store = seeded(tmp_path, segmentation(), uploaded(extra=1))
    with sessions.begin() as s:
        [pair] = mask_pairs(reporting.structure_volumes(s))
        model = repository.get_run(s, pair.model_run, repository.SegmentationRunRecord)
        mask = repository.get_run(s, pair.mask_run, repository.SegmentationRunRecord)
    sessions.kw["bind"].dispose()
    assert (pair.model_id, pair.trained, pair.shared) == (
        "seg-test-unet",
        False,
        ("Liver", "Tumour", "Liver and tumour"),
    )
    found = {a.structure: a for a in compare(store, model, mask, pair.shared)}
    # The model's tumour is one voxel, the reader's two (one of them the model's), taken from the liver.
    assert found["Tumour"].dice == pytest.approx(2 * 1 / (1 + 2))
    assert found["Liver"].dice == pytest.approx(2 * 25 / (26 + 25))
    assert found["Liver and tumour"].dice == 1.0
    assert found["Tumour"].model_ml == pytest.approx(0.012) and found["Tumour"].mask_ml == pytest.approx(0.024)


def test_no_pair_without_a_shared_name_and_nothing_compared_without_the_kept_maps(tmp_path: Path) -> None:
    renamed = uploaded(extra=1)
    other_names = tuple(replace(s, name=f"Label {i}") for i, s in enumerate(renamed.label_map.structures, 1))
    data = renamed.label_map.data
    other = replace(
        renamed,
        label_map=replace(renamed.label_map, structures=other_names),
        measurements=tuple(measure(data, s) for s in other_names),
    )
    sessions, store = seeded(tmp_path, segmentation(), other)
    with sessions.begin() as s:
        assert mask_pairs(reporting.structure_volumes(s)) == []
    sessions.kw["bind"].dispose()

    sessions, _ = seeded(tmp_path / "again", segmentation(), uploaded(extra=1))
    with sessions.begin() as s:
        [pair] = mask_pairs(reporting.structure_volumes(s))
        model = repository.get_run(s, pair.model_run, repository.SegmentationRunRecord)
        mask = repository.get_run(s, pair.mask_run, repository.SegmentationRunRecord)
    sessions.kw["bind"].dispose()
    assert compare(ImageStore(tmp_path / "empty", 30), model, mask, pair.shared) == []
