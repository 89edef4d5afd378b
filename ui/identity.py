"""Who is reviewing: the signed-in identity (OIDC through ``st.login``) when `[auth]` is set in
``.streamlit/secrets.toml``, otherwise the name typed in the sidebar, in a clearly marked open mode.

Signed in, the identity is the provider's issuer and subject (see ``core.identity``); an e-mail
claim counts only when the provider verified it. Roles: a reviewer is an admin when their
verified e-mail, or their identity key, is listed under ``[roles] admins = [...]``. Admins see
everyone's verdicts and statistics; readers see only their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import streamlit as st

from core.errors import ReviewError
from core.identity import IdentityUnavailable, SignedInIdentity, from_claims
from ui import database
from ui.session import REVIEWER

log = logging.getLogger(__name__)
_REGISTERED = "reviewer_identity_registered"


@dataclass(frozen=True)
class Reviewer:
    identity: str  # what is stored with each verdict: the signed-in identity key, or the typed name
    display_name: str
    signed_in: bool
    is_admin: bool
    unverified_email: str | None = None


def _secrets_section(name: str) -> dict:
    try:
        section = st.secrets.get(name)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}
    return dict(section) if section else {}


def auth_configured() -> bool:
    return bool(_secrets_section("auth"))


def _admins() -> list[str]:
    return [str(a) for a in _secrets_section("roles").get("admins", [])]


def signed_in_identity() -> SignedInIdentity | None:
    """The signed-in user's identity; None when nobody is signed in. Raises IdentityUnavailable
    when the provider's answer does not identify them."""
    if not st.user.is_logged_in:
        return None
    return from_claims(st.user.to_dict(), _admins())


def current_reviewer() -> Reviewer | None:
    """The reviewer of this session, or None when nobody is identified yet."""
    if auth_configured():
        try:
            who = signed_in_identity()
        except IdentityUnavailable:
            return None
        if who is None:
            return None
        return Reviewer(
            who.key, who.display_name, signed_in=True, is_admin=who.is_admin, unverified_email=who.unverified_email
        )
    typed = " ".join(str(st.session_state.get(REVIEWER, "") or "").split())
    # Open mode: nobody is verified, so nobody's verdicts or statistics are private either.
    return Reviewer(typed, typed, signed_in=False, is_admin=True) if typed else None


def reviewer() -> str:
    """The identity stored with verdicts: the signed-in account, else the typed name (open mode)."""
    who = current_reviewer()
    return who.identity if who else ""


def visible_reviewer() -> str | None:
    """Whose verdicts this viewer may see: None for everyone's (an admin, or open mode), else
    only their own identity (an empty string matches nobody: not identified, sees nothing)."""
    if not auth_configured():
        return None
    who = current_reviewer()
    if who is None:
        return ""
    return None if who.is_admin else who.identity


def _register(who: SignedInIdentity) -> None:
    """Keep the display name of an identity key, so histories and reports can show it (once per
    session and name)."""
    from storage import repository

    marker = (who.key, who.display_name, who.verified_email)
    if st.session_state.get(_REGISTERED) == marker:
        return
    try:
        with database.transaction() as session:
            repository.register_reviewer(
                session, who.key, who.display_name, who.verified_email, who.issuer, who.subject
            )
    except ReviewError:
        log.warning("Could not record the display name of %s", who.key, exc_info=True)
        return
    st.session_state[_REGISTERED] = marker


def may_enter() -> bool:
    """Whether the pages may be listed: open mode, or a signed-in user whom the provider's answer
    identifies (``require_sign_in`` stops every other run at the sign-in page)."""
    if not auth_configured():
        return True
    if not st.user.is_logged_in:
        return False
    try:
        return signed_in_identity() is not None
    except IdentityUnavailable:
        return False


def require_sign_in() -> None:
    """In auth mode, stop the page with a sign-in button until the user has signed in and the
    provider's answer identifies them."""
    if not auth_configured():
        return
    if not st.user.is_logged_in:
        st.title("Sign in")
        st.write("This review dashboard records who said what. Sign in with your hospital account to continue.")
        st.button("Sign in", type="primary", on_click=st.login)
        st.stop()
    try:
        who = signed_in_identity()
    except IdentityUnavailable as exc:
        st.title("Sign in")
        st.error(str(exc))
        st.button("Sign out", on_click=st.logout)
        st.stop()
    if who is not None:
        _register(who)
