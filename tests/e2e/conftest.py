"""The app under `streamlit run` on a free loopback port, for the browser tests."""

from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PROJECT, require_samples

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_browser() -> None:
    require_samples()
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def streamlit_app(
    folder: Path,
    *,
    python: str = sys.executable,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    command: tuple[str, ...] | None = None,
) -> Iterator[tuple[str, str]]:
    """``streamlit run app.py`` on a loopback port with its own database and data folder, in
    labelled untrained mode: yields (url, database url). On any failure inside, the server's log
    is added to the error; a traceback in it fails the test. ``command``: another app to serve
    (``python -m streamlit run <script>``), with the same options."""
    port = port or _free_port()
    database_url = f"sqlite:///{folder / 'e2e.sqlite3'}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REVIEW_DATA_DIR": str(folder / "data"),
        "ALLOW_UNTRAINED_WEIGHTS": "1",
        "MODEL_AUTO_DOWNLOAD": "0",
        **(extra_env or {}),
    }
    log_path = folder / "streamlit.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                # streamlit run app.py, as scripts/run-app starts it
                *(command or (python, "-m", "ui.serve")),
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
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            try:
                yield f"http://{host}:{port}", database_url
            except Exception as exc:  # say what the server said, e.g. a module missing from requirements.txt
                raise AssertionError(f"{exc}\n--- streamlit log ---\n{log_path.read_text()[-3000:]}") from exc
        finally:
            said = log_path.read_text()
            _stop_later(process)
    assert "Traceback" not in said, said[-3000:]


_STOPPING: list[subprocess.Popen] = []


def _stop_later(process: subprocess.Popen) -> None:
    """Streamlit takes about 2 s to stop after SIGTERM (37 s of the browser suite, waited for one
    server at a time): the next test starts meanwhile, and the stopped ones are reaped at exit."""
    process.terminate()
    _STOPPING.append(process)


@atexit.register
def _reap_stopped() -> None:
    for process in _STOPPING:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def server(tmp_path: Path):
    """A server of the test's own, on an empty database: for a test that counts cases or runs, or
    reads the worklist."""
    require_browser()
    with streamlit_app(tmp_path) as app:
        yield app


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory):
    """One server for the tests that read only their own reader's rows and screens: each server
    start imports torch, MONAI and the pages' code again (about 5 s of CPU on this machine), and the
    first case on it waits for that. Its log is checked for tracebacks when the session ends."""
    require_browser()
    with streamlit_app(tmp_path_factory.mktemp("shared-server")) as app:
        yield app


@contextmanager
def browser_page(width: int = 1600, height: int = 2600, timeout_ms: int = 120_000, hooks: bool = True) -> Iterator:
    """One headless Chromium page at a reading-room size, with Playwright's waits set to
    ``timeout_ms`` (this machine is slow; a wait that ends early is a failure, not a pass).
    ``hooks``: the viewer exposes ``window.reviewViewer`` (state, pixels) to the test, as it
    never does to a reader."""
    from playwright.sync_api import expect, sync_playwright

    from bench.browser import VIEWER_HOOKS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            if hooks:
                page.add_init_script(VIEWER_HOOKS)
            page.set_default_timeout(timeout_ms)
            expect.set_options(timeout=timeout_ms)
            try:
                yield page
            except Exception as exc:
                raise AssertionError(f"{exc}\n--- the page when it failed ---\n{_page_report(page)}") from exc
        finally:
            browser.close()


# What the page showed when a browser test failed: the failure alone (a locator that timed out)
# does not say what was on the screen instead.
_PAGE_REPORT_JS = """() => {
  const text = (sel) => [...document.querySelectorAll(sel)].map(e => e.innerText.slice(0, 300));
  const frames = [...document.querySelectorAll('iframe')].map(f => {
    let state = 'no access';
    try { const v = f.contentWindow.reviewViewer; const s = v ? v.state() : null;
    if (s && s.scene) s.scene = String(s.scene).slice(0, 24);  // the voxel and tool fit after it
    state = s ? JSON.stringify(s).slice(0, 600)
      : (f.contentDocument.body ? f.contentDocument.body.innerText.slice(0, 120) : 'empty'); } catch (e) {}
    return (f.getAttribute('src') || '').split('?')[0].split('/').slice(-2).join('/') + ' h=' + f.height + ' ' + state;
  });
  return JSON.stringify({
    url: location.href,
    running: document.querySelectorAll('[data-testid=stStatusWidget]').length,
    stale: document.querySelectorAll('[data-stale=true]').length,
    headings: text('h1, h2, h3').slice(0, 8),
    alerts: text('[data-testid=stAlert], [data-testid=stException]'),
    toggles: [...document.querySelectorAll('[data-testid=stCheckbox] input')].map(i => i.getAttribute('aria-label') + '=' + i.checked),
    frames: frames,
    connection: text('[data-testid=stConnectionStatus]'),
  }, null, 1);
}"""


def _page_report(page) -> str:
    from playwright.sync_api import Error as PlaywrightError

    try:
        report = page.evaluate(_PAGE_REPORT_JS)
    except PlaywrightError as exc:  # the page itself is gone (crashed or closed): say so
        return f"(the page could not be read: {exc})"
    shot = Path(os.environ.get("E2E_FAILURE_DIR", "/tmp")) / f"e2e-failure-{int(time.time())}.png"
    try:
        page.screenshot(path=str(shot), full_page=True)
        report += f"\nscreenshot: {shot}"
    except PlaywrightError as exc:
        report += f"\n(no screenshot: {exc})"
    return report


def settled(page) -> None:
    """Wait until the page has finished its run and its redraw: no status widget and no element
    left stale from the previous run (Streamlit keeps both on screen for a moment)."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)
    expect(page.locator("[data-stale=true]")).to_have_count(0)


_VIEWERS_READY = """() => Array.from(document.querySelectorAll("iframe[src*='review_viewer']")).every(f => {
  try { const v = f.contentWindow.reviewViewer; return !v || v.state().ready; } catch (e) { return false; } })"""


def quiet(page) -> None:
    """Settled, and every browser viewer on the page has drawn what it was sent: a viewer still
    loading may yet ask the page for pixels it lost, a rerun that can swallow a key press or a
    click made meanwhile (Streamlit gives a button's press to the one run it interrupts)."""
    settled(page)
    page.wait_for_function(_VIEWERS_READY, polling=100)
    settled(page)


def open_page(page, name: str) -> None:
    """Open another page from the navigation as a reader does, and see that it opened. A click on
    a page link in the moment the page in front asks for a rerun of itself (its viewer asking for
    pixels it lost, a page switch being drawn) can be overtaken by that rerun, and the page in
    front stays (seen twice in CI after the N key): the reader, seeing no new page, clicks again."""
    from urllib.parse import urlparse

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    link = page.get_by_role("link", name=name, exact=True)
    path = urlparse(link.get_attribute("href") or "").path.rstrip("/")
    for attempt in range(3):
        quiet(page)
        link.click()
        try:
            page.wait_for_url(lambda url: urlparse(url).path.rstrip("/") == path, timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def wait_for_text(page, text: str) -> None:
    """Wait until ``text`` is in the page, checked every 50 ms: expect() backs off to a check every
    500 ms, which a test that waits for the page after each of 50 clicks pays 50 times."""
    page.wait_for_function("t => document.body.textContent.includes(t)", arg=text, polling=50)


def shown_run(page, after: int | None = None) -> int:
    """The run the review page shows ("Case run #N"): once it is another than ``after``."""
    from playwright.sync_api import expect

    shown = page.get_by_text(re.compile(r"Case run #\d+ ")).first
    expect(shown).to_be_visible()
    if after is not None:  # the new upload's run, not the previous one still on screen
        expect(shown).not_to_contain_text(f"Case run #{after} ")
    return int(re.search(r"Case run #(\d+)", shown.inner_text()).group(1))


def case_of_run(database_url: str, run_id: int) -> int:
    """The case a run belongs to, from the server's database (a shared server's case numbers and
    its worklist's order depend on what other tests stored)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT case_id FROM analysis_runs WHERE id = :r"), {"r": run_id}).scalar_one()
            )
    finally:
        engine.dispose()


def own_copy(path: str | Path, folder: Path) -> Path:
    """A PNG copy of ``path`` with one pixel changed: another image, so a case of its own on a
    server that other tests' uploads of the same file share."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image[0, 0] = 255 - image[0, 0]
    copy = folder / f"own-{Path(path).stem}.png"
    cv2.imwrite(str(copy), image)
    return copy


def download(page, button: str, folder: Path) -> Path:
    """Clicks the download button named ``button`` and saves the file into ``folder``."""
    # Once the page has finished its run: a download button's file belongs to the run that drew
    # it, and a click while the next run replaces it finds nothing ("Deferred file ... not found").
    settled(page)
    with page.expect_download() as info:
        page.get_by_role("button", name=button, exact=True).click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def key_class(key: str) -> str:
    """The class Streamlit gives the element a widget with ``key`` is drawn in: ``st-key-<key>``,
    each character other than a letter, digit, ``_`` or ``-`` made ``-``."""
    return "st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def uploader(page, key: str):
    """The file input of the uploader with ``key``: not "the first file input", which right after a
    mode switch can still be the previous mode's uploader, about to leave the page."""
    return page.locator(f".{key_class(key)} input[type=file]")


def upload_radiograph(page, path: str | Path, uploader=None) -> None:
    """Upload a radiograph on the review page as a reader does: a PNG or JPEG is analysed once the
    reader says it is a frontal chest radiograph (a DICOM is not asked about)."""
    from ui.widgets.radiograph_check import YES_LABEL

    (uploader or page.locator("input[type=file]")).set_input_files(str(path))
    if Path(path).suffix.lower() in (".png", ".jpg", ".jpeg"):
        page.get_by_role("button", name=YES_LABEL).click()


def pytest_collection_modifyitems(items) -> None:
    """A browser test without ``pytestmark = pytest.mark.e2e`` would run in the unit phase, beside
    another worker's tests (it did once, unnoticed, taking 41 s there): refuse to run instead."""
    here = Path(__file__).resolve().parent
    unmarked = [
        i.nodeid for i in items if here in Path(str(i.path)).resolve().parents and not i.get_closest_marker("e2e")
    ]
    if unmarked:
        raise pytest.UsageError(f"browser tests without pytestmark = pytest.mark.e2e: {', '.join(unmarked)}")
