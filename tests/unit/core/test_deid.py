from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.deid import load_or_create_key, patient_key
from core.errors import ConfigError


def test_key_file_is_created_once_private_and_shared_by_racing_processes(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "patient_hash.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(key_file))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not [p for p in key_file.parent.iterdir() if p.name.startswith(".key-")]


def test_short_or_empty_keys_are_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "patient_hash.key"
    key_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="too short"):
        load_or_create_key(key_file)
    with pytest.raises(ConfigError, match="at least 16"):
        load_or_create_key(key_file, explicit="short")


def test_keyed_hash_depends_on_the_key_and_hides_the_id() -> None:
    a = patient_key("MRN-1", b"k" * 32)
    assert a.startswith("pk-") and "MRN" not in a
    assert a == patient_key(" MRN-1 ", b"k" * 32)
    assert a != patient_key("MRN-1", b"j" * 32)
    assert patient_key("", b"k" * 32) is None and patient_key(None, b"k" * 32) is None
