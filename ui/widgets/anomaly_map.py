"""The anomaly map against this site's own normals, beside the other explanations: where the
image's patches are farthest from every patch of the images readers confirmed as normal here, and
whether the image as a whole is unlike all of them (then the reader is asked to check what it is)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.types import ImageFeatures
from storage import reporting
from ui import database, results
from ui.session import anomaly_toggle_key
from xai.anomaly import MAX_NORMALS, MIN_NORMALS, upsampled
from xai.overlay import overlay

ANOMALY_MEANING = (
    "Bright patches are the least like any patch of the images readers confirmed as normal here: unusual for this "
    "site, which is not the same as diseased (a new detector, a marker or a lead can be unusual too)."
)


def anomaly_panel(
    run_id: int,
    features: ImageFeatures | None,
    display: np.ndarray,
    model_id: str,
    weights_sha256: str,
    normal_labels: tuple[str, ...],
    trained: bool,
    what_it_should_be: str,
    scope: str,
) -> None:
    """``display``: the model's square crop (grey uint8) the map is drawn over; ``what_it_should_be``:
    what the model reads ("a frontal chest radiograph"), for the check an unusual image asks for."""
    if not st.toggle("Show the anomaly map against this site's normals", key=anomaly_toggle_key(scope, run_id)):
        return
    if not trained:
        st.error(
            "UNTRAINED weights: these features, so this map and its score, are meaningless (shown to test the interface)."
        )
    if features is None:
        st.caption("No image features were kept with this run (stored before they were): no map.")
        return
    with database.transaction() as db:
        state = reporting.review_state(db)
    found = results.confirmed_normal_runs(model_id, weights_sha256, normal_labels, MAX_NORMALS + 1, state)
    normals = [r for r in found if r != run_id][:MAX_NORMALS]
    if len(normals) < MIN_NORMALS:
        st.info(
            f"The anomaly map needs {MIN_NORMALS} images that readers confirmed as normal here (the AI called "
            f"nothing and a reader agreed on every finding) with this model's weights; {len(normals)} so far."
        )
        return
    bank = results.anomaly_bank(model_id, weights_sha256, tuple(sorted(normals)))
    result = bank.score(features.patches, features.grid)
    if result.unusual:
        st.warning(
            f"Unlike anything confirmed normal here: its patches are on average {result.typical:.1f} from the "
            f"nearest normal patch, more than any confirmed normal image against the others ({result.threshold:.1f}). "
            f"An abnormal image, or not the kind the model reads: check that this is {what_it_should_be}."
        )
    picture = overlay(display, upsampled(result.grid, display.shape[0]), "inferno", 0.45, trained=trained)
    left, right = st.columns([1, 1])
    left.image(picture, caption="Anomaly map over the square the model sees", output_format="JPEG")
    right.metric(
        "Anomaly score", f"{result.score:.1f}", help="The largest distance of a patch to its nearest normal patch"
    )
    right.caption(
        f"Against {result.normals} images readers confirmed as normal with these weights (their patch features, "
        f"coreset-reduced), on the model's {result.grid.shape[0]} × {result.grid.shape[1]} grid of patches: a "
        f"coarse map. Mean patch distance {result.typical:.1f}; a confirmed normal reaches up to "
        f"{result.threshold:.1f} against the others. {ANOMALY_MEANING}"
    )
