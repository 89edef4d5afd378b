"""No verdict lost when the writing process dies: a writer looping over verdict commits on SQLite is
killed with SIGKILL at a random moment, 50 times over one database. Every verdict id it printed
(printed only after its commit returned) must be in the database, each reviewer's history must be
an unbroken supersede chain, and SQLite's integrity check must pass after every kill.

A SIGKILL leaves the operating system's page cache intact, so this checks that a commit is atomic
and that WAL recovery keeps what was committed; synchronous=FULL is what covers power loss."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from contextlib import closing
from pathlib import Path

from storage import repository as repo
from storage.db import open_database
from tests.conftest import PROJECT
from tests.unit.storage.test_storage import FACTS, LABELS, prediction

KILLS = 50
MAX_KILL_DELAY_S = 0.03
SPARES = 2  # writers importing ahead of their turn, one per core


def start_writer(url: str, run_id: int, reviewer: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.verdict_writer", url, str(run_id), reviewer, ",".join(LABELS)],
        cwd=PROJECT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_mid_loop(writer: subprocess.Popen, delay_s: float) -> list[int]:
    """Let the writer commit for ``delay_s`` after its first commit, SIGKILL it, and return the ids it
    printed. A line cut short by the kill is not counted."""
    writer.stdin.write("go\n")
    writer.stdin.flush()
    first = writer.stdout.readline()
    assert first.endswith("\n"), f"writer died before its first commit: {writer.stderr.read()}"
    time.sleep(delay_s)
    os.kill(writer.pid, signal.SIGKILL)
    rest = writer.stdout.read()
    assert writer.wait() == -signal.SIGKILL
    return [int(line) for line in (first + rest).split("\n")[:-1]]


def stored_chain(path: Path, reviewer: str) -> list[tuple[int, str, int | None]]:
    """A fresh connection each time, so the next one to open the file runs WAL recovery."""
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return connection.execute(
            "SELECT id, item, supersedes_id FROM verdicts WHERE reviewer = ? ORDER BY id", (reviewer,)
        ).fetchall()


def test_every_verdict_a_killed_writer_printed_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "reviews.sqlite3"
    url = f"sqlite:///{path}"
    sessions = open_database(url)
    with sessions.begin() as s:
        run_id = repo.store_analysis(s, FACTS, prediction(), "Grad-CAM").run_id
    sessions.kw["bind"].dispose()

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    spares = deque(start_writer(url, run_id, f"writer {i}") for i in range(SPARES))
    printed_total = stored_total = 0
    try:
        for i in range(KILLS):
            writer = spares.popleft()
            if i + SPARES < KILLS:
                spares.append(start_writer(url, run_id, f"writer {i + SPARES}"))
            printed = kill_mid_loop(writer, rng.uniform(0, MAX_KILL_DELAY_S))
            rows = stored_chain(path, f"writer {i}")
            ids = [row[0] for row in rows]
            context = f"kill {i} (seed {seed}): printed {printed}, stored {ids}"
            assert ids[: len(printed)] == printed, context
            # At most one more: committed, but killed before the id reached stdout.
            assert len(ids) - len(printed) <= 1, context
            latest: dict[str, int] = {}
            for verdict_id, label, supersedes_id in rows:
                assert supersedes_id == latest.get(label), context
                latest[label] = verdict_id
            printed_total += len(printed)
            stored_total += len(ids)
    finally:
        for process in spares:
            process.kill()
            process.wait()

    assert printed_total >= KILLS
    sessions = open_database(url)
    try:
        with sessions.begin() as s:
            assert len(repo.verdict_history(s, run_id)) == stored_total
    finally:
        sessions.kw["bind"].dispose()
