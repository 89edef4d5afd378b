"""A segmentation's results, the same on the MRI/CT page (just computed) and the case page
(reopened from the store): what made the masks, the volume per structure, a jump to each
structure, a verdict on every structure and their history."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from inference.dicom_out.seg import seg_bytes
from inference.volume.case import UPLOADED_MASK_MODEL_ID, reviewed_structures
from inference.volume.types import MultiChannelVolume, Segmentation, Volume
from ui.downloads import export_button
from ui.session import dicom_seg_key
from ui.text import md_escape
from ui.widgets import figures
from ui.widgets.structure_verdicts import (
    masks_origin,
    measurement_rows,
    structure_history,
    structure_verdict_panel,
)
from ui.widgets.volume_viewer import jump_to

CHANNEL_NAMES = {"t1c": "T1c (contrast)", "t1": "T1", "t2": "T2", "flair": "FLAIR"}


def shown_channel(inputs: Volume | MultiChannelVolume, key: str) -> Volume:
    """The volume to show: a BraTS case's channel chosen by the reader (FLAIR first), else the volume."""
    if not isinstance(inputs, MultiChannelVolume):
        return inputs
    names = [CHANNEL_NAMES.get(c, c) for c in inputs.channel_names]
    default = names.index("FLAIR") if "FLAIR" in names else 0
    chosen = st.radio("Channel shown", names, index=default, horizontal=True, key=key)
    return inputs.channels[names.index(chosen)]


def origin_label(segmentation: Segmentation) -> str:
    return masks_origin(segmentation.model.model_id, segmentation.model.trained)


def _go_to(present: dict, key: str) -> None:
    target = present.get(st.session_state.get(key))
    if target is not None:
        jump_to("Axial", (target.axial_first + target.axial_last) // 2)


def segmentation_results(
    segmentation: Segmentation,
    volume: Volume,
    run_id: int,
    scope: str,
    case_downloads: Callable[[], None] | None = None,
) -> None:
    """``scope`` is the page ("volumes", "cases"): it keys the widgets and the verdict panel.
    ``volume`` is the one the masks were drawn on (a BraTS case's first channel).
    ``case_downloads``: the page's other downloads of the run (the case page's report and SR),
    drawn in the same row as the SEG."""
    model = segmentation.model
    origin = origin_label(segmentation)
    if model.model_id == UPLOADED_MASK_MODEL_ID:
        what = f"uploaded mask, sha256 {model.weights_sha256[:12]}…"
    else:
        weights = "trained weights" if model.trained else "UNTRAINED weights"
        what = (
            f"model {model.model_id}, {weights} sha256 {model.weights_sha256[:12]}…, "
            f"{segmentation.timing_ms / 1000:.1f} s on {model.device.upper()}"
        )
    st.caption(md_escape(f"Segmentation run #{run_id} · {what}"))
    measurements = reviewed_structures(segmentation.measurements)
    absent = [m.name for m in segmentation.measurements if m not in measurements]
    label_colours = {info.value: "#{:02x}{:02x}{:02x}".format(*info.color) for info in segmentation.label_map.labels}
    table, chart = st.columns([1.3, 1])
    table.dataframe(measurement_rows(measurements), hide_index=True)
    colours = [label_colours.get(m.values[0], "#888888") if len(m.values) == 1 else "#9e9e9e" for m in measurements]
    chart.plotly_chart(
        figures.volume_figure(
            f"segmentation-run-{run_id}",
            tuple(m.name for m in measurements),
            tuple(m.volume_ml for m in measurements),
            tuple(colours),
            "Volume per structure" + origin,
        ),
        config={"displayModeBar": False},
        key=f"{scope}::volume_chart::{run_id}",
    )
    if absent:
        st.caption(md_escape(f"No voxels, so not listed for review ({len(absent)}): " + ", ".join(absent)))
    params = [{"parameter": k, "value": v} for k, v in segmentation.params if k != "mask_sha256"]
    if params:
        with st.expander("How it was computed (run parameters)"):
            st.dataframe(params, hide_index=True)
    present = {m.name: m for m in measurements if m.axial_first is not None}
    if present:
        goto_key = f"{scope}::goto_structure::{run_id}"
        st.selectbox(
            "Go to a structure (axial view, middle of its slice range)",
            list(present),
            index=None,
            key=goto_key,
            placeholder="choose a structure",
            on_change=_go_to,
            args=(present, goto_key),
        )
    structure_verdict_panel(run_id, measurements, origin, scope=scope)
    seg_column, others = st.columns([1, 2]) if case_downloads is not None else (st.container(), None)
    with seg_column:
        export_button(
            "Download the masks as DICOM SEG",
            lambda _session: seg_bytes(volume, segmentation),
            file_name=f"segmentation-run-{run_id}.dcm",
            mime="application/dicom",
            kind="dicom_seg",
            run_id=run_id,
            key=dicom_seg_key(scope, run_id),
        )
    if others is not None and case_downloads is not None:
        with others:
            case_downloads()
    if st.toggle("Show the verdict history of this segmentation", key=f"{scope}::structure_history::{run_id}"):
        structure_history(run_id)
