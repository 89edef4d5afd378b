"""The SQLite database holds notes and reviewers' e-mail addresses: its file and the WAL and
shared-memory files beside it are readable by the app's user alone, as the kept images are."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage import repository as repo
from storage.db import open_database
from tests.unit.storage.test_storage import FACTS, prediction


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def _store_one_run(url: str) -> None:
    sessions = open_database(url)
    try:
        with sessions.begin() as session:
            repo.store_analysis(session, FACTS, prediction(), "Grad-CAM")
        modes = _modes(Path(url.removeprefix("sqlite:///")).parent)
        # While the engine is open, the WAL and shared-memory files exist: check them too.
        assert {"reviews.sqlite3", "reviews.sqlite3-wal", "reviews.sqlite3-shm"} <= modes.keys(), modes
        assert all(mode == 0o600 for mode in modes.values()), {k: oct(v) for k, v in modes.items()}
    finally:
        sessions.kw["bind"].dispose()


def test_a_new_database_and_its_wal_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which made them -rw-r--r--
    try:
        _store_one_run(f"sqlite:///{tmp_path / 'db' / 'reviews.sqlite3'}")
    finally:
        os.umask(old)


def test_a_database_left_readable_by_others_is_narrowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "reviews.sqlite3"
    sessions = open_database(f"sqlite:///{path}")
    sessions.kw["bind"].dispose()
    for file in tmp_path.iterdir():
        os.chmod(file, 0o644)  # as an older version created it
    _store_one_run(f"sqlite:///{path}")
    assert "readable by other users" in caplog.text
