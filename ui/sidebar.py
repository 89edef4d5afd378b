"""The sidebar shared by every page: reviewer name (open mode), model status, disclaimer."""

from __future__ import annotations

import streamlit as st

from ui.model_status import DISCLAIMER, sidebar_status
from ui.identity import auth_configured, current_reviewer
from ui.session import REVIEWER, REVIEWER_INPUT
from ui.text import md_escape


def _keep_reviewer() -> None:
    st.session_state[REVIEWER] = " ".join(str(st.session_state.get(REVIEWER_INPUT, "")).split())


def render() -> None:
    if auth_configured():
        who = current_reviewer()
        with st.sidebar:
            if who is not None:
                st.markdown(f"Signed in as **{md_escape(who.display_name)}**" + (" · admin" if who.is_admin else ""))
                st.caption(md_escape(who.identity))
                st.button("Sign out", on_click=st.logout)
    else:
        _open_mode_name()
    sidebar_status()
    st.sidebar.divider()
    st.sidebar.caption(DISCLAIMER)


def _open_mode_name() -> None:
    with st.sidebar:
        st.text_input(
            "Reviewer name",
            value=st.session_state.get(REVIEWER, ""),
            key=REVIEWER_INPUT,
            on_change=_keep_reviewer,
            max_chars=80,
            placeholder="e.g. Dr A. Rahman",
            help="Stored with every verdict you record.",
        )
        st.caption(
            "Open mode: no sign-in is configured. Names are not verified and every user of this app "
            "sees all cases and statistics."
        )
