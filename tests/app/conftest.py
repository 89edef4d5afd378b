from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT
from ui.session import cam_method_key, parse_verdict_key
from ui.widgets.radiograph_check import YES_LABEL

APP = str(PROJECT / "app.py")


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(autouse=True)
def server_rendered_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest runs no browser, so no component can answer: the page tests read the server-rendered
    views (the browser viewer's tests set REVIEW_VIEWER=browser and read what is sent to it)."""
    monkeypatch.setenv("REVIEW_VIEWER", "server")


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


def verdict_buttons(at: AppTest, noun: str = "finding") -> dict[tuple[str, str], object]:
    """(item, verdict) -> the verdict panel's button, in page order. Keys are
    ``ui.session.verdict_key``."""
    found = {}
    for button in at.button:
        parsed = parse_verdict_key(button.key or "")
        if parsed is not None and parsed[1] == noun:
            found[(parsed[3], parsed[4])] = button
    return found


def verdict_items(at: AppTest, noun: str = "finding") -> list[str]:
    """The items of the verdict panel, in page order."""
    return list(dict.fromkeys(item for item, _ in verdict_buttons(at, noun)))


def click_verdict(at: AppTest, item: str, verdict: str, noun: str = "finding") -> AppTest:
    verdict_buttons(at, noun)[(item, verdict)].click().run()
    assert not at.exception, at.exception
    return at


def chosen_verdicts(at: AppTest, noun: str = "finding") -> dict[str, str | None]:
    """item -> the verdict shown as chosen (a primary button), or None."""
    chosen: dict[str, str | None] = {item: None for item in verdict_items(at, noun)}
    for (item, verdict), button in verdict_buttons(at, noun).items():
        if button.proto.type == "primary":
            chosen[item] = verdict
    return chosen


def cam_method_box(at: AppTest):
    """The CAM method list (one per case: ``cam_method_key(image sha256)``)."""
    [box] = [s for s in at.selectbox if (s.key or "").startswith(cam_method_key(""))]
    return box


def confirm_radiograph(at: AppTest) -> AppTest:
    """Answer the review page's question about a PNG or JPEG: a frontal chest radiograph (a DICOM
    is not asked about)."""
    yes = [b for b in at.button if b.label == YES_LABEL]
    if yes:
        yes[0].click().run()
        assert not at.exception, at.exception
    return at
