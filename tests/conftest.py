"""Shared fixtures: real sample images, an isolated data directory per test, the untrained model,
and a throwaway PostgreSQL server beside SQLite for the storage tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("REVIEW_SAMPLES_DIR", PROJECT.parent / "shared" / "samples"))
CXR = SAMPLES / "cxr"
NIH_PNG = CXR / "nih_00000001_000.png"


def require_samples() -> None:
    """Skip without the shared sample images, except in CI (REQUIRE_SAMPLES=1), where that is a failure."""
    if not NIH_PNG.is_file():
        message = f"sample images not found at {SAMPLES} (set REVIEW_SAMPLES_DIR)"
        if os.environ.get("REQUIRE_SAMPLES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def samples() -> Path:
    require_samples()
    return CXR


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data dir and database; no test touches the network by default."""
    data = tmp_path / "data"
    monkeypatch.setenv("REVIEW_DATA_DIR", str(data))
    monkeypatch.setenv("MODEL_AUTO_DOWNLOAD", "0")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MODEL_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("ALLOW_UNTRAINED_WEIGHTS", raising=False)
    monkeypatch.delenv("PATIENT_HASH_KEY", raising=False)
    monkeypatch.delenv("BANDS_CONFIG", raising=False)
    # torchxrayvision's own cache is a second place the loader looks: keep the user's out of tests.
    monkeypatch.setattr("inference.models.weights.HOME", tmp_path / "home")
    return data


@pytest.fixture(scope="session")
def untrained_model():
    from core.settings import load_settings
    from inference.models.loader import load_model
    from inference.models.registry import CXR_DENSENET

    return load_model(CXR_DENSENET, load_settings(), allow_untrained=True, device="cpu")


@pytest.fixture(scope="session")
def bands():
    from core.settings import DEFAULT_BANDS_FILE
    from inference.images.bands import load_band_config

    return load_band_config(DEFAULT_BANDS_FILE)


def load(path: Path, name: str | None = None, **limits):
    from inference.images.ingest import load_image

    return load_image(
        path.read_bytes(),
        name or path.name,
        max_bytes=limits.get("max_bytes", 50_000_000),
        max_pixels=limits.get("max_pixels", 64_000_000),
        hash_key=b"test-key-0123456789abcdef",
        **({"expected": limits["expected"]} if "expected" in limits else {}),
        **({"retain_characteristics": limits["retain_characteristics"]} if "retain_characteristics" in limits else {}),
    )


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session. Without the binaries this skips, except in CI
    (REQUIRE_POSTGRES=1), where that is a failure."""
    from tests.support.pg_server import PostgresUnavailable, start_server

    try:
        server = start_server()
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here: {exc}")
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, or a new database on the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reviews.sqlite3'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def orthanc():
    """A throwaway Orthanc PACS with DICOMweb and basic auth, for one test (it starts in 0.2 s)."""
    from tests.support import orthanc_server

    server = orthanc_server.start()
    yield server
    server.stop()
