"""Volumes and label maps kept in the image store: the voxels back exactly (int16 when they are
whole numbers, float32 otherwise), every BraTS channel in order, the label map with its names and
colours, and nothing identifying: no file name, series description or patient ID."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.results import LabelInfo, LabelMap, Structure
from core.types import CaseFacts, ModelIdentity
from inference.volume.types import MultiChannelVolume, Segmentation, Volume
from pipelines.kept_volumes import (
    keep_segmentation,
    keep_volume,
    kept_volume,
    reopened_segmentation,
    store_segmentation_run,
)
from storage.image_store import ImageStore

AFFINE = np.diag([0.9, 0.9, 2.5, 1.0])
NAME = "SMITH^JOHN_1961-04-02.nii.gz"  # an export's file name that names the patient


def _volume(data: np.ndarray, sha: str, description: str = NAME) -> Volume:
    return Volume(
        data=data,
        affine=AFFINE,
        modality="MR",
        source_format="nifti",
        input_sha256=sha,
        description=description,
        original_axcodes="LPS",
        patient_key="pk-1234abcd",
        warnings=(f"{NAME}: the qform and sform disagree",),
    )


def _label_map(data: np.ndarray) -> LabelMap:
    return LabelMap(
        data=data,
        affine=AFFINE,
        labels=(LabelInfo(1, "Left hippocampus", (220, 20, 60)), LabelInfo(300, "Tumour core", (0, 128, 255))),
        structures=(Structure("Left hippocampus", (1,)), Structure("Tumour core", (300,))),
        source=f"uploaded:{NAME}",
        sha256="cd" * 32,
    )


def _uploaded(label_map: LabelMap, measured: tuple = ()) -> Segmentation:
    """An uploaded mask's segmentation, as the MRI/CT page makes it."""
    return Segmentation(
        label_map=label_map,
        model=ModelIdentity("uploaded-mask", label_map.sha256, True, "cpu"),
        params=(("mask_sha256", label_map.sha256),),
        spacing_mm=(0.9, 0.9, 2.5),
        timing_ms=0.0,
        measurements=measured,
        measure_ms=0.0,
    )


def test_a_ct_volume_in_hu_reads_back_exactly_and_compact(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", retention_days=30)
    hu = np.random.default_rng(0).integers(-1024, 3000, size=(40, 30, 20)).astype(np.float32)
    assert kept_volume(store, "ab" * 32) is None
    assert keep_volume(store, _volume(hu, "ab" * 32)) is True
    assert keep_volume(store, _volume(hu, "ab" * 32)) is False, "kept once"
    back = kept_volume(store, "ab" * 32)
    assert isinstance(back, Volume)
    assert back.data.dtype == np.float32 and np.array_equal(back.data, hu) and not back.data.flags.writeable
    assert np.array_equal(back.affine, AFFINE)
    assert (back.modality, back.source_format, back.original_axcodes, back.patient_key) == (
        "MR",
        "nifti",
        "LPS",
        "pk-1234abcd",
    )
    assert store.path("ab" * 32).stat().st_size < hu.nbytes / 2, "whole numbers kept as compressed int16"
    fractional = np.linspace(0, 1, 40 * 30 * 20, dtype=np.float32).reshape(40, 30, 20)
    keep_volume(store, _volume(fractional, "ef" * 32))
    assert np.array_equal(kept_volume(store, "ef" * 32).data, fractional)


def test_a_brats_case_keeps_its_four_channels_in_order(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", retention_days=30)
    rng = np.random.default_rng(1)
    names = ("t1c", "t1", "t2", "flair")
    channels = tuple(_volume(rng.normal(size=(16, 16, 8)).astype(np.float32), f"{i}" * 64) for i in range(4))
    case = MultiChannelVolume(names, channels, "99" * 32)
    keep_volume(store, case)
    back = kept_volume(store, "99" * 32)
    assert isinstance(back, MultiChannelVolume) and back.channel_names == names and back.input_sha256 == "99" * 32
    for kept, original in zip(back.channels, channels):
        assert np.array_equal(kept.data, original.data) and kept.input_sha256 == original.input_sha256


def test_nothing_kept_names_the_patient(tmp_path: Path) -> None:
    root = tmp_path / "images"
    store = ImageStore(root, retention_days=30)
    labels = np.zeros((12, 10, 6), dtype=np.int16)
    labels[2:5, 2:5, 1:3], labels[6:9, 6:9, 3:5] = 1, 300
    segmentation = _uploaded(_label_map(labels))
    assert keep_segmentation(store, _volume(np.ones((12, 10, 6), np.float32), "ab" * 32), segmentation) is True
    for path in root.rglob("*.npz"):
        with np.load(path) as arrays:
            meta = str(arrays["meta"])
        assert "SMITH" not in meta and "1961" not in meta and "qform" not in meta, path
        assert path.name.split(".")[0] in ("ab" * 32, "cd" * 32), "files are named by sha256 only"
    assert "pk-1234abcd" in json.dumps(str(np.load(store.path("ab" * 32))["meta"])), "the keyed hash is kept"
    back = store.get_label_map("cd" * 32)
    assert back is not None and back.data.dtype == np.int16 and np.array_equal(back.data, labels)
    assert back.labels == _label_map(labels).labels and back.structures == _label_map(labels).structures
    assert back.source == "uploaded:label map"
    assert store.get_label_map("ee" * 32) is None


def test_a_stored_run_reopens_with_the_stored_measurements_and_identity(tmp_path: Path) -> None:
    from inference.volume.case import case_facts
    from inference.volume.measure import measure_structures
    from storage import repository
    from storage.db import open_database, session_scope

    sessions = open_database(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    store = ImageStore(tmp_path / "images", retention_days=30)
    labels = np.zeros((12, 10, 6), dtype=np.uint8)
    labels[2:5, 2:5, 1:3] = 1
    label_map = _label_map(labels)
    measured = measure_structures(labels, AFFINE, label_map.structures)
    segmentation = _uploaded(label_map, measured)
    volume = _volume(np.ones((12, 10, 6), np.float32), "ab" * 32)
    facts: CaseFacts = case_facts(volume)
    run_id = store_segmentation_run(lambda: session_scope(sessions), store, volume, facts, segmentation, actor="dr-a")
    with session_scope(sessions) as session:
        run = repository.get_run(session, run_id, repository.SegmentationRunRecord)
    reopened = reopened_segmentation(store, run)
    assert reopened is not None
    assert np.array_equal(reopened.label_map.data, labels)
    assert reopened.model == segmentation.model and reopened.measurements == run.structures
    assert [m.volume_ml for m in reopened.measurements] == [m.volume_ml for m in measured]


def test_an_unwritable_store_keeps_the_run_and_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    store = ImageStore(blocked, retention_days=30)
    segmentation = _uploaded(_label_map(np.zeros((4, 4, 4), np.uint8)))
    assert keep_segmentation(store, _volume(np.ones((4, 4, 4), np.float32), "ab" * 32), segmentation) is False
    assert "stored, but its volume is not kept" in caplog.text


def test_a_dicom_series_keeps_its_uids_and_slice_positions_for_the_seg_and_nothing_identifying(
    tmp_path: Path,
) -> None:
    """A case reopened from the store still writes a DICOM SEG filed with its study, slice by slice."""
    from inference.dicom_out.seg import seg_dataset
    from inference.volume.dicom import load_dicom_series
    from tests.unit.inference.volume.test_volume_dicom import LIMITS, PATIENT_ID, PATIENT_NAME, PLANES, Geometry, series

    volume = load_dicom_series(series(Geometry(*PLANES["oblique-20deg"])), **LIMITS)
    assert volume.dicom_source is not None and len(volume.dicom_source.sop_instance_uids) == 14
    store = ImageStore(tmp_path / "images", retention_days=30)
    keep_volume(store, volume)
    back = kept_volume(store, volume.input_sha256)
    assert isinstance(back, Volume) and back.dicom_source == volume.dicom_source
    kept = json.dumps(store.get_volume(volume.input_sha256).meta)
    assert PATIENT_ID not in kept and PATIENT_NAME.split("^")[0] not in kept
    labels = (np.asarray(back.data) > np.asarray(back.data).mean()).astype(np.uint8)
    label_map = LabelMap(
        labels, back.affine, (LabelInfo(1, "Cube", (255, 0, 0)),), (Structure("Cube", (1,)),), "uploaded:x", "ee" * 32
    )
    seg = seg_dataset(back, _uploaded(label_map))
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == volume.dicom_source.series_instance_uid
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == set(
        volume.dicom_source.sop_instance_uids
    )
