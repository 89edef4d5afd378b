"""Measurements and Agree / Disagree / Unsure per segmented structure, stored append-only."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from inference.errors import ReviewError
from inference.volume_types import StructureMeasurement
from storage import repository, segmentation_repository
from ui import cache
from ui.session import reviewer
from ui.text import md_escape

CHOICES = (("agree", "Agree"), ("disagree", "Disagree"), ("unsure", "Unsure"))
_FEEDBACK = "structure_verdict_feedback"


def measurement_rows(measurements: tuple[StructureMeasurement, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "structure": m.name,
                "label values": ", ".join(str(v) for v in m.values),
                "voxels": m.voxels,
                "volume (mL)": round(m.volume_ml, 2),
                "axial slices": f"{m.axial_first + 1}–{m.axial_last + 1}" if m.axial_first is not None else "—",
                "largest axial extent (mm)": round(m.max_axial_extent_mm, 1),
            }
            for m in measurements
        ]
    )


def _key(run_id: int, structure: str, name: str) -> str:
    return f"sverdict::{run_id}::{structure}::{name}"


def _store(run_id: int, structure: str, verdict: str, name: str, note: str) -> bool:
    try:
        with cache.transaction() as session:
            segmentation_repository.record_structure_verdict(session, run_id, structure, verdict, name, note)
    except ReviewError as exc:
        st.session_state[_FEEDBACK] = ("error", str(exc))
        return False
    st.session_state[_FEEDBACK] = ("ok", f"Saved: {structure} — {verdict}" + (" with note." if note else "."))
    return True


def _on_choice(run_id: int, structure: str, name: str, stored: str | None, note: str) -> None:
    key = _key(run_id, structure, name)
    chosen = st.session_state.get(key)
    if chosen is None:  # clicking the selected option again: verdicts are never withdrawn
        st.session_state[key] = stored
        return
    _store(run_id, structure, chosen, name, note)


def _on_note(run_id: int, name: str, target_key: str, text_key: str) -> None:
    structure = st.session_state.get(target_key)
    chosen = st.session_state.get(_key(run_id, structure, name))
    if chosen is None:
        st.session_state[_FEEDBACK] = ("info", f"Choose Agree, Disagree or Unsure for {structure} first, then add the note.")
        return
    if _store(run_id, structure, chosen, name, st.session_state.get(text_key, "")):
        st.session_state[text_key] = ""


@st.fragment
def structure_verdict_panel(run_id: int, measurements: tuple[StructureMeasurement, ...], label: str) -> None:
    """One row per structure: its volume, and the reviewer's verdict stored at once as a new row.
    ``label`` says what produced the masks (untrained model, uploaded file) next to every volume."""
    st.subheader("Your verdicts on each structure")
    name = reviewer()
    if not name:
        st.info("Enter your name in the sidebar to record verdicts.")
    with cache.transaction() as session:
        mine = {v.structure: v for v in segmentation_repository.current_structure_verdicts(session, run_id, name)} if name else {}
    feedback = st.session_state.pop(_FEEDBACK, None)
    if feedback is not None:
        {"ok": st.success, "error": st.error, "info": st.info}[feedback[0]](feedback[1])
    options = dict(CHOICES)
    for m in measurements:
        current = mine.get(m.name)
        key = _key(run_id, m.name, name)
        st.session_state[key] = current.verdict if current else None
        row = st.columns([3, 2.6, 3.4], vertical_alignment="center")
        row[0].markdown(f"**{md_escape(m.name)}** · {m.volume_ml:.1f} mL{md_escape(label)}")
        row[1].segmented_control(
            f"Verdict on {m.name}", options=list(options), format_func=options.get, key=key,
            label_visibility="collapsed", disabled=not name, on_change=_on_choice,
            args=(run_id, m.name, name, current.verdict if current else None, current.note if current else ""),
        )
        if current is not None and current.note:
            row[2].caption(f"Note: {md_escape(current.note)}")
    target_key, text_key = f"snote_target::{run_id}", f"snote_text::{run_id}::{name}"
    left, right = st.columns([1, 2])
    left.selectbox("Note on structure", [m.name for m in measurements], key=target_key, disabled=not name)
    right.text_input("Note (press Enter to save with your verdict)", key=text_key, max_chars=repository.MAX_NOTE_CHARS,
                     disabled=not name, on_change=_on_note, args=(run_id, name, target_key, text_key))


def structure_history(run_id: int) -> None:
    with cache.transaction() as session:
        rows = segmentation_repository.structure_verdict_history(session, run_id)
    if not rows:
        st.caption("No verdicts recorded yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "time (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "reviewer": v.reviewer,
                    "structure": v.structure,
                    "verdict": v.verdict,
                    "note": v.note,
                    "replaces entry": f"#{v.supersedes_id}" if v.supersedes_id else "",
                    "entry": f"#{v.verdict_id}",
                }
                for v in rows
            ]
        ),
        hide_index=True,
    )
