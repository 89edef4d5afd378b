"""A progress bar that follows a background job and reruns the page once it has finished."""

from __future__ import annotations

import streamlit as st

from ui import resources


@st.fragment(run_every=1.0)
def follow_job(key: str, what: str, meanwhile: str) -> None:
    """Poll the job every second (only this fragment reruns); the whole page reruns when it is done,
    to show its result or its error."""
    job = resources.jobs().get(key)
    if job is None:
        return
    if job.done:
        st.rerun()
    st.progress(job.progress, text=f"{what}: {job.message}. {meanwhile}")
