"""When a running job goes quiet: lost when its worker does not answer, busy (not lost) while it
does, and lost anyway past six stall periods. The decision alone, on a job whose result backend
and workers are stand-ins (the real worker tests kill real workers)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from workers.client import RemoteJob


class _Workers:
    def __init__(self, answering: set[str]) -> None:
        self.answering = answering
        self.asked: list[str] = []

    def worker_answers(self, worker: str) -> bool:
        self.asked.append(worker)
        return worker in self.answering


def _job(silent_s: float, workers: _Workers, stall_s: float = 10.0) -> RemoteJob:
    info = {"progress": 0.4, "message": "segmenting", "pid": 99, "worker": "w1@host", "beat": time.time() - silent_s}
    result = SimpleNamespace(id="task-1", state="PROGRESS", info=info)
    return RemoteJob("key", result, lambda answer: answer, stall_s, workers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("silent_s", "answering", "lost"),
    [
        (5.0, set(), False),  # a beat 5 s ago: running, nobody asked
        (15.0, set(), True),  # quiet past the stall period, its worker gone: lost
        (15.0, {"w1@host"}, False),  # quiet, its worker answers: busy
        (15.0, {"w2@host"}, True),  # another worker answering says nothing of this job's
        (65.0, {"w1@host"}, True),  # quiet for more than six stall periods: lost all the same
    ],
)
def test_a_quiet_job_is_lost_only_when_its_own_worker_does_not_answer(silent_s, answering, lost) -> None:
    workers = _Workers(answering)
    job = _job(silent_s, workers)
    assert (job.error is not None) is lost
    if lost:
        assert "The worker running this job stopped" in job.error
    assert workers.asked == ([] if silent_s < 10 or silent_s > 60 else ["w1@host"])
