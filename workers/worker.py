"""``python -m inference worker``: a Celery worker on ``WORKER_BROKER_URL`` that runs the app's long
jobs. One job at a time per process (each uses every core); more processes or machines scale out."""

from __future__ import annotations

import logging
import socket

from workers.tasks import configured_app

log = logging.getLogger(__name__)


def run_worker(concurrency: int = 1, loglevel: str = "info", name: str | None = None) -> None:
    """Blocks until the worker is stopped (SIGTERM: it finishes the job in hand first)."""
    from core.native_memory import tune_heap

    tune_heap()  # the job processes forked from this one inherit it
    app = configured_app()
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--pool=prefork",
            f"--hostname={name or 'review'}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
