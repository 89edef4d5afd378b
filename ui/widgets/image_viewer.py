"""The browser viewer (NiiVue on WebGL2, in a project-owned Streamlit component) and its fallback.

Pixels go to the browser once per tab: the first time a layer is shown its gzipped NIfTI travels
as a bytes argument, later runs send only its id, and the component keeps the pixels in a cache
of the tab. When the component has lost a layer (its cache is full, or the tab's page was
reloaded into the same session) it asks for it with a ``missing`` value and the next run sends
it again. Window, zoom, pan, slices, opacity and colours never reach the server.

The server-rendered views remain: ``viewer_mode()`` says which one a page draws. They are used
when the component is not built (``bash scripts/build-viewer``), when the browser has no WebGL2
(the component says so), when ``REVIEW_VIEWER=server``, and when the reader asks for them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import streamlit as st

from core.settings import load_settings
from pipelines.viewer_layers import ViewerScene

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "viewer" / "static"
BUNDLE = STATIC / "niivue.umd.js"
SENT = "_viewer_layers_sent"  # layer ids this session has sent to its browser tab
NONCES = "_viewer_missing_nonces"  # per viewer key: the last 'missing' request answered
NO_WEBGL = "_viewer_no_webgl"  # set when the browser said it has no WebGL2
SERVER_VIEW_KEY = "viewer::server_rendered"

_component = None


def _declared():
    global _component
    if _component is None:
        import streamlit.components.v1 as components

        _component = components.declare_component("review_viewer", path=str(STATIC))
    return _component


def unavailable_reason() -> str | None:
    """Why the browser viewer cannot be used on this server, or None when it can."""
    if load_settings().viewer == "server":
        return "The server is configured for server-rendered views (REVIEW_VIEWER=server)."
    if not BUNDLE.is_file():
        return (
            "The browser viewer is not built on this server (run `bash scripts/build-viewer`); "
            "showing the server-rendered view."
        )
    if st.session_state.get(NO_WEBGL):
        return "This browser has no WebGL2, which the viewer needs; showing the server-rendered view."
    return None


def use_browser_viewer(container: Any = st) -> bool:
    """True when the page should draw the browser viewer; False for the server-rendered view.
    Draws the reader's switch in ``container`` (and says why when the browser viewer cannot be used)."""
    reason = unavailable_reason()
    if reason is not None:
        container.caption(reason)
        return False
    server = container.toggle(
        "Server-rendered view",
        key=SERVER_VIEW_KEY,
        help="The pictures the server draws (as in reports) instead of the interactive viewer.",
    )
    return not server


def browser_viewer_chosen() -> bool:
    """Whether the page shows the browser viewer (as ``use_browser_viewer`` decided earlier in the
    run), without drawing the switch again."""
    return unavailable_reason() is None and not st.session_state.get(SERVER_VIEW_KEY, False)


def show(
    scene: ViewerScene,
    key: str,
    height: int = 560,
    goto: dict | None = None,
    sync: str | None = None,
    colorbar: bool = False,
) -> None:
    """Draw ``scene`` in the browser viewer under ``key`` (stable per page, so the viewer keeps its
    zoom and window while the page reruns). ``goto`` ({"axis", "index", "nonce"}) moves a volume's
    crosshair to a slice once per nonce. Viewers with the same ``sync`` follow each other's zoom,
    pan and window (and, for volumes, the crosshair position in mm), in the browser. ``colorbar``
    draws the heatmap's colour scale under the picture, in the colours the reader chose."""
    value = st.session_state.get(key)
    sent: set[str] = st.session_state.setdefault(SENT, set())
    nonces: dict[str, float] = st.session_state.setdefault(NONCES, {})
    if isinstance(value, dict):
        if value.get("webgl") is False and not st.session_state.get(NO_WEBGL):
            st.session_state[NO_WEBGL] = True
            st.rerun()
        if value.get("missing") and value.get("nonce") != nonces.get(key):
            nonces[key] = value["nonce"]
            sent.difference_update(value["missing"])
        if value.get("error"):
            st.error(f"The viewer could not show this image: {value['error']}")
    blobs = {f"b_{layer.id}": layer.nifti_gz for layer in scene.layers if layer.id not in sent}
    if blobs:
        log.debug("viewer %s sends %d layer(s), %d bytes", key, len(blobs), sum(len(b) for b in blobs.values()))
    spec = scene.spec(height)
    # The layers whose pixels ride along: the browser only hands the frame a new render when the
    # JSON arguments change, so pixels sent again for the same scene (a lost layer) would
    # otherwise never reach it.
    spec["carries"] = sorted(layer.id for layer in scene.layers if f"b_{layer.id}" in blobs)
    if goto is not None:
        spec["goto"] = goto
    if sync is not None:
        spec["sync"] = sync
    if colorbar:
        spec["colorbar"] = True
    _declared()(spec=json.dumps(spec), key=key, default=None, **blobs)
    # Only once the message is queued: a rerun asked for meanwhile (another viewer's request)
    # stops the script inside that call, and the pixels must then go with the next run.
    sent.update(layer.id for layer in scene.layers)


def show_empty(key: str, message: str, height: int = 560) -> None:
    """The viewer under ``key`` with no image and ``message`` over its black stage: drawn where
    the next image will be shown, so the browser keeps this frame (its viewer already started)
    for it instead of building one when the image comes."""
    spec = {"kind": "none", "scene": "", "height": height, "layers": [], "message": message}
    _declared()(spec=json.dumps(spec), key=key, default=None)
