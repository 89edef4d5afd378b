"""Every case, critical first, with its review status; open one or jump to the next unreviewed."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import exports
from core.vocabulary import RunKind
from storage import reporting
from ui import results
from ui.downloads import export_button
from ui.entry import require_app_entry
from ui.identity import visible_reviewer
from ui.widgets.next_case import (
    CASE_PAGE,
    next_unreviewed_button,
    progress_caption,
    reader_worklist,
    study_cases_note,
)

require_app_entry()

st.title("Worklist")
board = reader_worklist()
study_cases_note(board)
rows, volume_rows = board.cases, board.segmentations
own = visible_reviewer() is not None


def volume_section() -> None:
    if not volume_rows:
        return
    st.subheader("MRI and CT segmentations")
    picked = st.dataframe(
        pd.DataFrame(
            [
                {
                    "run": r.run_id,
                    "case": r.case_id,
                    "stored (UTC)": r.created_at.strftime("%Y-%m-%d %H:%M"),
                    "modality": r.modality,
                    "masks from": "uploaded mask" if r.kind is RunKind.UPLOADED_MASK else r.model_id,
                    "structures": r.structures,
                    "status": r.status,
                    "weights": "n/a" if r.kind is RunKind.UPLOADED_MASK else ("trained" if r.trained else "UNTRAINED"),
                }
                for r in volume_rows
            ]
        ),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="wl_volume_table",
    )
    st.caption(
        "Newest first · click a row to open it with its kept volume and masks · " + progress_caption("structure", own)
    )
    if picked.selection.rows:
        st.switch_page(CASE_PAGE, query_params={"segmentation": str(volume_rows[picked.selection.rows[0]].run_id)})
    only = visible_reviewer()
    export_button(
        "Structure verdicts (CSV)",
        lambda session: exports.structure_verdicts_csv(
            reporting.current_structure_verdict_facts(session, reviewer=only)
        ),
        file_name="structure_verdicts.csv",
        mime="text/csv",
        kind="structure verdicts (CSV)",
    )
    if only is not None:
        st.caption("The export holds only your own verdicts; the lead (admin) exports everyone's.")


if not rows:
    if volume_rows:
        volume_section()
    elif not board.in_study:
        st.info("No cases yet. Analyse a chest X-ray or an MRI/CT volume and it appears here.")
    st.stop()

if not next_unreviewed_button(rows):
    st.success(
        "You have given a verdict on every finding of every case."
        if own
        else "Every case has been fully reviewed by at least one reader."
    )

filters = st.columns(4)
bands = filters[0].multiselect("Highest band", ["critical", "positive", "indeterminate", "negative"], key="wl_bands")
status = filters[1].selectbox("Status", ["all", "new", "in review", "reviewed"], key="wl_status")
modalities = filters[2].multiselect("Modality", sorted({r.modality for r in rows}), key="wl_modality")
weights = filters[3].selectbox("Weights", ["all", "trained", "untrained"], key="wl_weights")


def keep(row: reporting.WorklistRow) -> bool:
    if bands and row.top_band not in bands:
        return False
    if status != "all" and not row.status.startswith(status):
        return False
    if modalities and row.modality not in modalities:
        return False
    return weights == "all" or (weights == "trained") == row.trained


shown = [r for r in rows if keep(r)]
table = pd.DataFrame(
    [
        {
            "image": results.kept_thumbnail(r.input_sha256),
            "case": r.case_id,
            "analysed (UTC)": r.analysed_at.strftime("%Y-%m-%d %H:%M"),
            "modality": r.modality,
            "view": r.view_position or "",
            "highest band": r.top_band.value,
            "top finding": r.top_finding,
            "status": r.status,
            "model": r.model_id,
            "weights": "trained" if r.trained else "UNTRAINED",
        }
        for r in shown
    ],
    columns=[
        "image",
        "case",
        "analysed (UTC)",
        "modality",
        "view",
        "highest band",
        "top finding",
        "status",
        "model",
        "weights",
    ],  # fmt: skip
)
# A row opens its case in this tab (a link opened a new tab: a new session without the reviewer's
# name or the untrained choice).
picked = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    # A click on any cell opens the case, as the caption says (row selection alone needed the
    # checkbox at the row's left edge: a click on a cell only selected the cell).
    selection_mode=["single-row", "single-cell"],
    key="wl_table",
    column_config={"image": st.column_config.ImageColumn("image", help="The kept image (blank when not kept)")},
    row_height=60,
)
st.caption(
    f"{len(shown)} of {len(rows)} cases · critical first, then newest · {progress_caption('finding', own)} · "
    "click a row to open its case"
)
chosen = picked.selection.rows or [cell[0] for cell in picked.selection.cells]
if chosen:
    st.switch_page(CASE_PAGE, query_params={"case": str(shown[chosen[0]].case_id)})
volume_section()
