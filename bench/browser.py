"""A real server and a real browser for the benchmark's interaction figures: ``streamlit run`` on a
loopback port in labelled untrained mode with its own data folder, and headless Chromium."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    pid: int


@contextmanager
def streamlit_server(
    folder: Path, extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """Yields the running server; it is stopped on the way out (a stop that hangs is a kill, so a
    benchmark never leaves a server behind)."""
    port = free_port()
    env = {
        **os.environ,
        "REVIEW_DATA_DIR": str(folder / "data"),
        "ALLOW_UNTRAINED_WEIGHTS": "1",
        "MODEL_AUTO_DOWNLOAD": "0",
        **(extra_env or {}),
    }
    env.pop("DATABASE_URL", None)
    log_path = folder / "server.log"
    with log_path.open("w") as server_log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ui.serve",  # streamlit run app.py, as scripts/run-app starts it
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                *extra_args,
            ],
            cwd=PROJECT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.5)
            yield Server(url, log_path, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


# Set before the viewer's scripts run, it makes viewer.js expose window.reviewViewer (state, pixels,
# arm) to the benchmark and the tests; a reader's browser never sets it.
VIEWER_HOOKS = "window.__reviewViewerHooks = true;"


@contextmanager
def chromium_page(width: int = 1500, height: int = 1800) -> Iterator:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.add_init_script(VIEWER_HOOKS)  # the viewer's timing hooks (arm, state), off for readers
        expect.set_options(timeout=120_000)
        page.set_default_timeout(120_000)
        try:
            yield page
        finally:
            browser.close()


# Waits inside the viewer's frame poll on a timer, not on its animation frames: Chromium throttles
# the animation frames of an iframe out of view, which held such waits for seconds after the page
# had drawn (the reader saw the image long before the benchmark did).
FRAME_POLL_MS = 16


def viewer_frame(page):
    """The browser viewer's frame once its image is shown (re-read it after the page rebuilt it)."""
    element = page.locator("iframe[src*='review_viewer']")
    element.wait_for(state="visible")
    frame = element.element_handle().content_frame()
    frame.wait_for_function("() => window.reviewViewer && window.reviewViewer.state().ready", polling=FRAME_POLL_MS)
    return frame


def event_to_frame_ms(frame, event_type: str, action) -> float:
    """Milliseconds from the next ``event_type`` event in the viewer (its own timestamp) to the
    animation frame after NiiVue drew the result; the viewer's ``arm`` measures it in the page."""
    frame.evaluate("t => { window.__latency = window.reviewViewer.arm(t, 10000); }", event_type)
    action()
    value = frame.evaluate("() => window.__latency")
    if value is None or value != value:  # NaN: no draw followed the event
        raise RuntimeError(f"the viewer drew nothing after a {event_type} event")
    return float(value)


def median_event_to_frame_ms(frame, event_type: str, step, repeats: int, warmup: int = 2) -> float:
    """The median of ``event_to_frame_ms`` over ``repeats`` tries after ``warmup`` ones; ``step(i)``
    makes try ``i``'s event (alternate directions so the view stays where it was)."""
    times = [event_to_frame_ms(frame, event_type, lambda i=i: step(i)) for i in range(repeats + warmup)]
    return statistics.median(times[warmup:])
