from __future__ import annotations

import threading

from core.errors import ReviewError
from core.jobs import JobRunner


def test_a_job_reports_progress_and_its_result() -> None:
    runner = JobRunner()
    release = threading.Event()

    def work(progress):
        progress(0.5, "half way")
        release.wait(10)
        return 42

    job = runner.submit("case-1", work)
    assert runner.submit("case-1", work) is job, "asking again joins the running job"
    for _ in range(100):
        if job.message == "half way":
            break
        job.wait(0.05)
    assert not job.done and job.progress == 0.5
    release.set()
    assert job.wait(10) and job.result == 42 and job.error is None and job.progress == 1.0
    assert runner.submit("case-1", work) is job, "a finished job is not recomputed"


def test_failures_reach_the_page_and_can_be_retried() -> None:
    runner = JobRunner()

    def refuse(progress):
        raise ReviewError("weights changed; reload the case")

    def crash(progress):
        raise ZeroDivisionError("boom")

    first = runner.submit("a", refuse)
    assert first.wait(10) and first.error == "weights changed; reload the case"
    crashed = runner.submit("b", crash)
    assert crashed.wait(10) and "ZeroDivisionError" in crashed.error
    retried = runner.submit("a", lambda progress: "ok")
    assert retried is not first and retried.wait(10) and retried.result == "ok"


def test_one_job_runs_at_a_time() -> None:
    runner = JobRunner(parallel=1)
    running, peak, lock = [0], [0], threading.Lock()

    def work(progress):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.05)
        with lock:
            running[0] -= 1

    jobs = [runner.submit(f"k{i}", work) for i in range(4)]
    assert all(job.wait(10) for job in jobs)
    assert peak[0] == 1
