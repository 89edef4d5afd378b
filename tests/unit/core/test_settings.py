"""The PACS endpoint from the secrets file, where hospital IT keeps credentials beside the sign-in's:
the file's [pacs] table, an environment variable winning over it, and a clear error for a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings

PACS_VARIABLES = ("PACS_DICOMWEB_URL", "PACS_USERNAME", "PACS_PASSWORD", "PACS_AUTO_SEND")


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in PACS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "secrets.toml"
    monkeypatch.setenv("REVIEW_SECRETS_FILE", str(path))
    return path


def test_the_pacs_comes_from_the_secrets_file_and_the_password_never_shows(secrets: Path) -> None:
    assert (load_settings().pacs_url, load_settings().pacs_auto_send) == (None, False)  # no file: no PACS
    secrets.write_text(
        '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n\n'
        '[pacs]\nurl = "https://pacs.example/dicom-web"\nusername = "review"\npassword = "s3cret"\nauto_send = true\n'
    )
    settings = load_settings()
    assert (settings.pacs_url, settings.pacs_username, settings.pacs_password) == (
        "https://pacs.example/dicom-web",
        "review",
        "s3cret",
    )
    assert settings.pacs_auto_send is True
    assert "s3cret" not in repr(settings)


def test_an_environment_variable_wins_over_the_secrets_file(secrets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.write_text('[pacs]\nurl = "https://pacs.example/dicom-web"\nauto_send = true\n')
    monkeypatch.setenv("PACS_DICOMWEB_URL", "http://127.0.0.1:8042/dicom-web")
    monkeypatch.setenv("PACS_AUTO_SEND", "0")
    settings = load_settings()
    assert (settings.pacs_url, settings.pacs_auto_send) == ("http://127.0.0.1:8042/dicom-web", False)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[pacs\nurl = "x"\n', "is not valid TOML"),
        ('pacs = "https://pacs.example"\n', r"\[pacs\] in the secrets file .* must be a table"),
        ('[pacs]\nauto_send = "yes"\n', "auto_send in \\[pacs\\] must be true or false, got 'yes'"),
    ],
)
def test_a_broken_secrets_file_is_said_with_what_to_fix(secrets: Path, text: str, said: str) -> None:
    secrets.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_settings()
