"""Measurements of segmented structures, the structure verdict panel and its history."""

from __future__ import annotations

import pandas as pd

from inference.volume.case import UPLOADED_MASK_MODEL_ID
from inference.volume.types import StructureMeasurement
from ui.text import md_escape
from ui.widgets.verdicts import STRUCTURES, VerdictItem, history_table, verdict_panel


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
    """The verdicts on a segmentation's structures, in the one history table."""
    history_table(run_id, "structure", case_notes=False)
