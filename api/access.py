"""Who may call the API: bearer tokens, either a service account's static API key from the
secrets file or an access token of the app's own sign-in provider (checked at its userinfo
endpoint, so a token the provider has revoked stops working within a minute). With neither
configured the API serves this machine only.

The secrets file is the app's (``.streamlit/secrets.toml``)::

    [api]
    keys = { "pacs-bridge" = "a random string of at least 32 characters" }

    [auth]                      # the app's sign-in (st.login); its access tokens are accepted
    server_metadata_url = "https://idp.hospital.example/.well-known/openid-configuration"
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.identity import identity_key

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32
TOKEN_CACHE_S = 60.0
LOOPBACK_ONLY = "no API keys or sign-in provider are configured: this API serves this machine (loopback) only"


class AccessDenied(Exception):
    """No valid bearer token (401)."""


class ProviderUnavailable(Exception):
    """The sign-in provider did not answer, so a token cannot be checked (503)."""


@dataclass(frozen=True)
class Caller:
    """Who made a request: ``service:NAME`` for an API key, ``ISSUER#SUB`` for a signed-in user,
    ``loopback`` without configured access. ``reviewer``: what a verdict from this caller is
    stored under: a signed-in user's key as the app stores theirs (one person, one identity in
    the app and the API), a service's name; None for loopback, which records no verdicts."""

    name: str
    reviewer: str | None = None


@dataclass
class Access:
    api_keys: dict[str, str] = field(default_factory=dict)  # service name -> key
    metadata_url: str | None = None
    token_cache_s: float = TOKEN_CACHE_S  # how long a checked sign-in token is trusted without asking again
    _cache: dict[str, tuple[float, Caller]] = field(default_factory=dict, repr=False)
    _provider: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.api_keys or self.metadata_url)

    def describe(self) -> str:
        if not self.configured:
            return LOOPBACK_ONLY
        ways = []
        if self.api_keys:
            ways.append(f"{len(self.api_keys)} API key(s)")
        if self.metadata_url:
            ways.append("access tokens of the app's sign-in provider")
        return "bearer tokens: " + " and ".join(ways)

    def check(self, authorization: str | None, client_host: str | None) -> Caller:
        """The caller, or ``AccessDenied``/``ProviderUnavailable``."""
        if not self.configured:
            if client_host is None or not is_loopback_host(client_host):
                raise AccessDenied(f"{LOOPBACK_ONLY}; this request came from {client_host or 'an unknown address'}.")
            return Caller("loopback")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AccessDenied("This API needs an 'Authorization: Bearer <token>' header.")
        for name, key in self.api_keys.items():
            if hmac.compare_digest(token.encode(), key.encode()):
                return Caller(f"service:{name}", reviewer=f"service:{name}")
        if self.metadata_url:
            return self._signed_in(token)
        raise AccessDenied("The bearer token is not a valid API key.")

    def _signed_in(self, token: str) -> Caller:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached and now - cached[0] < self.token_cache_s:
                return cached[1]
        import httpx

        try:
            provider = self._provider_metadata()
            response = httpx.get(
                provider["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"}, timeout=5.0
            )
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise ProviderUnavailable(f"The sign-in provider could not check the token: {exc}") from None
        if response.status_code in (400, 401, 403):  # RFC 6750: invalid_request, invalid_token, insufficient_scope
            raise AccessDenied("The bearer token is neither an API key nor a valid sign-in access token.")
        if response.status_code != 200:
            raise ProviderUnavailable(f"The sign-in provider answered {response.status_code} to the token check.")
        claims = response.json()
        issuer, subject = str(provider.get("issuer", "")), str(claims.get("sub", ""))
        caller = Caller(f"{issuer}#{subject}", reviewer=identity_key(issuer, subject) if subject else None)
        with self._lock:
            self._cache[digest] = (now, caller)
        return caller

    def _provider_metadata(self) -> dict:
        with self._lock:
            if self._provider:
                return self._provider
        import httpx

        assert self.metadata_url is not None
        response = httpx.get(self.metadata_url, timeout=5.0)
        response.raise_for_status()
        metadata = response.json()
        with self._lock:
            self._provider.update(metadata)
        return metadata


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address to bind, or a client's) is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_access(secrets_file: Path | None) -> Access:
    """Access from the secrets file (absent: none configured). A key shorter than 32 characters
    or a malformed file is a ``ConfigError``, never a silently open API."""
    if secrets_file is None or not secrets_file.is_file():
        return Access()
    try:
        secrets = tomllib.loads(secrets_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read the secrets file {secrets_file}: {exc}") from None
    keys = (secrets.get("api") or {}).get("keys") or {}
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise ConfigError(f"[api] keys in {secrets_file} must be a table of service name = key.")
    short = sorted(name for name, key in keys.items() if len(key) < MIN_KEY_LENGTH)
    if short:
        raise ConfigError(
            f'API keys must be at least {MIN_KEY_LENGTH} characters (e.g. `python -c "import secrets; '
            f'print(secrets.token_urlsafe(32))"`); too short: {", ".join(short)}.'
        )
    metadata_url = (secrets.get("auth") or {}).get("server_metadata_url")
    return Access(api_keys=dict(keys), metadata_url=metadata_url or None)
