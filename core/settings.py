"""Process settings read from the environment, in one place.

Each setting has a safe default so a newcomer can run the app with no configuration; hospital IT
overrides them with environment variables, or keeps credentials in the app's secrets file
(``.streamlit/secrets.toml``, Streamlit's own, where the sign-in and API keys live too: the hashing
key, and the PACS's endpoint in a ``[pacs]`` table). An environment variable wins over the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BANDS_FILE = PROJECT_ROOT / "config" / "bands.json"
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _secrets_table(name: str) -> dict[str, object]:
    """A table of the secrets file (REVIEW_SECRETS_FILE, else ``.streamlit/secrets.toml``), or {}
    when there is no file or no such table.

    Raises:
        ConfigError: the file is not valid TOML, or the table is not a table.
    """
    path = Path(os.environ.get("REVIEW_SECRETS_FILE") or SECRETS_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"The secrets file {path} cannot be read: {exc.strerror}.") from exc
    try:
        table = tomllib.loads(text).get(name, {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The secrets file {path} is not valid TOML: {exc}.") from exc
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] in the secrets file {path} must be a table (a [{name}] section).")
    return table


def _flag(name: str, default: bool, secret: object = None, secret_name: str = "") -> bool:
    """An on/off setting: the environment variable, else ``secret`` (``secret_name`` in the
    secrets file), else ``default``."""
    raw = os.environ.get(name)
    if raw is None and secret is not None:
        if not isinstance(secret, bool):
            raise ConfigError(f"In the secrets file, {secret_name} must be true or false, got {secret!r}.")
        return secret
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}.")


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}.")
    return value


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (os.environ.get(name) or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    weights_dir: Path
    database_url: str
    bands_file: Path
    allow_untrained_weights: bool
    auto_download_weights: bool
    max_upload_mb: int
    max_image_pixels: int
    patient_key_file: Path
    max_volume_upload_mb: int = 500
    max_volume_voxels: int = 160_000_000
    cxr_model_id: str = "xrv-densenet121-res224-all"  # the registered classifier the chest X-ray review runs
    image_store: bool = True  # keep decoded, de-identified pixels so cases reopen with their image
    image_retention_days: int = 30
    viewer: str = "browser"  # "browser": the WebGL viewer where it is built; "server": server-rendered views
    session_reap_every_s: int = 30  # how often sessions Streamlit has forgotten are shut down (ui/session_reaper.py)
    # Long jobs on Celery workers (workers/) when set: Redis, e.g. redis://127.0.0.1:6379/0
    worker_broker_url: str | None = None
    worker_result_backend: str | None = None  # default: the broker
    worker_stall_s: int = 30  # a job whose worker gave no sign of life for this long is reported failed
    # The department's PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS), e.g. https://pacs.example/dicom-web
    pacs_url: str | None = None
    pacs_username: str | None = None  # HTTP basic authentication, where the PACS asks for it
    pacs_password: str | None = field(default=None, repr=False)  # never in a log line
    # Send a reader's SR (and the case's SEGs and pictures) when they have judged every item of a run.
    pacs_auto_send: bool = False
    # DICOM de-identification's "retain patient characteristics" option (PS3.15 Annex E): keep each
    # image's sex and age band (never a birth date) for drift's subgroup breakdowns. Off by default.
    retain_patient_characteristics: bool = False

    @property
    def image_store_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def edited_bands_file(self) -> Path:
        return self.data_dir / "bands" / "active.json"


def load_settings() -> Settings:
    """Read the settings now in force (cheap; call it where they are needed)."""
    data_dir = Path(os.environ.get("REVIEW_DATA_DIR", PROJECT_ROOT / "data")).expanduser()
    weights_dir = Path(os.environ.get("MODEL_WEIGHTS_DIR", data_dir / "weights")).expanduser()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir / 'reviews.sqlite3'}"
    # IT can pin a file with BANDS_CONFIG; otherwise a version saved by an admin in the app, else the default.
    edited_bands = data_dir / "bands" / "active.json"
    bands_file = Path(
        os.environ.get("BANDS_CONFIG") or (edited_bands if edited_bands.is_file() else DEFAULT_BANDS_FILE)
    ).expanduser()
    pacs = _secrets_table("pacs")
    deid = _secrets_table("deid")
    return Settings(
        data_dir=data_dir,
        weights_dir=weights_dir,
        database_url=database_url,
        bands_file=bands_file,
        allow_untrained_weights=_flag("ALLOW_UNTRAINED_WEIGHTS", False),
        auto_download_weights=_flag("MODEL_AUTO_DOWNLOAD", True),
        max_upload_mb=_positive_int("MAX_UPLOAD_MB", 50),
        max_image_pixels=_positive_int("MAX_IMAGE_MEGAPIXELS", 64) * 1_000_000,
        patient_key_file=data_dir / "patient_hash.key",
        # A 512x512x600 CT is 157 million voxels (630 MB as float32); larger volumes are refused.
        max_volume_upload_mb=_positive_int("MAX_VOLUME_UPLOAD_MB", 500),
        max_volume_voxels=_positive_int("MAX_VOLUME_MEGAVOXELS", 160) * 1_000_000,
        cxr_model_id=os.environ.get("CXR_MODEL_ID") or "xrv-densenet121-res224-all",
        image_store=_flag("IMAGE_STORE", True),
        image_retention_days=_positive_int("IMAGE_RETENTION_DAYS", 30),
        viewer=_choice("REVIEW_VIEWER", ("browser", "server"), "browser"),
        session_reap_every_s=_positive_int("SESSION_REAP_EVERY_S", 30),
        worker_broker_url=os.environ.get("WORKER_BROKER_URL") or None,
        worker_result_backend=os.environ.get("WORKER_RESULT_BACKEND") or None,
        worker_stall_s=_positive_int("WORKER_STALL_S", 30),
        pacs_url=os.environ.get("PACS_DICOMWEB_URL") or _text(pacs.get("url")),
        pacs_username=os.environ.get("PACS_USERNAME") or _text(pacs.get("username")),
        pacs_password=os.environ.get("PACS_PASSWORD") or _text(pacs.get("password")),
        pacs_auto_send=_flag("PACS_AUTO_SEND", False, pacs.get("auto_send"), "auto_send in [pacs]"),
        retain_patient_characteristics=_flag(
            "RETAIN_PATIENT_CHARACTERISTICS",
            False,
            deid.get("retain_patient_characteristics"),
            "retain_patient_characteristics in [deid]",
        ),
    )


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
