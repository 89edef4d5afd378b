"""Debian's ``dciodvfy`` (dicom3tools): the DICOM standard's own checks of an object against its IOD.

Its errors are lines starting "Error"; warnings (such as an empty Study ID, which a DICOMDIR would
need) are reported but do not fail a check."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_errors(path: Path) -> list[str]:
    """The errors dciodvfy finds in ``path`` (empty when it passes). Skips without dciodvfy, except
    where REQUIRE_DICOM3TOOLS=1 (CI), where that is a failure."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        message = "dciodvfy not found (Debian: apt-get install dicom3tools)"
        if os.environ.get("REQUIRE_DICOM3TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120, check=False)
    said = (done.stdout + done.stderr).splitlines()
    assert any(line.strip() for line in said), f"dciodvfy said nothing about {path} (exit {done.returncode})"
    return [line for line in said if line.startswith("Error")]
