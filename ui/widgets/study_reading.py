"""A reader's turn in a reader study: the next case they have not finished, its image with the AI
hidden and a call per finding; once submitted, the AI's scores, bands and heatmap, and the same calls
to revise."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from analytics.reader_study import ai_calls
from core.errors import InvalidReview
from core.types import Finding
from core.vocabulary import Presence, StudyPhase
from storage import repository, studies
from storage.models import utcnow
from ui import database, results
from ui.session import (
    study_call_key,
    study_form_key,
    study_heatmap_key,
    study_started_key,
    study_submit_key,
    study_viewer_key,
)
from ui.text import md_escape
from ui.widgets import image_viewer
from ui.widgets.cam_viewer import cam_viewer
from ui.widgets.charts import band_legend_text, normal_labels, score_text
from ui.widgets.kept_case import kept_analysis

CHOICES = [p.value for p in Presence]


def _started(study_id: int, run_id: int, phase: StudyPhase, reader: str) -> datetime:
    """When this reader was first shown this case in this phase (kept in the session)."""
    return st.session_state.setdefault(study_started_key(study_id, run_id, phase.value, reader), utcnow())


def _plain_image(run: repository.ClassificationRunRecord) -> None:
    """The kept image with nothing of the AI on it."""
    sha = run.facts.input_sha256
    scene = results.xray_viewer_scene(sha, "", None) if image_viewer.browser_viewer_chosen() else None
    if scene is not None:
        image_viewer.show(scene, study_viewer_key(run.run_id), height=620)
        return
    picture = results.kept_display_png(sha)
    if picture is None:
        st.warning("This case's image is not kept (image store off or past its retention): it cannot be read here.")
    else:
        st.image(picture, caption="The image (the square centre crop the model saw)", output_format="PNG")


def calls_form(
    study: studies.StudyRecord, run_id: int, phase: StudyPhase, start: dict[str, Presence] | None, button: str
) -> dict[str, str | None] | None:
    """A call per finding (starting from ``start``); the calls when submitted, else None."""
    with st.form(study_form_key(study.study_id, run_id, phase.value), border=False):
        calls = {}
        for finding in study.findings:
            first = start.get(finding) if start else None
            calls[finding] = st.radio(
                finding,
                CHOICES,
                index=CHOICES.index(first.value) if first else None,
                horizontal=True,
                key=study_call_key(study.study_id, run_id, phase.value, finding),
            )
        submitted = st.form_submit_button(
            button, type="primary", key=study_submit_key(study.study_id, run_id, phase.value)
        )
    return calls if submitted else None


def store_calls(
    study: studies.StudyRecord, run_id: int, reader: str, phase: StudyPhase, calls: dict[str, str | None]
) -> bool:
    """Store a submitted read, saying on the page why not when it is refused (True when stored)."""
    missing = [f for f, c in calls.items() if c is None]
    if missing:
        st.error(f"Call every finding before submitting; not yet called: {', '.join(missing)}.")
        return False
    try:
        with database.transaction() as db:
            studies.record_read(
                db,
                study.study_id,
                run_id,
                reader,
                phase,
                {f: str(c) for f, c in calls.items()},
                _started(study.study_id, run_id, phase, reader),
            )
    except InvalidReview as problem:
        st.error(str(problem))
        return False
    return True


def _ai_output(run: repository.ClassificationRunRecord, found: tuple[Finding, ...], asked: tuple[str, ...]) -> None:
    """The AI's scores, bands and calls of the study's findings (``found``: all of the run's, as a
    "nothing found" class's call depends on the others)."""
    if not run.trained:
        st.error(
            "This run used UNTRAINED weights: the AI's scores and calls are meaningless. A study of them tests the "
            "workflow, not the AI."
        )
    normal = normal_labels(run.model_id)
    calls = ai_calls(found, tuple(normal))
    st.dataframe(
        [
            {
                "finding": f.label,
                "AI score": score_text(f.score, run.trained),
                "band": "– (none of its own)" if f.label in normal else f.band.value,
                "AI's call": calls[f.label].value if calls.get(f.label) else "no call",
            }
            for f in sorted(found, key=lambda f: (-f.band.rank, -f.score))
            if f.label in asked
        ],
        hide_index=True,
    )
    said = f"{band_legend_text()} · positive or critical means present, negative absent, indeterminate no call"
    if normal:
        said += f"; {', '.join(sorted(normal))}: present when every other class is negative"
    st.caption(said)


def read_case(study: studies.StudyRecord, reader: str) -> None:
    with database.transaction() as db:
        mine = studies.reads(db, study.study_id, reviewer=reader)
    phases: dict[int, set[StudyPhase]] = {}
    for read in mine:
        phases.setdefault(read.run_id, set()).add(read.phase)
    done = [r for r in study.run_ids if StudyPhase.AIDED in phases.get(r, set())]
    waiting = [r for r in study.run_ids if r not in done]
    st.progress(len(done) / len(study.run_ids), text=f"{len(done)} of {len(study.run_ids)} cases read")
    if not waiting:
        st.success("You have read every case of this study. Thank you: the lead sees the results.")
        return
    run_id = waiting[0]
    with database.transaction() as db:
        run = repository.get_run(db, run_id, repository.ClassificationRunRecord)
        found = studies.study_findings(db, study)[run_id]
    shown = tuple(f for f in found if f.label in study.findings)
    if run is None:
        st.error(f"Run {run_id} of this study could not be found; tell the lead.")
        return
    first = next((r for r in mine if r.run_id == run_id and r.phase is StudyPhase.UNAIDED), None)
    number = study.run_ids.index(run_id) + 1
    st.subheader(f"Case {number} of {len(study.run_ids)}")
    image_col, calls_col = st.columns([2.2, 1], gap="medium")
    if first is None:
        _started(study.study_id, run_id, StudyPhase.UNAIDED, reader)
        with image_col:
            _plain_image(run)
        with calls_col:
            st.markdown("**Your first read: the AI is hidden.** Call each finding.")
            calls = calls_form(study, run_id, StudyPhase.UNAIDED, None, "Submit first read (AI hidden)")
            if calls is not None and store_calls(study, run_id, reader, StudyPhase.UNAIDED, calls):
                st.rerun()
        return
    _started(study.study_id, run_id, StudyPhase.AIDED, reader)
    with calls_col:
        st.markdown("**The AI's output.** Your first read is kept as you made it; revise your calls if you wish.")
        _ai_output(run, found, study.findings)
        labels = [f.label for f in sorted(shown, key=lambda f: (-f.band.rank, -f.score))]
        label = st.selectbox("Heatmap of", labels, key=study_heatmap_key(study.study_id, run_id))
        calls = calls_form(study, run_id, StudyPhase.AIDED, first.answers, "Submit final read (with AI)")
        st.caption("Your first read: " + " · ".join(f"{md_escape(f)} {first.answers[f].value}" for f in study.findings))
        if calls is not None and store_calls(study, run_id, reader, StudyPhase.AIDED, calls):
            st.rerun()
    with image_col:
        analysis, state = kept_analysis(run)
        if analysis is not None and state is not None:
            cam_viewer(analysis, state, label)
        else:
            _plain_image(run)
