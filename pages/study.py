"""Reader study: readers call each case's findings with the AI hidden, then with it shown; the lead
sets studies up, adjudicates and reads what the AI changed."""

from __future__ import annotations

import streamlit as st

from core.errors import InvalidReview
from storage import studies
from ui import database, session
from ui.entry import require_app_entry
from ui.identity import auth_configured, current_reviewer
from ui.widgets.study_admin import adjudication, results, setup_form
from ui.widgets.study_reading import read_case

require_app_entry()

st.title("Reader study")
st.caption(
    "Each reader calls the study's findings on each case first with the AI hidden, then sees the AI and may "
    "revise. Both reads and their times are kept as submitted: a first read cannot be redone once the AI was seen."
)
who = current_reviewer()
if who is None:
    st.info("Enter your name in the sidebar (or sign in) to take part in a reader study.")
    st.stop()

READ, SET_UP, RESULTS = "Read", "Set up a study", "Results and adjudication"
modes = [READ, SET_UP, RESULTS] if who.is_admin else [READ]
mode = st.segmented_control("Mode", modes, default=READ, key=session.STUDY_MODE) if len(modes) > 1 else READ
if who.is_admin and not auth_configured():
    st.caption("Open mode: anyone may set up and adjudicate a study; with sign-in, only admins may.")

with database.transaction() as db:
    every_study = studies.studies(db)


def _choose(options: list[studies.StudyRecord], label: str) -> studies.StudyRecord | None:
    if not options:
        return None
    by_id = {s.study_id: s for s in options}
    chosen = st.selectbox(
        label,
        list(by_id),
        format_func=lambda i: (
            f"{by_id[i].name} · {len(by_id[i].run_ids)} cases" + ("" if by_id[i].open else " · closed")
        ),
        key=session.STUDY_CHOSEN,
    )
    return by_id.get(chosen)


if mode == READ:
    study = _choose([s for s in every_study if s.open], "Study")
    if study is None:
        st.info("No reader study is open. The lead (admin) sets one up on this page.")
        st.stop()
    read_case(study, who.identity)
elif mode == SET_UP:
    setup_form(who.identity)
    open_ones = [s for s in every_study if s.open]
    if open_ones:
        st.subheader("Open studies")
        for s in open_ones:
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.write(f"**{s.name}** · {len(s.run_ids)} cases · findings: {', '.join(s.findings)} · by {s.created_by}")
            if right.button("Close", key=session.study_close_key(s.study_id)):
                try:
                    with database.transaction() as db:
                        studies.close_study(db, s.study_id, who.identity)
                except InvalidReview as problem:
                    st.error(str(problem))
                else:
                    st.rerun()
else:
    study = _choose(every_study, "Study")
    if study is None:
        st.info("No reader study yet: set one up first.")
        st.stop()
    results(study)
    adjudication(study, who.identity)
