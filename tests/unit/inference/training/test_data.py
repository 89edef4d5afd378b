"""Labelled folders read as the samples lay them out (../shared/samples/mri_tumour and mri_dementia)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import TrainingDataError
from inference.training.data import read_split, validation_part
from tests.conftest import SAMPLES, require_samples

TUMOUR_FOLDERS = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "pituitary": "Pituitary tumour",
    "notumor": "No tumour",
}
TUMOUR_LABELS = ("Glioma", "Meningioma", "Pituitary tumour", "No tumour")


@pytest.fixture
def tumour() -> Path:
    require_samples()
    return SAMPLES / "mri_tumour"


def test_the_tumour_splits_read_with_the_counts_the_samples_readme_gives(tumour: Path) -> None:
    train = read_split(tumour, "train", TUMOUR_FOLDERS, TUMOUR_LABELS)
    test = read_split(tumour, "test", TUMOUR_FOLDERS, TUMOUR_LABELS)
    assert train.counts() == {"Glioma": 1321, "Meningioma": 1329, "Pituitary tumour": 1445, "No tumour": 1288}
    assert test.counts() == dict.fromkeys(TUMOUR_LABELS, 40)
    assert all(p.parent.name in TUMOUR_FOLDERS for p in train.paths)
    assert [TUMOUR_FOLDERS[p.parent.name] for p in test.paths] == [test.labels[k] for k in test.classes]


def test_the_validation_part_is_stratified_disjoint_and_fixed_by_the_seed(tumour: Path) -> None:
    train = read_split(tumour, "train", TUMOUR_FOLDERS, TUMOUR_LABELS)
    rest, held = validation_part(train, 0.1, seed=3)
    assert set(rest.paths).isdisjoint(held.paths) and len(rest.paths) + len(held.paths) == len(train.paths)
    assert held.counts() == {"Glioma": 132, "Meningioma": 133, "Pituitary tumour": 144, "No tumour": 129}
    assert validation_part(train, 0.1, seed=3)[1].paths == held.paths
    assert validation_part(train, 0.1, seed=4)[1].paths != held.paths


def test_the_manifest_names_the_images_and_their_labels_wherever_the_folder_lies(tumour: Path, tmp_path: Path) -> None:
    test = read_split(tumour, "test", TUMOUR_FOLDERS, TUMOUR_LABELS)
    copy = tmp_path / "copy"
    shutil.copytree(tumour / "test", copy / "test")
    again = read_split(copy, "test", TUMOUR_FOLDERS, TUMOUR_LABELS)
    assert again.manifest_sha256() == test.manifest_sha256()
    moved = next((copy / "test" / "glioma").iterdir())
    moved.rename(copy / "test" / "meningioma" / moved.name)  # one image relabelled
    assert read_split(copy, "test", TUMOUR_FOLDERS, TUMOUR_LABELS).manifest_sha256() != test.manifest_sha256()


def test_folders_that_do_not_fit_the_model_are_refused_in_one_sentence(tumour: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="knows"):
        read_split(SAMPLES / "mri_dementia", "test", TUMOUR_FOLDERS, TUMOUR_LABELS)
    with pytest.raises(TrainingDataError, match="No 'valid' folder"):
        read_split(tumour, "valid", TUMOUR_FOLDERS, TUMOUR_LABELS)
    (tmp_path / "test" / "glioma").mkdir(parents=True)
    with pytest.raises(TrainingDataError, match="No images for Glioma"):
        read_split(tmp_path, "test", TUMOUR_FOLDERS, TUMOUR_LABELS)
