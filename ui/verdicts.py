"""Agree / Disagree / Unsure per finding, notes, and the append-only history of a stored run."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from inference.errors import ReviewError
from inference.types import Finding
from storage import repository
from ui import cache
from ui.charts import BAND_SWATCHES, score_text
from ui.session import CAM_METHOD_KEY, reviewer
from ui.text import md_escape

CHOICES = (("agree", "Agree"), ("disagree", "Disagree"), ("unsure", "Unsure"))
_FEEDBACK = "verdict_feedback"


def _choice_key(run_id: int, label: str, name: str) -> str:
    return f"verdict::{run_id}::{label}::{name}"


def _store(run_id: int, label: str, verdict: str, name: str, note: str, with_heatmap: bool) -> bool:
    # Record which heatmap method the reviewer had on screen, if any.
    cam_method = st.session_state.get(CAM_METHOD_KEY) if with_heatmap else None
    try:
        with cache.transaction() as session:
            repository.record_verdict(session, run_id, label, verdict, name, note, cam_method)
    except ReviewError as exc:
        st.session_state[_FEEDBACK] = ("error", str(exc))
        return False
    st.session_state[_FEEDBACK] = ("ok", f"Saved: {label} — {verdict}" + (" with note." if note else "."))
    return True


def _on_choice(run_id: int, label: str, name: str, stored: str | None, note: str, with_heatmap: bool) -> None:
    key = _choice_key(run_id, label, name)
    chosen = st.session_state.get(key)
    if chosen is None:  # clicking the selected option again: verdicts are never withdrawn
        st.session_state[key] = stored
        return
    _store(run_id, label, chosen, name, note, with_heatmap)


def _on_note(run_id: int, name: str, target_key: str, text_key: str, with_heatmap: bool) -> None:
    label = st.session_state.get(target_key)
    chosen = st.session_state.get(_choice_key(run_id, label, name))
    if chosen is None:
        st.session_state[_FEEDBACK] = ("info", f"Choose Agree, Disagree or Unsure for {label} first, then add the note.")
        return
    if _store(run_id, label, chosen, name, st.session_state.get(text_key, ""), with_heatmap):
        st.session_state[text_key] = ""


def _save_case_note(run_id: int, key: str) -> None:
    try:
        with cache.transaction() as session:
            saved = repository.record_case_note(session, run_id, st.session_state.get(key, ""), reviewer())
        st.session_state[_FEEDBACK] = ("ok", "Case note saved.") if saved else ("info", "The case note is unchanged.")
    except ReviewError as exc:
        st.session_state[_FEEDBACK] = ("error", str(exc))


def _show_feedback() -> None:
    feedback = st.session_state.pop(_FEEDBACK, None)
    if feedback is None:
        return
    kind, message = feedback
    {"ok": st.success, "error": st.error, "info": st.info}[kind](message)


@st.fragment
def verdict_panel(run_id: int, findings: Sequence[Finding], trained: bool, with_heatmap: bool, scope: str) -> None:
    """Agree / Disagree / Unsure for every finding of a stored run, and notes. Each change is
    stored at once as a new row; only this panel reruns. ``scope`` (the page) keeps the text
    boxes of two pages apart."""
    st.subheader("Your verdicts")
    name = reviewer()
    if not name:
        st.info("Enter your name in the sidebar to record verdicts.")
    with cache.transaction() as session:
        mine = {v.finding_label: v for v in repository.current_verdicts(session, run_id, name)} if name else {}
    _show_feedback()
    labels = dict(CHOICES)
    for finding in findings:
        current = mine.get(finding.label)
        key = _choice_key(run_id, finding.label, name)
        # The database is the source of truth (another page or window may have changed it).
        st.session_state[key] = current.verdict if current else None
        row = st.columns([3, 2.6, 3.4], vertical_alignment="center")
        row[0].markdown(
            f"{BAND_SWATCHES[finding.band]} **{md_escape(finding.label)}** · "
            f"{score_text(finding.score, trained)} · {finding.band.value}"
        )
        row[1].segmented_control(
            f"Verdict on {finding.label}",
            options=list(labels),
            format_func=labels.get,
            key=key,
            label_visibility="collapsed",
            disabled=not name,
            on_change=_on_choice,
            args=(run_id, finding.label, name, current.verdict if current else None,
                  current.note if current else "", with_heatmap),
        )
        if current is not None and current.note:
            row[2].caption(f"Note: {md_escape(current.note)}")
    target_key, text_key = f"{scope}::note_target::{run_id}", f"{scope}::note_text::{run_id}::{name}"
    left, right = st.columns([1, 2])
    left.selectbox("Note on finding", [f.label for f in findings], key=target_key, disabled=not name)
    right.text_input(
        "Note (press Enter to save with your verdict)",
        key=text_key,
        max_chars=repository.MAX_NOTE_CHARS,
        disabled=not name,
        on_change=_on_note,
        args=(run_id, name, target_key, text_key, with_heatmap),
    )
    _case_note(run_id, name, scope)


def _case_note(run_id: int, name: str, scope: str) -> None:
    key = f"{scope}::case_note::{run_id}::{name}"
    if name and key not in st.session_state:
        with cache.transaction() as session:
            current = repository.current_case_note(session, run_id, name)
        st.session_state[key] = current.note if current else ""
    st.text_area("Case note", key=key, max_chars=repository.MAX_NOTE_CHARS, disabled=not name)
    st.button("Save case note", key=f"{scope}::save_case_note::{run_id}", disabled=not name,
              on_click=_save_case_note, args=(run_id, key))


def history_table(run_id: int) -> None:
    """Every verdict and case note ever recorded for the run, oldest first (text, never HTML)."""
    with cache.transaction() as session:
        verdicts = repository.verdict_history(session, run_id)
        notes = repository.case_note_history(session, run_id)
    if not verdicts and not notes:
        st.caption("No verdicts recorded yet.")
        return
    rows = [
        {
            "time (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "reviewer": v.reviewer,
            "finding": v.finding_label,
            "verdict": v.verdict,
            "note": v.note,
            "replaces entry": f"#{v.supersedes_id}" if v.supersedes_id else "",
            "entry": f"#{v.verdict_id}",
        }
        for v in verdicts
    ] + [
        {
            "time (UTC)": n.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "reviewer": n.reviewer,
            "finding": "(case note)",
            "verdict": "",
            "note": n.note,
            "replaces entry": f"note #{n.supersedes_id}" if n.supersedes_id else "",
            "entry": f"note #{n.note_id}",
        }
        for n in notes
    ]
    frame = pd.DataFrame(rows).sort_values("time (UTC)", kind="stable")
    st.dataframe(frame, hide_index=True)
