"""The per-slice score strip of a volume classified slice by slice: each class's probability on
every scored slice, the slice that drives each class's volume score marked. A click on the strip
moves the viewer to that slice and shows the slice beside its Grad-CAM for the class being judged
(computed for that slice once, then cached)."""

from __future__ import annotations

import streamlit as st

from inference.models.loader import UNTRAINED_LABEL, LoadedModel
from inference.volume.types import Volume
from pipelines.classify import VolumeClassification
from ui import results
from ui.text import md_escape
from ui.widgets import figures
from ui.widgets.volume_viewer import jump_to
from xai.overlay import CAM_MEANING, COLORMAPS, OPACITY_RANGE, jpeg_bytes, legend_png, overlay, png_bytes

STRIP_KEY = "slice_strip"
PICKED = "slice_strip::picked"  # (volume sha256, slice index) the reader last clicked


def _picked(volume_sha256: str, view: str) -> None:
    """The strip's click: the viewer moves to that slice, and its heatmap is shown below."""
    event = st.session_state.get(STRIP_KEY) or {}
    points = (event.get("selection") or {}).get("points") or []
    if points:
        index = int(points[0]["x"])
        st.session_state[PICKED] = (volume_sha256, index)
        jump_to(view, index)


def strip_chart(volume: Volume, run_key: str, result: VolumeClassification, trained: bool) -> None:
    st.plotly_chart(
        figures.strip_figure(run_key, result, trained),
        config={"displayModeBar": False},
        key=STRIP_KEY,
        on_select=lambda: _picked(volume.input_sha256, result.view),
        selection_mode="points",
    )


def slice_heatmap(volume: Volume, result: VolumeClassification, loaded: LoadedModel, label: str) -> None:
    """The slice last clicked on the strip (at first, the one driving ``label``'s volume score) as
    the model read it, beside its Grad-CAM for ``label``, at the same size."""
    k = result.labels.index(label)
    picked = st.session_state.get(PICKED)
    index = picked[1] if picked and picked[0] == volume.input_sha256 else result.driving_slice[k]
    shown = results.volume_slice_heatmaps(
        volume.input_sha256, loaded.weights_sha256, result.view, index, volume, loaded
    )
    driving = " (the slice driving its volume score)" if index == result.driving_slice[k] else ""
    st.markdown(
        f"**{md_escape(label)} on {result.view.lower()} slice {index}**{driving}: {shown.scores[k]:.2f} on this slice"
    )
    controls = st.columns([1, 1, 2])
    colormap = controls[0].selectbox("Colormap", COLORMAPS, key="volume_cam_colormap")
    opacity = controls[1].slider("Opacity", *OPACITY_RANGE, value=0.45, step=0.05, key="volume_cam_opacity")
    tag = "" if loaded.trained else f" — {UNTRAINED_LABEL}"
    left, right, side = st.columns([1, 1, 0.8])
    left.image(
        png_bytes(shown.square),
        caption=f"{result.view} slice {index} as the model read it",
        width="stretch",
        output_format="PNG",
    )
    right.image(
        jpeg_bytes(overlay(shown.square, shown.maps[k], colormap, opacity, trained=loaded.trained)),
        caption=f"Grad-CAM for {label}{tag}",
        width="stretch",
        output_format="JPEG",
    )
    side.image(legend_png(colormap), width="stretch", output_format="PNG")
    side.caption("colour scale: low contribution (left) → high contribution (right)")
    if not loaded.trained:
        side.error("Heatmap from untrained weights: it shows nothing about disease.")
    side.caption(CAM_MEANING + " Click another slice on the strip to see its heatmap.")
