"""Measurements of segmented structures, the structure verdict panel and its history."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from inference.volume.case import UPLOADED_MASK_MODEL_ID
from inference.volume.types import StructureMeasurement
from storage import repository
from ui import database
from ui.identity import visible_reviewer
from ui.text import md_escape
from ui.widgets.verdicts import STRUCTURES, VerdictItem, blinding_caption, verdict_panel


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


def masks_origin(model_id: str, trained: bool) -> str:
    """What made the masks, said next to every volume and on the viewer: an uploaded file, or an
    untrained model (whose masks mean nothing)."""
    if model_id == UPLOADED_MASK_MODEL_ID:
        return " (uploaded mask)"
    return "" if trained else " (untrained model: meaningless)"


def structure_verdict_panel(
    run_id: int, measurements: tuple[StructureMeasurement, ...], label: str, scope: str = "volumes"
) -> None:
    """One row per structure with its volume; ``label`` says what produced the masks (untrained
    model, uploaded file) next to every volume. ``scope`` is the page."""
    items = [
        VerdictItem(m.name, f"**{md_escape(m.name)}** · {m.volume_ml:.1f} mL{md_escape(label)}") for m in measurements
    ]
    verdict_panel(STRUCTURES, run_id, items, scope, "Your verdicts on each structure")


def structure_history(run_id: int) -> None:
    only = visible_reviewer()
    with database.transaction() as session:
        rows = repository.verdict_history(session, run_id, reviewer=only)
        names = repository.reviewer_names(session)
    blinding_caption()
    if not rows:
        st.caption("No verdicts recorded yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "time (UTC)": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "reviewer": names.get(v.reviewer, v.reviewer),
                    "structure": v.item,
                    "verdict": v.verdict.value,
                    "note": v.note,
                    "replaces entry": f"#{v.supersedes_id}" if v.supersedes_id else "",
                    "entry": f"#{v.verdict_id}",
                }
                for v in rows
            ]
        ),
        hide_index=True,
    )
