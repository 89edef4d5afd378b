"""A verdict writer for the kill test: ``python -m tests.support.verdict_writer URL RUN_ID REVIEWER LABELS``.

Imports what it needs, then waits for one line on stdin (so a spare can be started ahead of time),
then records verdicts in a loop through the app's engine and ``record_verdict``, one transaction
each, and prints every verdict id as soon as its commit has returned. It runs until killed.
Only storage modules are imported (no torch), so it starts in well under a second.
"""

from __future__ import annotations

import itertools
import sys

from sqlalchemy.orm import sessionmaker

from core.vocabulary import Verdict
from storage.db import make_engine
from storage.repository import record_verdict


def main(argv: list[str]) -> None:
    url, run_id, reviewer, labels = argv[1], int(argv[2]), argv[3], argv[4].split(",")
    sessions = sessionmaker(make_engine(url), expire_on_commit=False)
    sys.stdin.readline()
    for i in itertools.count():
        with sessions.begin() as session:
            record = record_verdict(
                session,
                run_id,
                labels[i % len(labels)],
                (Verdict.AGREE, Verdict.DISAGREE)[i % 2],
                reviewer,
                f"commit {i}",
            )
        print(record.verdict_id, flush=True)  # noqa: T201 - the parent process reads ids from stdout


if __name__ == "__main__":
    main(sys.argv)
