"""Who is reviewing: the signed-in identity (OIDC through ``st.login``) when `[auth]` is set in
``.streamlit/secrets.toml``, otherwise the name typed in the sidebar, in a clearly marked open mode.

Roles: a reviewer is an admin when their e-mail (or subject) is listed in the secrets under
``[roles] admins = [...]``. Admins see everyone's statistics; reviewers see their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from ui.session import REVIEWER


@dataclass(frozen=True)
class Reviewer:
    identity: str  # what is stored with each verdict: the signed-in e-mail/subject, or the typed name
    display_name: str
    signed_in: bool
    is_admin: bool


def _secrets_section(name: str) -> dict:
    try:
        section = st.secrets.get(name)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}
    return dict(section) if section else {}


def auth_configured() -> bool:
    return bool(_secrets_section("auth"))


def _admins() -> set[str]:
    return {str(a).strip().lower() for a in _secrets_section("roles").get("admins", [])}


def current_reviewer() -> Reviewer | None:
    """The reviewer of this session, or None when nobody is identified yet."""
    if auth_configured():
        if not st.user.is_logged_in:
            return None
        identity = str(st.user.get("email") or st.user.get("sub") or "").strip()
        if not identity:
            return None
        name = str(st.user.get("name") or identity)
        return Reviewer(identity, name, signed_in=True, is_admin=identity.lower() in _admins())
    typed = " ".join(str(st.session_state.get(REVIEWER, "") or "").split())
    # Open mode: nobody is verified, so nobody's statistics are private either.
    return Reviewer(typed, typed, signed_in=False, is_admin=True) if typed else None


def require_sign_in() -> None:
    """In auth mode, stop the page with a sign-in button until the user has signed in."""
    if auth_configured() and not st.user.is_logged_in:
        st.title("Sign in")
        st.write("This review dashboard records who said what. Sign in with your hospital account to continue.")
        st.button("Sign in", type="primary", on_click=st.login)
        st.stop()
