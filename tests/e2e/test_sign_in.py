"""Reviewer sign-in against a real OIDC provider started on loopback (oidc-provider-mock): two
readers sign in in two browsers, each verdict is stored under the signed-in identity, and a
reader sees only their own statistics while the lead (admin) sees both."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import NIH_PNG, PROJECT, require_samples
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port
from tests.e2e.test_browser import _shot

pytestmark = pytest.mark.e2e


@pytest.fixture
def oidc_app(tmp_path: Path):
    require_samples()
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    oidc_mock = pytest.importorskip("oidc_provider_mock")
    with oidc_mock.run_server_in_thread() as provider:
        port = _free_port()
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(
            f"""
[auth]
redirect_uri = "http://localhost:{port}/oauth2callback"
cookie_secret = "test-cookie-secret-0123456789abcdef"
client_id = "review-dashboard"
client_secret = "test-client-secret"
server_metadata_url = "http://localhost:{provider.server_port}/.well-known/openid-configuration"

[roles]
admins = ["lead@hospital.test"]
"""
        )
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'auth.sqlite3'}",
               "REVIEW_DATA_DIR": str(tmp_path / "data"), "ALLOW_UNTRAINED_WEIGHTS": "1", "MODEL_AUTO_DOWNLOAD": "0"}
        log = (tmp_path / "streamlit.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--secrets.files", str(secrets)],
            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail((tmp_path / "streamlit.log").read_text()[-2000:])
                    time.sleep(0.5)
            yield f"http://localhost:{port}", env["DATABASE_URL"]
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()


def _sign_in(page, url: str, who: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_text("Sign in with your hospital account")).to_be_visible()
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=sub]").fill(who)
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()


def test_two_signed_in_readers_and_the_lead(oidc_app, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, database_url = oidc_app
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        expect.set_options(timeout=120_000)
        readers = {}
        for who, verdict in (("reader1@hospital.test", "Agree"), ("reader2@hospital.test", "Disagree")):
            context = browser.new_context(viewport={"width": 1500, "height": 2200})
            page = context.new_page()
            _sign_in(page, url, who)
            expect(page.get_by_text(who).first).to_be_visible()
            expect(page.get_by_role("textbox", name="Reviewer name")).to_have_count(0)
            page.locator("input[type=file]").set_input_files(str(NIH_PNG))
            expect(page.get_by_text("18 findings ·")).to_be_visible()
            first = page.get_by_role("radiogroup", name="Verdict on").first
            first.get_by_role("radio", name=verdict, exact=True).click()
            expect(page.get_by_text("Saved:").first).to_be_visible()
            _shot(page, f"08-signed-in-{who.split('@')[0]}")
            readers[who] = page

        page = readers["reader1@hospital.test"]
        page.goto(f"{url}/analytics")
        page.get_by_text("Include untrained runs").click()
        expect(page.get_by_text("Only your own verdicts are shown")).to_be_visible()
        lead_context = browser.new_context(viewport={"width": 1500, "height": 2200})
        lead = lead_context.new_page()
        _sign_in(lead, url, "lead@hospital.test")
        expect(lead.get_by_text("admin").first).to_be_visible()
        lead.goto(f"{url}/analytics")
        lead.get_by_text("Include untrained runs").click()
        expect(lead.get_by_test_id("stMetricValue").nth(2)).to_have_text("2")  # readers
        _shot(lead, "09-analytics-lead")

        lead.goto(f"{url}/cases?case=1")
        expect(lead.get_by_text("Case 1").first).to_be_visible()
        with lead.expect_download() as download_info:
            lead.get_by_role("button", name="Download case report (HTML)").click()
        report = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(report)
        assert report.suffix == ".html"
        lead.goto(report.as_uri())
        expect(lead.get_by_role("heading", name="Case 1: AI review report")).to_be_visible()
        expect(lead.get_by_text("reader1@hospital.test: agree")).to_be_visible()
        expect(lead.get_by_text("reader2@hospital.test: disagree")).to_be_visible()
        expect(lead.get_by_text("UNTRAINED WEIGHTS")).to_be_visible()
        _shot(lead, "10-exported-report")
        browser.close()

    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = sorted(connection.execute(text("SELECT reviewer, verdict FROM verdicts")))
    engine.dispose()
    assert rows == [("reader1@hospital.test", "agree"), ("reader2@hospital.test", "disagree")]
