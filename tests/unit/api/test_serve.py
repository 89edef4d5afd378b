"""``python -m inference serve`` as IT starts it: a real uvicorn process on loopback, answered over
HTTP; refused on another address without access configured; and access tokens of the app's own
sign-in provider (a real OIDC provider on loopback) accepted until the provider revokes them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.conftest import NIH_PNG, PROJECT, require_samples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(*args: str, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "REVIEW_DATA_DIR": str(tmp / "data")}
    return subprocess.Popen(
        [sys.executable, "-m", "inference", "serve", *args],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_served_api_answers_a_heatmap_over_http_and_stops_cleanly(tmp_path: Path) -> None:
    require_samples()
    port = _free_port()
    process = _serve("--port", str(port), "--allow-untrained", "--secrets", str(tmp_path / "none.toml"), tmp=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the model is loaded before the port opens: ready means ready
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the API did not start within 2 minutes"
                time.sleep(0.3)
        assert ready.json() == {"ready": True, "model": "xrv-densenet121-res224-all", "trained": False}
        response = httpx.post(
            f"{base}/api/inference/heatmap",
            files={"file": (NIH_PNG.name, NIH_PNG.read_bytes(), "image/png")},
            data={"colormap": "viridis", "alpha": "0.6"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["trained"] is False and body["warning"].startswith("UNTRAINED")
        assert body["colormap"] == "viridis" and body["overlay_jpeg_base64"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Inference API on http://127.0.0.1" in output and "loopback" in output
    assert "Traceback" not in output


def test_without_keys_another_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    process = _serve("--host", "0.0.0.0", "--secrets", str(tmp_path / "none.toml"), tmp=tmp_path)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "serves this machine (loopback) only, not 0.0.0.0" in output and "[api] keys" in output
    assert "Traceback" not in output


def _access_token(issuer: str, sub: str) -> str:
    """An access token for ``sub`` by the authorisation code flow, as the app's sign-in gets one."""
    client = {"client_id": "review-dashboard", "client_secret": "secret"}
    redirect = "http://127.0.0.1:1/callback"
    with httpx.Client(base_url=issuer, timeout=10) as http:
        page = http.post(
            "/oauth2/authorize",
            params={
                "client_id": client["client_id"],
                "redirect_uri": redirect,
                "response_type": "code",
                "scope": "openid email",
            },
            data={"sub": sub},
        )
        assert page.status_code in (302, 303), page.text[:500]
        code = parse_qs(urlparse(page.headers["location"]).query)["code"][0]
        token = http.post(
            "/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert token.status_code == 200, token.text
        return str(token.json()["access_token"])


def test_the_sign_in_providers_access_tokens_are_accepted_until_revoked(tmp_path: Path) -> None:
    oidc_mock = pytest.importorskip("oidc_provider_mock")
    from api.access import AccessDenied, load_access

    with oidc_mock.run_server_in_thread() as server:
        issuer = f"http://localhost:{server.server_port}"
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(f'[auth]\nserver_metadata_url = "{issuer}/.well-known/openid-configuration"\n')
        access = load_access(secrets)
        assert access.describe() == "bearer tokens: access tokens of the app's sign-in provider"
        token = _access_token(issuer, "reader-0001")
        assert access.check(f"Bearer {token}", "10.1.2.3").name.endswith("#reader-0001")
        with pytest.raises(AccessDenied):
            access.check("Bearer not-a-token", "10.1.2.3")
        httpx.post(f"{issuer}/users/reader-0001/revoke-tokens", timeout=10).raise_for_status()
        access.token_cache_s = 0.0  # revocation is seen within the cache's minute; here at once
        with pytest.raises(AccessDenied):
            access.check(f"Bearer {token}", "10.1.2.3")
