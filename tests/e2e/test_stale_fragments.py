"""A page the reader has left must not blank, or take back, the page they opened.

The review page's viewer sits in a fragment and asks for pixels by itself. A request it sent just
after the reader clicked another page reached the server during that page's run; Streamlit 1.67
queued it, ran it afterwards for a fragment that no longer existed, and the browser cleared the
page it had just drawn (a blank case page under the disclaimer, in a browser-suite run on
2026-12-06). ui/stale_fragments.py runs such a request as a rerun of the page shown. This app does
what the viewer did, every 40 ms, so the race happens on every try; on Streamlit's own behaviour
(REVIEW_FIX_STALE_FRAGMENTS=0) it blanked the page 12 times in 12.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import browser_page, require_browser, streamlit_app

pytestmark = pytest.mark.e2e

APP = Path(__file__).parent / "stale_fragment_app" / "app.py"


def test_a_request_from_the_page_left_leaves_the_page_opened_drawn(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    require_browser()
    with streamlit_app(tmp_path, command=(sys.executable, "-m", "streamlit", "run", str(APP))) as (url, _):
        with browser_page(1500, 900, timeout_ms=20_000, hooks=False) as page:
            for _ in range(3):
                page.goto(url)  # a new session each time
                expect(page.get_by_text(re.compile(r"ticks seen: [1-9]"))).to_be_visible()
                page.get_by_role("link", name="Slow page").click()
                # The ticks sent while the slow page ran came back as a second run of it, not as a
                # run of the ticking page's fragment.
                expect(page.get_by_text(re.compile(r"slow page drawn, run [2-9]"))).to_be_visible()
                expect(page.get_by_role("heading", name="Slow page")).to_be_visible()
                expect(page.get_by_text("Shown on every page")).to_be_visible()
                assert page.url.endswith("/slow"), page.url
        assert "Couldn't find fragment" not in (tmp_path / "streamlit.log").read_text()
