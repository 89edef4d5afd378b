"""The slice scroller: three views, image and image-with-masks side by side, window presets.

It runs in an ``st.fragment``: a slider move reruns this function only, which slices cached
read-only arrays, windows one slice and encodes two small PNGs. No model call, no pass over the
whole volume.
"""

from __future__ import annotations

import html
import logging
import time

import numpy as np
import streamlit as st

from core.annotate import with_banner
from inference.volume.slices import (
    VIEWS,
    colour_table,
    display_size,
    encode_jpeg,
    encode_png,
    orientation_marks,
    oriented_slice,
    pixel_size_mm,
    position_text,
    render_pair,
    slice_count,
)
from inference.volume.types import LabelInfo, Segmentation, Volume
from inference.volume.windowing import CT_PRESETS, default_ct_preset, window_to_uint8
from ui import results
from ui.session import NEXT_SLICE_KEY, PREVIOUS_SLICE_KEY, VIEW_KEY, slice_key
from ui.widgets import image_viewer

log = logging.getLogger(__name__)

GOTO_KEY = "vv::goto"  # the browser viewer's next slice to show, with a nonce
BROWSER_VIEWER_KEY = "volume_viewer"
DISPLAY_WIDTH_PX = 420
_CUSTOM = "Custom"
_AUTO = "Auto (0.5-99.5 percentile)"


def _step(view: str, delta: int, count: int) -> None:
    key = slice_key(view)
    st.session_state[key] = int(min(count, max(1, st.session_state.get(key, count // 2 + 1) + delta)))


def jump_to(view: str, index: int) -> None:
    """Show 0-based slice ``index`` in ``view`` on the next rerun (a callback may call this)."""
    st.session_state[VIEW_KEY] = view
    st.session_state[slice_key(view)] = index + 1
    st.session_state[GOTO_KEY] = {"axis": VIEWS.index(view), "index": index, "nonce": time.time()}


def _window(volume: Volume) -> tuple[float, float, str]:
    if volume.modality == "CT":
        names = [*CT_PRESETS, _CUSTOM]
        # Keyed by the volume: a body CT opened after a head CT starts in its own default window.
        preset = st.selectbox(
            "Window", names, index=names.index(default_ct_preset(volume)), key=f"vv::preset::{volume.input_sha256}"
        )
        if preset != _CUSTOM:
            level, width = CT_PRESETS[preset]
            return level, width, f"{preset} window L {level:g} / W {width:g} HU"
        level = st.number_input("Level (HU)", value=40.0, step=10.0, key="vv::level")
        width = st.number_input("Width (HU)", value=400.0, min_value=1.0, step=10.0, key="vv::width")
        return level, width, f"Custom window L {level:g} / W {width:g} HU"
    level, width = results.mr_window(volume.input_sha256, volume.data)
    choice = st.selectbox("Window", [_AUTO, _CUSTOM], key="vv::mr_preset")
    if choice == _CUSTOM:
        level = st.number_input("Level", value=float(round(level, 1)), key="vv::mr_level")
        width = st.number_input("Width", value=float(round(width, 1)), min_value=1e-3, key="vv::mr_width")
        return level, width, f"Custom window L {level:g} / W {width:g}"
    return level, width, f"Auto window L {level:.0f} / W {width:.0f} (percentiles of the brain, not HU)"


def legend_html(labels: tuple[LabelInfo, ...], visible: set[int]) -> str:
    items = []
    for info in labels:
        if info.value == 0:
            continue
        r, g, b = info.color
        faded = "" if info.value in visible else "opacity:0.35;"
        items.append(
            f'<span style="display:inline-block;margin:0 12px 4px 0;{faded}">'
            f'<span style="display:inline-block;width:12px;height:12px;background:rgb({r},{g},{b});'
            f'border:1px solid #555;margin-right:4px;vertical-align:middle"></span>'
            f"{info.value}: {html.escape(info.name)}</span>"
        )
    return "".join(items)


def present_values(segmentation: Segmentation) -> set[int]:
    """Label values with at least one voxel, from the measurements (no pass over the volume)."""
    return {m.values[0] for m in segmentation.measurements if len(m.values) == 1 and m.voxels > 0}


def volume_viewer(volume: Volume, segmentation: Segmentation | None, caption_suffix: str = "") -> None:
    """Three linked planes in the browser viewer, or the server-rendered scroller as the fallback.

    Only the scroller is a fragment (its slider reruns it alone). The browser viewer is drawn in
    the page's run: its requests for lost pixels rerun the page, as those of a prior's viewers
    beside it do; a fragment's rerun interleaved with the page's could leave the page blank."""
    if image_viewer.use_browser_viewer():
        _browser_viewer(volume, segmentation, caption_suffix)
    else:
        _server_fragment(volume, segmentation, caption_suffix)


@st.fragment
def _server_fragment(volume: Volume, segmentation: Segmentation | None, caption_suffix: str) -> None:
    _server_viewer(volume, segmentation, caption_suffix)


def masked_volume_scene(volume: Volume, segmentation: Segmentation | None, caption_suffix: str = ""):
    """A volume for the browser viewer with its masks as the label layer (each encoded once)."""
    scene = results.volume_viewer_scene(volume.input_sha256, volume)
    if segmentation is None:
        return scene
    label_map = segmentation.label_map
    layer = results.label_viewer_layer(
        label_map.sha256,
        frozenset(present_values(segmentation)),
        "Masks" + caption_suffix,
        segmentation.model.trained,
        label_map,
    )
    return scene.with_layers(layer)


def _browser_viewer(volume: Volume, segmentation: Segmentation | None, caption_suffix: str) -> None:
    scene = masked_volume_scene(volume, segmentation, caption_suffix)
    goto = st.session_state.get(GOTO_KEY)
    image_viewer.show(scene, BROWSER_VIEWER_KEY, height=520, goto=goto)
    st.caption(
        "Three linked planes in radiological convention (the patient's right on the screen's left). Wheel or "
        "↑/↓ over a plane: its slices · click: move the crosshair · right-drag: window/level · ctrl-wheel: zoom · "
        "shift-drag: ruler in mm."
    )


def _server_viewer(volume: Volume, segmentation: Segmentation | None, caption_suffix: str = "") -> None:
    """Axial / coronal / sagittal scroller with step buttons, window, mask visibility and opacity."""
    started = time.perf_counter()
    controls = st.columns([1.6, 1.2, 1.2, 1.2])
    with controls[0]:
        view = st.segmented_control("View", VIEWS, key=VIEW_KEY, default="Axial") or "Axial"
    with controls[1]:
        level, width, window_text = _window(volume)
    count = slice_count(volume.shape, view)
    key = slice_key(view)
    if key not in st.session_state or not 1 <= st.session_state[key] <= count:
        st.session_state[key] = count // 2 + 1
    label_map = segmentation.label_map if segmentation is not None else None
    visible: set[int] = set()
    opacity = 0.4
    if label_map is not None:
        # Only labels the mask holds: a whole-body model declares 104, a slice shows a handful.
        present = present_values(segmentation)
        names = {
            info.value: f"{info.value}: {info.name}"
            for info in label_map.labels
            if info.value > 0 and info.value in present
        }
        with controls[2]:
            chosen = st.multiselect(
                "Masks shown",
                list(names),
                default=list(names),
                format_func=names.get,
                key=f"vv::visible::{label_map.sha256}",
            )
            visible = set(chosen)
        with controls[3]:
            opacity = st.slider("Mask opacity", 0.0, 1.0, 0.4, 0.05, key="vv::opacity")

    step = st.columns([1, 1, 10], vertical_alignment="bottom")
    step[0].button(
        ":material/chevron_left:", key=PREVIOUS_SLICE_KEY, help="Previous slice", on_click=_step, args=(view, -1, count)
    )
    step[1].button(
        ":material/chevron_right:", key=NEXT_SLICE_KEY, help="Next slice", on_click=_step, args=(view, 1, count)
    )
    step[2].slider("Slice", 1, count, key=key)
    index = st.session_state[key] - 1

    image = oriented_slice(volume.data, view, index)
    size = display_size(image.shape, pixel_size_mm(volume.spacing_mm, view), DISPLAY_WIDTH_PX)
    mask = oriented_slice(label_map.data, view, index) if label_map is not None else None
    table = colour_table(label_map.labels, visible) if label_map is not None else None
    plain, overlay = _render(image, mask, table, opacity, size, view, level, width)
    if segmentation is not None and not segmentation.model.trained:
        overlay = with_banner(overlay)  # labelled in the pixels too: fullscreen hides the caption
    left, right = st.columns(2)
    left.image(encode_png(plain), caption="Image", output_format="PNG")
    right.image(
        encode_jpeg(overlay),
        caption=("Image with masks" if label_map is not None else "No mask yet") + caption_suffix,
        output_format="JPEG",
    )
    st.caption(
        f"{position_text(volume.affine, volume.shape, view, index)} · {window_text} · voxels "
        + " x ".join(f"{s:.2f}" for s in volume.spacing_mm)
        + " mm · radiological convention: the patient's "
        "right is on the screen's left"
    )
    if label_map is not None:
        shown_labels = tuple(info for info in label_map.labels if info.value in present)
        if shown_labels:
            st.html(legend_html(shown_labels, visible))  # st.html: names are escaped and never read as Markdown
        else:
            st.caption("The mask is empty: no label has any voxel.")
    # The benchmark reads this line (LOG_LEVEL=DEBUG) for the server time of a scroll.
    log.debug("viewer rendered %s slice %d in %.2f ms", view, index + 1, (time.perf_counter() - started) * 1000)


def _render(image, mask, table, opacity, size, view, level, width):
    return render_pair(
        window_to_uint8(np.asarray(image), level, width), mask, table, opacity, size, orientation_marks(view)
    )
