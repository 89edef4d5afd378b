"""The de-identified image store: a decoded radiograph kept and read back exactly, never the file
or its tags, expired after the retention period, and a broken folder reported, not hidden."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from core.errors import StorageError
from core.types import CaseFacts, Image2D
from storage.image_store import ImageStore

SHA = "ab" * 32


def _image(pixels: np.ndarray, sha: str = SHA) -> Image2D:
    return Image2D(pixels=pixels, facts=CaseFacts(sha, "png", "image", view_position="PA", notes=("a note",)))


def test_a_kept_radiograph_reads_back_exactly(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", retention_days=30)
    eight_bit = np.arange(64 * 48, dtype=np.float32).reshape(64, 48) % 256
    assert store.put_image(_image(eight_bit)) is True
    assert store.put_image(_image(eight_bit)) is False, "kept once"
    back = store.get_image(SHA)
    assert back is not None and np.array_equal(back.pixels, eight_bit) and back.pixels.dtype == np.float32
    assert back.facts == _image(eight_bit).facts
    path = store.path(SHA)
    assert path.parent.name == "ab" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert path.stat().st_size < eight_bit.nbytes / 2, "whole-number pixels kept as compressed uint8"
    fractional = np.linspace(0, 255, 64 * 48, dtype=np.float32).reshape(64, 48)
    store.put_image(_image(fractional, "cd" * 32))
    assert np.array_equal(store.get_image("cd" * 32).pixels, fractional)
    assert store.get_image("ef" * 32) is None


def test_what_is_kept_carries_no_identifier_from_the_dicom(tmp_path: Path, samples: Path) -> None:
    from inference.images.ingest import load_image

    ds = pydicom.dcmread(samples / "siim_sample.dcm")
    ds.PatientName = "Doe^Janet"
    ds.PatientID = "MRN-0042-SECRET"
    ds.PatientBirthDate = "19610203"
    ds.AccessionNumber = "ACC-777-SECRET"
    ds.InstitutionName = "St Elsewhere General"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    image = load_image(buffer.getvalue(), "id.dcm", max_bytes=50_000_000, max_pixels=64_000_000, hash_key=b"k" * 32)
    store = ImageStore(tmp_path / "images", retention_days=30)
    store.put_image(image)
    kept = store.path(image.facts.input_sha256)
    import zipfile

    with zipfile.ZipFile(kept) as archive:
        everything = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (b"Doe", b"Janet", b"MRN-0042", b"19610203", b"ACC-777", b"Elsewhere"):
        assert secret not in everything and secret not in kept.read_bytes()
    assert store.get_image(image.facts.input_sha256).facts.patient_key == image.facts.patient_key


def test_images_past_retention_are_deleted_and_others_kept(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", retention_days=7)
    store.put_image(_image(np.zeros((8, 8), np.float32), "11" * 32))
    store.put_image(_image(np.zeros((8, 8), np.float32), "22" * 32))
    old = time.time() - 8 * 86_400
    os.utime(store.path("11" * 32), (old, old))
    assert store.purge_expired() == 1
    assert store.get_image("11" * 32) is None and store.get_image("22" * 32) is not None


def test_an_unwritable_store_is_a_clear_error_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "ab").write_text("a file where the folder should be")
    store = ImageStore(root, retention_days=30)
    with pytest.raises(StorageError, match="could not be kept.*IMAGE_STORE=0"):
        store.put_image(_image(np.zeros((8, 8), np.float32)))
    assert list(root.rglob("*.tmp")) == []


def test_a_damaged_file_is_treated_as_not_kept(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", retention_days=30)
    store.put_image(_image(np.zeros((8, 8), np.float32)))
    store.path(SHA).write_bytes(b"PK\x03\x04 truncated")
    assert store.get_image(SHA) is None
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")
