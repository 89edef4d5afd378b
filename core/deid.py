"""Keyed hashing of patient identifiers: the only form in which they leave ingest.

The key comes from ``PATIENT_HASH_KEY`` (environment or Streamlit secrets, passed in by the page),
else from a key file created once in the data directory with owner-only permissions. Without the
key a stored hash cannot be turned back into a PatientID by guessing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

from core.errors import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "PATIENT_HASH_KEY"


def load_or_create_key(key_file: Path, explicit: str | None = None) -> bytes:
    explicit = explicit or os.environ.get(KEY_ENV)
    if explicit:
        if len(explicit) < 16:
            raise ConfigError(f"{KEY_ENV} must be at least 16 characters long, got {len(explicit)}.")
        return explicit.encode()
    if not key_file.is_file():
        _create_key_file(key_file)
    key = key_file.read_bytes().strip()
    if len(key) < 32:
        raise ConfigError(
            f"The patient-ID hashing key in {key_file} is too short ({len(key)} bytes); restore it from "
            f"backup or set {KEY_ENV}. Without the original key, stored patient keys no longer match."
        )
    return key


def _create_key_file(key_file: Path) -> None:
    """Write a new random key atomically: another process starting at the same moment either
    sees no file or the whole key, and the first writer's key wins."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=key_file.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, key_file)  # fails if another process created it first
            log.info("Created a patient-ID hashing key at %s; back it up with the database.", key_file)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def patient_key(patient_id: str | None, key: bytes) -> str | None:
    """A short keyed hash of a PatientID, or None when the file has none."""
    if patient_id is None or not str(patient_id).strip():
        return None
    mac = hmac.new(key, str(patient_id).strip().encode("utf-8"), hashlib.sha256)
    return "pk-" + mac.hexdigest()[:24]
