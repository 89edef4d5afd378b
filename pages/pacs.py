"""Studies on the department's PACS, opened for review in the same pages as an upload."""

from __future__ import annotations

import streamlit as st

from ui.entry import require_app_entry
from ui.widgets.pacs_studies import pacs_worklist

require_app_entry()

st.title("PACS studies")
pacs_worklist()
