"""Region SHAP on the review page: a button starts it in the background, a progress bar follows
it while the reviewer keeps working, then a waterfall and a region map explain each score."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.errors import ReviewError
from inference.models.loader import UNTRAINED_LABEL, LoadedModel
from pipelines.analyze import CaseAnalysis
from storage import repository
from ui import background, database, resources, results
from ui.session import start_shap_key
from ui.widgets.charts import score_text, shap_waterfall
from ui.widgets.job_progress import follow_job
from xai.overlay import diverging_legend_png, png_bytes, region_value_map
from xai.region_shap import RegionExplanation
from xai.regions import grid_regions


def _stored(run_id: int) -> RegionExplanation | None:
    with database.transaction() as session:
        return repository.get_region_explanation(session, run_id)


def shap_panel(analysis: CaseAnalysis, loaded: LoadedModel, run_id: int, label: str) -> None:
    st.markdown("**Why this score? Region SHAP**")
    result = _stored(run_id)
    key = background.region_shap_key(analysis.facts.input_sha256, loaded.weights_sha256, run_id)
    job = resources.jobs().get(key)
    if result is None:
        if job is not None and not job.done:
            follow_job(key, "Region SHAP", "You can keep reviewing meanwhile.")
            return
        if job is not None and job.error:
            st.error(job.error)
        st.caption(
            f"Shapley values of 8 image regions for all {len(loaded.classifier_spec.labels)} findings, "
            "from 256 masked copies of the image "
            "(about half a minute on this server's CPU)."
        )
        if st.button("Explain the scores with region SHAP", key=start_shap_key(run_id)):
            try:
                background.start_region_shap(analysis, loaded, run_id)
            except ReviewError as exc:
                st.error(str(exc))
                return
            st.rerun()
        return
    _explanation(analysis, loaded, result, label)


def _regions_of(result: RegionExplanation, analysis: CaseAnalysis, loaded: LoadedModel):
    """The region map the stored values refer to: the grid, or the anatomy segmentation."""
    from xai.anatomy import ANATOMY_SOURCE

    if result.regions_source == ANATOMY_SOURCE:
        regions = results.anatomy_regions(analysis.facts.input_sha256, analysis.model_input[0, 0])
        if regions.source == ANATOMY_SOURCE:
            return regions
    return grid_regions(loaded.classifier_spec.input_size)


def _explanation(analysis: CaseAnalysis, loaded: LoadedModel, result: RegionExplanation, label: str) -> None:
    values, base, score = result.for_label(label)
    if result.is_flat(label):
        st.info(
            f"No region changes the {label} score: hiding any of them leaves it at "
            f"{score_text(score, loaded.trained)}. There is nothing for a waterfall to show."
        )
        return
    left, right = st.columns([1.3, 1])
    left.plotly_chart(
        shap_waterfall(result.region_names, values.tolist(), base, score, label, loaded.trained),
        config={"displayModeBar": False},
        key="shap_waterfall",
    )
    regions = _regions_of(result, analysis, loaded)
    tinted, limit = region_value_map(analysis.display, regions.label_map, np.asarray(values), trained=loaded.trained)
    right.image(
        png_bytes(tinted),
        caption=f"Regions tinted by their effect on {label}" + ("" if loaded.trained else f" — {UNTRAINED_LABEL}"),
        width="stretch",
        output_format="PNG",
    )
    right.image(diverging_legend_png(), width="stretch", output_format="PNG")
    right.caption(f"blue: lowers the score (down to −{limit:.3f}) · red: raises it (up to +{limit:.3f})")
    st.caption(
        f"Regions: {result.regions_source}; the patient's right is on the image's left. Masking: "
        f"{result.masking}. Base value {base:.3f} is the score with every region hidden; the values add "
        f"up to score − base. {result.evaluations} model evaluations shared by all findings."
    )
