""" "Next unreviewed case" (key N), the same on the worklist, the case page and the review page."""

from __future__ import annotations

import streamlit as st

from storage import reporting
from ui import database

KEY_NEXT_CASE = "N"
CASE_PAGE = "pages/cases.py"


def next_unreviewed_button(rows: list[reporting.WorklistRow] | None = None, current_run: int | None = None) -> bool:
    """A button (and the N key) to the first case no reader has finished, critical first, then
    newest, other than the case of run ``current_run`` (the one on screen). Returns False when there is none."""
    if rows is None:
        with database.transaction() as session:
            rows = reporting.worklist(session).cases
    waiting = [r for r in rows if r.readers_done == 0 and r.run_id != current_run]
    if not waiting:
        return False
    target = waiting[0]
    if st.button(
        f"Next unreviewed case (case {target.case_id}, {target.top_band.value})",
        type="primary",
        shortcut=KEY_NEXT_CASE,
        icon=":material/skip_next:",
        key="next_unreviewed_case",
    ):
        st.switch_page(CASE_PAGE, query_params={"case": str(target.case_id)})
    return True
