from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT

APP = str(PROJECT / "app.py")


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def untrained_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOW_UNTRAINED_WEIGHTS", "1")


def new_app(reviewer: str | None = "Dr Test") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if reviewer is not None:
        at.session_state["reviewer_name"] = reviewer
    return at


def texts(at: AppTest) -> str:
    """Everything the page says, for assertions on what a reviewer reads."""
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return "\n".join(parts)
