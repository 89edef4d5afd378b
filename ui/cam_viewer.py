"""Image and heatmap side by side. Opacity and colormap only re-blend cached maps; a new CAM
method computes one map once per (case, method, finding) and caches it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from inference.analysis import CaseAnalysis
from inference.model_loader import LoadedModel, UNTRAINED_LABEL
from ui import cache
from ui.session import CAM_METHOD_KEY
from xai.cam import CAM_METHODS, CLOSED_FORM_METHOD, heatmap_problem
from xai.overlay import CAM_MEANING, COLORMAPS, OPACITY_RANGE, jpeg_bytes, legend_png, overlay


def selected_map(analysis: CaseAnalysis, loaded: LoadedModel, method: str, label: str) -> np.ndarray:
    if method == CLOSED_FORM_METHOD:
        return analysis.gradcam.map_for(label)
    return cache.cam_map(
        analysis.facts.input_sha256,
        loaded.weights_sha256,
        method,
        loaded.spec.labels.index(label),
        loaded,
        analysis.model_input,
    )


@st.fragment
def cam_viewer(analysis: CaseAnalysis, loaded: LoadedModel, ranked_labels: list[str]) -> None:
    controls = st.columns([2, 1.4, 1.2, 1.6])
    label = controls[0].selectbox("Finding", ranked_labels, key="cam_finding")
    method = controls[1].selectbox("CAM method", CAM_METHODS, key=CAM_METHOD_KEY)
    colormap = controls[2].selectbox("Colormap", COLORMAPS, key="cam_colormap")
    opacity = controls[3].slider("Opacity", *OPACITY_RANGE, value=0.45, step=0.05, key="cam_opacity")
    cam = selected_map(analysis, loaded, method, label)
    tag = "" if loaded.trained else f" — {UNTRAINED_LABEL}"
    left, right = st.columns(2)
    left.image(analysis.display_png, caption="Image (the square centre crop the model sees)", width="stretch", output_format="PNG")
    problem = heatmap_problem(cam)
    if problem:
        right.warning(problem)
    else:
        right.image(
            jpeg_bytes(overlay(analysis.display, cam, colormap, opacity)),
            caption=f"{method} for {label}{tag}",
            output_format="JPEG",
            width="stretch",
        )
        right.image(legend_png(colormap), width="stretch", output_format="PNG")
        right.caption("colour scale: low contribution (left) → high contribution (right)")
    if not loaded.trained:
        st.error("Heatmap from untrained weights: it shows nothing about disease.")
    st.caption(CAM_MEANING)
