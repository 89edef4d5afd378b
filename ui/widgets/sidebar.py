"""The sidebar shared by every page: the reviewer (open-mode name or signed-in account) and model status."""

from __future__ import annotations

import streamlit as st

from storage.repository import MAX_REVIEWER_CHARS
from ui.identity import auth_configured, current_reviewer
from ui.session import REVIEWER, REVIEWER_INPUT
from ui.text import md_escape
from ui.widgets.model_status import sidebar_status

_NAME_PROBLEM = "reviewer_name_problem"


def _keep_reviewer() -> None:
    typed = " ".join(str(st.session_state.get(REVIEWER_INPUT, "")).split())
    if len(typed) > MAX_REVIEWER_CHARS:
        # What was typed stays in the box to be shortened; nothing is recorded under it meanwhile.
        st.session_state[_NAME_PROBLEM] = (
            f"Names are limited to {MAX_REVIEWER_CHARS} characters; this one has {len(typed):,}. "
            "Shorten it and press Enter: until then nothing can be recorded."
        )
        st.session_state[REVIEWER] = ""
        return
    st.session_state.pop(_NAME_PROBLEM, None)
    st.session_state[REVIEWER] = typed


def render(page: str | None = None) -> None:
    """The sidebar for the page at url path ``page``."""
    if auth_configured():
        who = current_reviewer()
        with st.sidebar:
            if who is not None:
                st.markdown(f"Signed in as **{md_escape(who.display_name)}**" + (" · admin" if who.is_admin else ""))
                st.caption(f"Identity {md_escape(who.identity)}")
                if who.unverified_email:
                    st.caption(
                        f"Your provider has not verified the e-mail {md_escape(who.unverified_email)}, "
                        "so it is not used for your identity or roles."
                    )
                st.button("Sign out", on_click=st.logout)
    else:
        _open_mode_name()
    sidebar_status(page)


READER_PARAM = "reader"


def _name_in_url() -> None:
    """Open mode: the typed name rides in the page address (?reader=...), so a reload, which starts
    a new session, keeps it. Signed in, the provider's login cookie does that instead."""
    name = st.session_state.get(REVIEWER, "")
    from_url = " ".join(str(st.query_params.get(READER_PARAM, "")).split())
    if not name and from_url and len(from_url) <= MAX_REVIEWER_CHARS:
        st.session_state[REVIEWER] = from_url
    elif name and from_url != name:
        st.query_params[READER_PARAM] = name
    elif not name and READER_PARAM in st.query_params:
        del st.query_params[READER_PARAM]


def _open_mode_name() -> None:
    _name_in_url()
    with st.sidebar:
        st.text_input(
            "Reviewer name",
            value=st.session_state.get(REVIEWER, ""),
            key=REVIEWER_INPUT,
            on_change=_keep_reviewer,
            placeholder="e.g. Dr A. Rahman",
            help="Stored with every verdict you record.",
        )
        if problem := st.session_state.get(_NAME_PROBLEM):
            st.error(problem)
        st.caption(
            "Open mode: no sign-in is configured. Names are not verified and every user of this app "
            "sees all cases and statistics."
        )
