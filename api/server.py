"""Starting the API: ``python -m inference serve``. Without API keys or a sign-in provider in the
secrets it binds to loopback only, and refuses another address with the reason."""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path

from api.access import LOOPBACK_ONLY, is_loopback_host, load_access
from api.app import DEFAULT_MAX_BATCH, ApiConfig, create_app, default_secrets_file
from core.errors import ConfigError, ReviewError
from core.settings import load_settings

log = logging.getLogger(__name__)


def build(
    secrets_file: Path | None = None,
    *,
    host: str = "127.0.0.1",
    max_batch: int = DEFAULT_MAX_BATCH,
    allow_untrained: bool = False,
    inference_executor: Executor | None = None,
):
    """The configured app for ``host`` (``ConfigError`` when it may not serve there)."""
    access = load_access(secrets_file or default_secrets_file())
    if not access.configured and not is_loopback_host(host):
        raise ConfigError(
            f"{LOOPBACK_ONLY}, not {host}. Add [api] keys or the app's [auth] sign-in to the secrets file "
            f"({secrets_file or default_secrets_file()}) to serve other machines."
        )
    return create_app(
        ApiConfig(settings=load_settings(), access=access, max_batch=max_batch, allow_untrained=allow_untrained),
        inference_executor=inference_executor,
    )


class MainThreadExecutor(Executor):
    """Runs what is submitted on the thread that calls ``run`` (the process's main thread). torch's
    OpenMP runs a network of many small steps (the DenseNet) about twice as fast from the main
    thread as from any other on this machine: 28 against 57 ms a radiograph (2026-12-07), as a
    parallel region started elsewhere does not keep its threads spinning between steps."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def run(self, until: Callable[[], bool]) -> None:
        """Work until ``until()`` says to stop (checked at least every 200 ms)."""
        while not until():
            try:
                future, fn, args, kwargs = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - handed to the request that asked
                    future.set_exception(exc)


def serve(
    host: str, port: int, secrets_file: Path | None = None, *, allow_untrained: bool = False, preload: bool = True
) -> None:
    """HTTP on a thread of its own, the models on the main thread (``MainThreadExecutor``); SIGTERM
    or SIGINT stops both, the request in hand answered first."""
    import uvicorn

    from core.native_memory import tune_heap

    tune_heap()  # before the HTTP thread starts
    inference = MainThreadExecutor()
    app = build(secrets_file, host=host, allow_untrained=allow_untrained, inference_executor=inference)
    log.warning("Inference API on http://%s:%d (%s)", host, port, app.state.access_description)
    if preload:
        # The chest X-ray model ready before the first request; a failure here is said now, and
        # /health/ready keeps saying it.
        from inference.models.registry import get_classifier

        try:
            app.state.pool.get(get_classifier(load_settings().cxr_model_id))
        except ReviewError as exc:  # no weights, say: /health/ready answers 503 with this reason
            log.error("The chest X-ray model is not loaded: %s", exc)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    http = threading.Thread(target=server.run, name="http")

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    http.start()
    inference.run(until=lambda: not http.is_alive())
    http.join()
