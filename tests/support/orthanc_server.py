"""A throwaway PACS: Debian's ``orthanc`` with its DICOMweb plugin (``orthanc-dicomweb``), on a free
port on 127.0.0.1 only, with HTTP basic authentication, its storage in a temporary directory
removed by ``stop()``. Tests fill it over STOW-RS and read it back over QIDO-RS and its REST API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port

START_TIMEOUT_S = 60
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "review", "s3cret-for-tests"


@dataclass
class OrthancServer:
    http_url: str  # Orthanc's own REST API
    process: subprocess.Popen
    folder: Path

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    def get(self, path: str):
        request = urllib.request.Request(f"{self.http_url}{path}", headers=_auth())
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            # Killed, not asked: its storage is thrown away, and a clean shutdown takes Orthanc 2.7 s.
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _auth() -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def start() -> OrthancServer:
    """Starts Orthanc, or skips (fails where REQUIRE_ORTHANC=1, in CI) when it is not installed."""
    binary = shutil.which("Orthanc")
    if binary is None or not PLUGIN.is_file():
        message = "Orthanc with its DICOMweb plugin not found (apt-get install orthanc orthanc-dicomweb)"
        if os.environ.get("REQUIRE_ORTHANC") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="review-orthanc-"))
    port = free_port()
    config = {
        "Name": "review-test-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [binary, str(folder / "orthanc.json")],
        stdout=(folder / "orthanc.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = OrthancServer(http_url=f"http://127.0.0.1:{port}", process=process, folder=folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            server.get("/system")
            return server
        except (OSError, urllib.error.URLError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (folder / "orthanc.log").read_text(errors="replace")
            server.stop()
            raise RuntimeError(f"Orthanc did not start: {log[-2000:]}")
        time.sleep(0.2)
