"""Image and heatmap side by side, a faithfulness score for the heatmap on request, and every method compared.

In the browser viewer opacity and colormap never reach the server; in the server-rendered view
they only re-blend cached maps; a new CAM method computes one map once per
(case, method, finding) and caches it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from inference.models.loader import UNTRAINED_LABEL, LoadedModel
from pipelines.analyze import CaseAnalysis
from pipelines.viewer_layers import HEATMAP_FLOOR, IMAGE
from ui import results
from ui.session import CAM_METHOD_PREFERENCE, cam_method_key
from ui.widgets import image_viewer
from xai.cam import CAM_METHODS, CLOSED_FORM_METHOD, heatmap_problem
from xai.faithfulness import TOP_FRACTION, Faithfulness
from xai.overlay import CAM_MEANING, COLORMAPS, OPACITY_RANGE, jpeg_bytes, legend_png, overlay

VIEWER_KEY = "xray_viewer"
VIEWER_HEIGHT = 620
# A heatmap beside its image (the spec's ``cam_beside``): two viewers of the same size that follow
# each other's zoom, pan and window, the unmarked image on the left.
ORIGINAL_VIEWER_KEY = "xray_viewer::original"
BESIDE_HEIGHT = 470
BESIDE_SYNC = "cam-beside"
CHECKED = "_faithfulness_checked"  # (case, weights, method, finding) scored in this session


def selected_map(analysis: CaseAnalysis, loaded: LoadedModel, method: str, label: str) -> np.ndarray:
    if method == CLOSED_FORM_METHOD:
        return analysis.gradcam.map_for(label)
    case, index = analysis.facts.input_sha256, loaded.classifier_spec.labels.index(label)
    return results.cam_map(case, loaded.weights_sha256, method, index, loaded, analysis.model_input)


def faithfulness_for(
    analysis: CaseAnalysis, loaded: LoadedModel, methods: tuple[str, ...], label: str
) -> dict[str, Faithfulness]:
    cams = tuple(selected_map(analysis, loaded, m, label) for m in methods)
    case, index = analysis.facts.input_sha256, loaded.classifier_spec.labels.index(label)
    return results.faithfulness(case, loaded.weights_sha256, methods, index, loaded, analysis.model_input, cams)


def _remember(analysis: CaseAnalysis, loaded: LoadedModel, methods: tuple[str, ...], label: str) -> None:
    checked: set = st.session_state.setdefault(CHECKED, set())
    checked.update((analysis.facts.input_sha256, loaded.weights_sha256, m, label) for m in methods)


def faithfulness_line(container, analysis: CaseAnalysis, loaded: LoadedModel, method: str, label: str) -> None:
    """The faithfulness of the heatmap shown: five model runs, so only when the reader asks for it
    (or from the cache once scored in this session), never on opening a case or switching the
    finding, where it would hold the page and the viewer back for seconds on a CPU."""
    key = (analysis.facts.input_sha256, loaded.weights_sha256, method, label)
    container = container.empty()  # the score takes the button's place in the run that asked for it
    if key not in st.session_state.get(CHECKED, set()):
        asked = container.button(
            "Check this heatmap's faithfulness",
            key="check_faithfulness",
            help=(
                f"Blurs the top {TOP_FRACTION:.0%} of the heatmap's pixels, and as many random pixels, "
                "and scores the image again (5 model runs)."
            ),
        )
        if not asked:
            return
        _remember(analysis, loaded, (method,), label)
    container.caption(faithfulness_text(faithfulness_for(analysis, loaded, (method,), label)[method], loaded.trained))


def faithfulness_text(result: Faithfulness, trained: bool) -> str:
    if result.score is None:
        return f"Faithfulness: not scored ({result.problem})"
    prefix = "" if trained else "Untrained weights, meaningless: "
    return prefix + (
        f"Faithfulness {result.score:+.3f}: blurring the top {TOP_FRACTION:.0%} of this heatmap "
        f"{_moves(result.drop_top)} the score, blurring random pixels of the same area {_moves(result.drop_random)} it."
    )


def _moves(drop: float) -> str:
    """A drop in score in words: 'lowers by 0.006', 'raises by 0.006' (never 'lowers by -0.006')."""
    if round(drop, 3) == 0:
        return "leaves unchanged"
    return f"{'lowers' if drop > 0 else 'raises'} by {abs(drop):.3f}"


def method_choice(container: Any, analysis: CaseAnalysis) -> str:
    """The CAM method, chosen per case (a new case's list never shows one method while its viewer
    draws another) and starting from the reader's last choice."""
    key = cam_method_key(analysis.facts.input_sha256)
    if st.session_state.get(key) not in CAM_METHODS:
        st.session_state[key] = st.session_state.get(CAM_METHOD_PREFERENCE, CLOSED_FORM_METHOD)
    return str(container.selectbox("CAM method", CAM_METHODS, key=key, on_change=_prefer, args=(key,)))


def _prefer(key: str) -> None:
    st.session_state[CAM_METHOD_PREFERENCE] = st.session_state[key]


def reading_columns() -> tuple[Any, Any]:
    """The image (about two thirds of the width) and beside it what the reader works with: the
    findings, or the question asked before the model runs. Before and after the answer the page
    has this one layout, so the viewer stays at its place in the page and the browser keeps it:
    a viewer Streamlit moves is rebuilt (a new WebGL context and its shaders), about half a
    second of software rendering for each new upload."""
    view_col, side_col = st.columns([2.2, 1], gap="medium")
    return view_col, side_col


def _view_row() -> tuple[Any, Any, bool]:
    """The line above the image, the same in every state of the page: a box on the left (the CAM
    method, or a hint), the reader's switch to the server-rendered view on the right, and whether
    the browser viewer is drawn."""
    left_box, switch_box = st.columns([2, 1], vertical_alignment="bottom")
    return left_box, switch_box, image_viewer.use_browser_viewer(switch_box)


def awaiting_image(message: str) -> None:
    """Before an upload: ``message``, and below it the reading layout with the viewer empty, at
    the place where the uploaded image will be shown (``reading_columns``)."""
    st.container().info(message)  # the place of what is said of a case above its image
    with st.container():  # the place of the reading part's container
        view_col, _ = reading_columns()
        with view_col:
            if _view_row()[2]:
                image_viewer.show_empty(VIEWER_KEY, "No image yet: drop one above.", height=VIEWER_HEIGHT)


def whole_image(input_sha256: str, filename: str, data: bytes) -> tuple[int, int] | None:
    """Before the model runs: the whole upload in the browser viewer, at the place where its
    heatmap will be drawn (``cam_viewer``'s); its (rows, columns). None when the page shows the
    server-rendered views instead (nothing is drawn but the switch). Raises ``ReviewError`` for a
    file that cannot be read."""
    hint_box, _, browser = _view_row()
    if not browser:
        return None
    scene = results.xray_viewer_scene(input_sha256, filename, data)
    if scene is None:
        return None
    hint_box.caption("The whole image as uploaded (window, zoom and pan as in the reading view)")
    image_viewer.show(scene.only(IMAGE), VIEWER_KEY, height=VIEWER_HEIGHT)
    return scene.image_shape[0], scene.image_shape[1]


def cam_viewer(
    analysis: CaseAnalysis, loaded: LoadedModel, label: str, filename: str = "", data: bytes | None = None
) -> str | None:
    """The heatmap of ``label`` (the finding being judged) for the chosen method: over the whole
    radiograph in the browser viewer (window/level, zoom, pan; opacity and colours in the
    browser), or server-rendered beside the model's crop. ``data`` is the upload; without it the
    image comes from the image store. Returns the method of the heatmap drawn, None when none is.
    Drawn in the caller's fragment, with the verdict panel that stores the method shown."""
    # The method and the view switch on one line: the image starts as high on the screen as it can.
    method_box, switch_box, browser = _view_row()
    scene = results.xray_viewer_scene(analysis.facts.input_sha256, filename, data) if browser else None
    if browser and scene is None:
        switch_box.caption("The full image is not kept, so the server-rendered crop is shown.")
    if scene is None:
        return _server_rendered(analysis, loaded, label, method_box)
    method = method_choice(method_box, analysis)
    cam = selected_map(analysis, loaded, method, label)
    tag = "" if loaded.trained else f" ({UNTRAINED_LABEL})"
    problem = heatmap_problem(cam)
    shown: str | None = method
    if problem:  # the warning below the viewer: above it, it would move the viewer and rebuild it
        image_viewer.show(scene, VIEWER_KEY, height=VIEWER_HEIGHT)
        st.warning(problem)
        shown = None
    else:
        caption = f"{method} for {label}{tag}"
        layer = results.heatmap_viewer_layer(
            analysis.facts.input_sha256,
            loaded.weights_sha256,
            method,
            label,
            loaded.trained,
            scene.image_shape,
            caption,
            cam,
        )
        if loaded.classifier_spec.cam_beside:
            original, heatmap = st.columns(2, gap="small")
            with original:
                image_viewer.show(
                    scene.only(IMAGE), ORIGINAL_VIEWER_KEY, height=BESIDE_HEIGHT, sync=BESIDE_SYNC, colorbar=True
                )
                st.caption("The image as read, unmarked (zoom, pan and window follow the heatmap's side)")
            with heatmap:
                image_viewer.show(
                    scene.with_layers(layer), VIEWER_KEY, height=BESIDE_HEIGHT, sync=BESIDE_SYNC, colorbar=True
                )
                st.caption(caption)
        else:
            image_viewer.show(scene.with_layers(layer), VIEWER_KEY, height=VIEWER_HEIGHT)
        faithfulness_line(st, analysis, loaded, method, label)
    if not loaded.trained:
        st.error("Heatmap from untrained weights: it shows nothing about disease.")
    st.caption(
        f"{CAM_MEANING} The whole image; the yellow square is what the model sees. "
        f"Heatmap values below {HEATMAP_FLOOR:.0%} of its scale are not drawn."
    )
    return shown


def _server_rendered(analysis: CaseAnalysis, loaded: LoadedModel, label: str, method_box: Any) -> str | None:
    method = method_choice(method_box, analysis)
    controls = st.columns(2)
    colormap = controls[0].selectbox("Colormap", COLORMAPS, key="cam_colormap")
    opacity = controls[1].slider("Opacity", *OPACITY_RANGE, value=0.45, step=0.05, key="cam_opacity")
    cam = selected_map(analysis, loaded, method, label)
    tag = "" if loaded.trained else f" — {UNTRAINED_LABEL}"
    left, right = st.columns(2)
    left.image(
        results.display_png(analysis.facts.input_sha256, analysis.display),
        caption="Image (the square centre crop the model sees)",
        width="stretch",
        output_format="PNG",
    )
    problem = heatmap_problem(cam)
    shown: str | None = method
    if problem:
        right.warning(problem)
        shown = None
    else:
        right.image(
            jpeg_bytes(overlay(analysis.display, cam, colormap, opacity, trained=loaded.trained)),
            caption=f"{method} for {label}{tag}",
            width="stretch",
            output_format="JPEG",
        )
        right.image(legend_png(colormap), width="stretch", output_format="PNG")
        right.caption("colour scale: low contribution (left) → high contribution (right)")
        faithfulness_line(right, analysis, loaded, method, label)
    if not loaded.trained:
        st.error("Heatmap from untrained weights: it shows nothing about disease.")
    st.caption(CAM_MEANING)
    return shown


def compare_methods(analysis: CaseAnalysis, loaded: LoadedModel, label: str, colormap: str = "jet") -> None:
    """Every offered method side by side for one finding, each with its faithfulness score."""
    scores = faithfulness_for(analysis, loaded, CAM_METHODS, label)
    _remember(analysis, loaded, CAM_METHODS, label)
    ranked = sorted(CAM_METHODS, key=lambda m: -(scores[m].score if scores[m].score is not None else -np.inf))
    if not loaded.trained:
        st.error("Heatmaps and faithfulness scores from untrained weights: they show nothing about disease.")
    st.caption(
        f"Ranked by faithfulness for {label}: how much more the score drops when the method's top "
        f"{TOP_FRACTION:.0%} pixels are blurred than when random pixels are."
    )
    for start in range(0, len(ranked), 3):
        for column, method in zip(st.columns(3), ranked[start : start + 3]):
            cam = selected_map(analysis, loaded, method, label)
            result = scores[method]
            heading = f"{method}: {result.score:+.3f}" if result.score is not None else f"{method}: not scored"
            if not loaded.trained:
                heading += " (untrained weights: meaningless)"
            if heatmap_problem(cam):
                column.warning(f"{heading}. {heatmap_problem(cam)}")
                continue
            column.image(
                jpeg_bytes(overlay(analysis.display, cam, colormap, 0.45, trained=loaded.trained)),
                caption=heading,
                width="stretch",
                output_format="JPEG",
            )
