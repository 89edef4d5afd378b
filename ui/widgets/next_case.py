""" "Next unreviewed case" (key N), the same on the worklist, the case page and the review page."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from storage import reporting, studies
from ui import database
from ui.identity import reviewer, visible_reviewer

KEY_NEXT_CASE = "N"
CASE_PAGE = "pages/cases.py"


def reader_worklist() -> reporting.Worklist:
    """The worklist as this viewer may see it: a signed-in reader's own progress (status, counts,
    what is next), everyone's for the lead (admin) and in open mode. Cases of an open reader study
    that this reader has not made their first read of are left out (their band and top finding are
    the AI's output, and even their order would show it): the Reader study page opens them."""
    with database.transaction() as session:
        board = reporting.worklist(session, reviewer=visible_reviewer())
        hidden = studies.hidden_cases(session, reviewer())
    if not hidden:
        return board
    shown = [row for row in board.cases if row.case_id not in hidden]
    return replace(board, cases=shown, in_study=len(board.cases) - len(shown))


STUDY_PAGE = "pages/study.py"


def study_cases_note(board: reporting.Worklist) -> None:
    """Say where the cases left out for a reader study are."""
    if board.in_study:
        st.info(
            f"{board.in_study} case{'s are' if board.in_study > 1 else ' is'} in an open reader study that you "
            "have not read yet: read them on the Reader study page first, where the AI stays hidden until "
            "your first read."
        )
        st.page_link(STUDY_PAGE, label="Open the Reader study page", icon=":material/quiz:")


def progress_caption(noun: str, own: bool) -> str:
    """What a status says, for the captions under the lists."""
    if own:
        return (
            f"'reviewed by you': you gave a verdict on every {noun}; status and 'Next unreviewed case' are your "
            "own progress (readers read independently; the lead sees everyone's)"
        )
    return f"'reviewed by N': N readers gave a verdict on every {noun}"


def next_unreviewed_button(rows: list[reporting.WorklistRow] | None = None, current_run: int | None = None) -> bool:
    """A button (and the N key) to the first case not yet finished (by this reader, when signed in:
    ``reader_worklist``), critical first, then newest, other than the case of run ``current_run``
    (the one on screen). Returns False when there is none."""
    if rows is None:
        rows = reader_worklist().cases
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
