"""Long computations (region SHAP) in background threads, so the page stays usable.

One job per key (a case and model), shared by every session that asks for it; at most
``parallel`` run at once, the rest wait their turn. Jobs never touch Streamlit: pages poll them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import ReviewError

log = logging.getLogger(__name__)

Work = Callable[[Callable[[float, str], None]], Any]


@dataclass
class Job:
    key: str
    progress: float = 0.0
    message: str = "waiting for a free worker"
    result: Any = None
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    queued: bool = True  # waiting for a free slot, not started yet
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def report(self, fraction: float, message: str) -> None:
        self.progress, self.message = max(0.0, min(1.0, fraction)), message


class JobRunner:
    def __init__(self, parallel: int = 1, keep_finished: int = 32) -> None:
        self._jobs: dict[str, Job] = {}
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(parallel)

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def unfinished(self) -> int:
        """Jobs waiting for a slot or running."""
        with self._lock:
            return sum(not job.done for job in self._jobs.values())

    def submit(self, key: str, work: Work) -> Job:
        """Start ``work`` for ``key`` unless a job for it is running or has succeeded."""
        with self._lock:
            existing = self._jobs.get(key)
            if existing is not None and (not existing.done or existing.error is None):
                return existing
            job = self._jobs[key] = Job(key)
            self._forget_oldest_finished()
        threading.Thread(target=self._run, args=(job, work), name=f"job-{key[:24]}", daemon=True).start()
        return job

    def _forget_oldest_finished(self) -> None:
        """Results (a segmentation's label map is megabytes) are kept for the newest finished jobs only."""
        finished = [key for key, job in self._jobs.items() if job.done]
        for key in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._jobs[key]

    def _run(self, job: Job, work: Work) -> None:
        with self._slots:
            job.queued = False
            job.report(0.0, "starting")
            try:
                job.result = work(job.report)
                job.report(1.0, "done")
            except ReviewError as exc:
                job.error = str(exc)
            except Exception as exc:
                log.exception("Background job %s failed", job.key)
                job.error = f"The computation failed ({type(exc).__name__}: {exc}). It was logged; try again."
            finally:
                job.finished_at = time.monotonic()
                job._done.set()


class RemoteRunner(Protocol):
    """Jobs run elsewhere (``workers.client.RemoteJobs``): found by key like ``JobRunner``'s."""

    def get(self, key: str) -> Any: ...

    def submit(self, key: str, task: str, payload: dict[str, Any]) -> Any: ...

    def submit_segmentation(
        self,
        key: str,
        store: Any,
        inputs: Any,
        model_id: str,
        weights_sha256: str,
        trained: bool,
        facts: Any,
        actor: str | None,
    ) -> Any: ...

    def submit_region_shap(
        self, key: str, run_id: int, input_sha256: str, model_id: str, weights_sha256: str, trained: bool
    ) -> Any: ...

    def submit_volume_classification(
        self, key: str, store: Any, inputs: Any, model_id: str, weights_sha256: str, trained: bool
    ) -> Any: ...

    def waiting(self) -> int: ...


class Jobs:
    """A process's background jobs: each kind in its own threads (``local``) or, for the kinds
    whose key starts with one of ``on_remote``, on the workers (``remote``) when there are any.
    ``get`` finds a job of either by its key."""

    def __init__(self, local: JobRunner, remote: RemoteRunner | None = None, on_remote: tuple[str, ...] = ()) -> None:
        self.local, self.remote, self._on_remote = local, remote, on_remote

    def runs_remotely(self, key: str) -> bool:
        return self.remote is not None and key.startswith(self._on_remote)

    def waiting(self) -> int:
        """Jobs waiting or running: this process's, plus the workers' queue."""
        return self.local.unfinished() + (self.remote.waiting() if self.remote is not None else 0)

    def get(self, key: str) -> Any:
        if self.remote is not None and self.runs_remotely(key):
            return self.remote.get(key)
        return self.local.get(key)
