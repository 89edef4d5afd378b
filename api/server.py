"""Starting the API: ``python -m inference serve``. Without API keys or a sign-in provider in the
secrets it binds to loopback only, and refuses another address with the reason."""

from __future__ import annotations

import logging
from pathlib import Path

from api.access import LOOPBACK_ONLY, is_loopback_host, load_access
from api.app import DEFAULT_MAX_BATCH, ApiConfig, create_app, default_secrets_file
from core.errors import ConfigError, ReviewError
from core.settings import load_settings

log = logging.getLogger(__name__)


def build(
    secrets_file: Path | None = None,
    *,
    host: str = "127.0.0.1",
    max_batch: int = DEFAULT_MAX_BATCH,
    allow_untrained: bool = False,
):
    """The configured app for ``host`` (``ConfigError`` when it may not serve there)."""
    access = load_access(secrets_file or default_secrets_file())
    if not access.configured and not is_loopback_host(host):
        raise ConfigError(
            f"{LOOPBACK_ONLY}, not {host}. Add [api] keys or the app's [auth] sign-in to the secrets file "
            f"({secrets_file or default_secrets_file()}) to serve other machines."
        )
    return create_app(
        ApiConfig(settings=load_settings(), access=access, max_batch=max_batch, allow_untrained=allow_untrained)
    )


def serve(
    host: str, port: int, secrets_file: Path | None = None, *, allow_untrained: bool = False, preload: bool = True
) -> None:
    import uvicorn

    app = build(secrets_file, host=host, allow_untrained=allow_untrained)
    log.warning("Inference API on http://%s:%d (%s)", host, port, app.state.access_description)
    if preload:
        # The chest X-ray model ready before the first request; a failure here is said now, and
        # /health/ready keeps saying it.
        from inference.models.registry import get_classifier

        try:
            app.state.pool.get(get_classifier(load_settings().cxr_model_id))
        except ReviewError as exc:  # no weights, say: /health/ready answers 503 with this reason
            log.error("The chest X-ray model is not loaded: %s", exc)
    uvicorn.run(app, host=host, port=port, log_level="warning")
