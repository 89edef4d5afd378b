"""A two-page app for tests/e2e/test_stale_fragments.py: the first page's fragment holds a component
that sends a value every 40 ms by itself (as the review page's viewer asks for pixels), the second
page takes half a second to run. Run with REVIEW_FIX_STALE_FRAGMENTS=0 it shows Streamlit's own
behaviour."""

import logging
import os

import streamlit as st

from ui import stale_fragments

logging.basicConfig(level=logging.INFO)  # ui.stale_fragments says when it redirects a rerun

if os.environ.get("REVIEW_FIX_STALE_FRAGMENTS", "1") == "1":
    stale_fragments.install()

here = os.path.dirname(__file__)
navigation = st.navigation(
    [
        st.Page(os.path.join(here, "views", "leaving.py"), title="Ticking page", default=True),
        st.Page(os.path.join(here, "views", "opened.py"), title="Slow page", url_path="slow"),
    ],
    position="top",
)
st.caption("Shown on every page")
navigation.run()
