"""Server memory per reviewer session, in a real browser against ``streamlit run``.

``rss_growth_per_session_mb``: a server is warmed up with a few sessions (models loaded, caches
filled); then ``sessions`` reviewers come one after another, each in a fresh browser context:
open the app, type a name, upload the NIH chest X-ray, wait for the findings and heatmap, record a
verdict, leave. The figure is the server's resident-memory growth over those sessions divided by
their number, read after the server has had ``settle_s`` seconds idle (what a site sees the
morning after). ``rss_after_sessions_mb`` and ``rss_settled_mb`` are the two readings.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def _slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    return sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sum((i - mean_x) ** 2 for i in range(n))


def session_growth(
    image: Path,
    sessions: int = 50,
    settle_s: float = 60.0,
    chromium: str = "/usr/bin/chromium",
    warmup: int = 5,
    extra_args: tuple[str, ...] = (),
) -> dict:
    from browser import CHROMIUM_ARGS, streamlit_server  # beside this script
    from playwright.sync_api import expect, sync_playwright

    from ui.widgets.radiograph_check import YES_LABEL

    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp), extra_args=extra_args) as server:
        readings = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            expect.set_options(timeout=180_000)

            def one_session(index: int) -> None:
                context = browser.new_context(viewport={"width": 1500, "height": 1800})
                page = context.new_page()
                page.set_default_timeout(180_000)
                page.goto(server.url)
                box = page.get_by_role("textbox", name="Reviewer name")
                box.fill(f"Reader {index}")
                box.press("Enter")
                page.locator("input[type=file]").set_input_files(str(image))
                page.get_by_role("button", name=YES_LABEL).click()  # a frontal chest radiograph
                expect(page.get_by_text("18 findings ·")).to_be_visible()
                page.locator(".st-key-review-finding-verdict-0").get_by_role(
                    "button", name=re.compile(r"(^|\W)Agree$")
                ).click()
                expect(page.get_by_text("Saved:")).to_be_visible()
                context.close()

            for index in range(-warmup, 0):  # models, caches, first compiles, allocator slack
                one_session(index)
            time.sleep(2)
            baseline = _rss_mb(server.pid)
            for index in range(1, sessions + 1):
                one_session(index)
                readings.append(_rss_mb(server.pid))
            browser.close()
        after = _rss_mb(server.pid)
        time.sleep(settle_s)
        settled = _rss_mb(server.pid)
    return {
        "rss_growth_per_session_mb": round((settled - baseline) / sessions, 3),
        # The trend inside the run, least squares over every reading: slack left by the warm-up
        # can hide a leak in the end-to-end difference, not in the slope.
        "rss_slope_per_session_mb": round(_slope(readings), 3),
        "rss_sessions_baseline_mb": round(baseline, 1),
        "rss_after_sessions_mb": round(after, 1),
        "rss_settled_mb": round(settled, 1),
        "sessions": sessions,
    }


if __name__ == "__main__":
    import json

    sys.path.insert(0, str(PROJECT))  # the project (ui.widgets...)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    settle = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    sample = (
        Path(os.environ.get("REVIEW_SAMPLES_DIR", PROJECT.parent / "shared" / "samples"))
        / "cxr"
        / "nih_00000001_000.png"
    )
    print(json.dumps(session_growth(sample, count, settle)))
