"""A stored classification run's kept image through the run's own model again: its heatmaps, on
the case page and the reader-study page alike."""

from __future__ import annotations

import streamlit as st

from inference.models.loader import LoadedModel
from ui import models, resources, results


def run_model(run, what: str) -> LoadedModel | None:
    """The run's own model and weights, when they are the ones loaded now; else None, the page
    saying why (``what`` is kept: "image", "volume")."""
    state = models.classifier_of_run(run.model_id)
    if isinstance(state, LoadedModel) and (state.spec.model_id, state.weights_sha256) == (
        run.model_id,
        run.weights_sha256,
    ):
        return state
    st.info(
        f"The {what} is kept, but its heatmaps need the model and weights of this run "
        f"({run.model_id}, weights sha256 {run.weights_sha256[:12]}…), which are not the ones loaded now."
    )
    return None


def kept_analysis(run):
    """(the kept image's analysis by the run's own model and weights, that model), else (None, None)
    with the page saying why."""
    store = resources.image_store()
    sha = run.facts.input_sha256
    if store is None:
        st.caption("The image store is turned off (IMAGE_STORE=0): upload the image on the Review page to see it.")
        return None, None
    if not store.has(sha):
        st.caption(
            f"The image is not kept (analysed before the image store, or more than {store.retention_days} days "
            "ago): upload it on the Review page to see it and its heatmaps."
        )
        return None, None
    state = run_model(run, "image")
    if state is None:
        return None, None
    bands = resources.band_config()
    return results.kept_case_analysis(sha, run.model_id, run.weights_sha256, bands.identity, state, bands), state
