"""Entry point: page config, navigation and the shared sidebar. No heavy work here."""

from __future__ import annotations

import logging
import os

import streamlit as st

from core.errors import ReviewError
from ui import session_reaper, stale_fragments
from ui.entry import app_entry
from ui.identity import current_reviewer, may_enter, require_sign_in
from ui.widgets import sidebar
from ui.widgets.model_status import DISCLAIMER

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# LOG_LEVEL=DEBUG makes this app's own modules (not every library) log in detail, e.g. scroll timings.
_level = os.environ.get("LOG_LEVEL", "INFO").upper()
if _level not in logging.getLevelNamesMapping():
    logging.getLogger(__name__).warning("LOG_LEVEL=%r is not a logging level; using INFO.", _level)
    _level = "INFO"
for package in ("core", "inference", "xai", "storage", "pipelines", "analytics", "ui", "cli"):
    logging.getLogger(package).setLevel(_level)

st.set_page_config(page_title="Radiology AI review", page_icon="🩻", layout="wide")
session_reaper.ensure_installed()
# A viewer's request from a page the reader has just left must not blank the page they opened.
stale_fragments.install()

# The default page is served at "/" (its url_path only names it inside Streamlit, which keys pages
# by it: "review" is the alias's below).
REVIEW = st.Page(
    "pages/review.py", title="Review a chest X-ray", icon=":material/radiology:", default=True, url_path="review-xray"
)


def _to_review() -> None:
    st.switch_page(REVIEW)


PAGES = [
    REVIEW,
    st.Page("pages/volumes.py", title="Review an MRI or CT", icon=":material/neurology:", url_path="volumes"),
    st.Page("pages/worklist.py", title="Worklist", icon=":material/list_alt:", url_path="worklist"),
    st.Page("pages/pacs.py", title="PACS", icon=":material/cloud_download:", url_path="pacs"),
    st.Page("pages/cases.py", title="Case review", icon=":material/folder_open:", url_path="cases"),
    st.Page("pages/analytics.py", title="Analytics", icon=":material/monitoring:", url_path="analytics"),
    st.Page("pages/study.py", title="Reader study", icon=":material/quiz:", url_path="study"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:", url_path="settings"),
    st.Page("pages/about.py", title="About", icon=":material/info:", url_path="about"),
    # /review, the address a reader would type or bookmark, opens the default page ("Page not found" before).
    st.Page(_to_review, title="Review a chest X-ray", url_path="review", visibility="hidden"),
]
# Before sign-in the pages are declared but not listed (position "hidden"): without the call,
# Streamlit listed the pages/ folder's file names in the sidebar of a fresh server's sign-in page.
# The pages along the top once in: the width goes to the image, not to a column of links.
navigation = st.navigation(PAGES, position="top" if may_enter() else "hidden")
require_sign_in()
try:
    sidebar.render(navigation.url_path)
    # Image first: once the reader is known the sidebar (name, models) starts folded away, and the
    # reader's own choice (the arrow at its edge) is remembered by the browser. Unfolded while an
    # open-mode reader has yet to type the name that every verdict is stored under.
    st.set_page_config(initial_sidebar_state="collapsed" if current_reviewer() else "expanded")
    st.caption(DISCLAIMER)
    with app_entry():
        navigation.run()
except ReviewError as problem:
    # The page edge: set-up and storage problems are shown as what to do, never as a traceback.
    st.error(str(problem))
