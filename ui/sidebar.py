"""The sidebar shared by every page: reviewer name (open mode), model status, disclaimer."""

from __future__ import annotations

import streamlit as st

from ui.model_status import DISCLAIMER, sidebar_status
from ui.session import REVIEWER, REVIEWER_INPUT


def _keep_reviewer() -> None:
    st.session_state[REVIEWER] = " ".join(str(st.session_state.get(REVIEWER_INPUT, "")).split())


def render() -> None:
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
        st.caption("Open mode: no sign-in. Names are not verified and every user of this app sees all cases.")
    sidebar_status()
    st.sidebar.divider()
    st.sidebar.caption(DISCLAIMER)
