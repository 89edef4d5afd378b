"""The session reaper on the pinned Streamlit: a browser session that has gone away is shut down
(its upload and media released) once Streamlit forgets it, not kept for the life of the process.
ui/session_reaper.py reaches into Streamlit's private session storage; this is what says that the
version requirements.txt pins is still laid out as it expects."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.e2e.conftest import browser_page, require_browser, streamlit_app, upload_radiograph

pytestmark = pytest.mark.e2e

REAPED = "Shut down an expired browser session"


def test_a_closed_browser_session_is_shut_down_once_streamlit_forgets_it(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    require_browser()
    with streamlit_app(
        tmp_path,
        extra_args=("--server.disconnectedSessionTTL", "2"),
        extra_env={"SESSION_REAP_EVERY_S": "1", "LOG_LEVEL": "DEBUG"},
    ) as (url, _):
        log = tmp_path / "streamlit.log"
        with browser_page(1600, 1000, hooks=False) as page:  # as a reader's browser
            page.goto(f"{url}/?reader=Dr%20Reaper")
            upload_radiograph(page, SAMPLES / "cxr" / "nih_00000001_000.png")
            expect(page.get_by_text("18 findings ·")).to_be_visible()
            viewer = page.frame_locator("iframe[src*='review_viewer']")
            expect(viewer.get_by_text("Grad-CAM for")).to_be_visible()
            # The test and benchmark hooks are not in a reader's viewer.
            frame = next(f for f in page.frames if "review_viewer" in f.url)
            assert frame.evaluate("() => typeof window.reviewViewer") == "undefined"
            assert "Expired browser sessions are shut down" in log.read_text(), "the reaper was not installed"
            assert REAPED not in log.read_text(), "a session was shut down while its browser was open"
        # The browser has gone: Streamlit keeps the session 2 s for a reconnect, then forgets it,
        # and the reaper (every second) shuts it down. Wait for the server to say so.
        deadline = time.monotonic() + 60
        while REAPED not in log.read_text():
            assert time.monotonic() < deadline, "the closed session was never shut down"
            time.sleep(0.5)
