"""Review a chest X-ray: upload, findings in bands, Grad-CAM side by side, verdicts."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from storage import repository
from ui import database, resources, results
from ui.entry import require_app_entry
from ui.identity import reviewer
from ui.session import RUN_IDS, compare_cams_key
from ui.text import md_escape
from ui.widgets import figures
from ui.widgets.cam_viewer import cam_viewer, compare_methods
from ui.widgets.charts import band_legend_text
from ui.widgets.model_status import require_model
from ui.widgets.next_case import next_unreviewed_button
from ui.widgets.radiograph_check import confirmed_as
from ui.widgets.shap_view import shap_panel
from ui.widgets.verdicts import finding_kind, finding_verdict_panel, history_table, selection_list
from xai.cam import CLOSED_FORM_METHOD

require_app_entry()

# The title and the file on one line, so that the image starts high on the screen.
title_col, upload_col = st.columns([1, 1.4], gap="large")
with title_col:
    st.title("Review a chest X-ray")
    loaded = require_model()
if loaded is None:
    st.stop()

upload = upload_col.file_uploader(
    "Chest radiograph: DICOM (CR/DX), PNG or JPEG",
    max_upload_size=load_settings().max_upload_mb,
    help=(
        "The file is analysed in memory and never kept. Findings and verdicts are stored; so are the decoded, "
        "de-identified pixels (no DICOM tags), so the case reopens with its image, unless IMAGE_STORE=0."
    ),
)
if upload is None:
    st.info("Drop a chest radiograph above to see the AI findings, heatmaps and record your verdicts.")
    st.stop()

data = upload.getvalue()
hashes = st.session_state.setdefault("upload_sha256", {})
sha = hashes.get(upload.file_id) or hashes.setdefault(upload.file_id, hashlib.sha256(data).hexdigest())
# A PNG or JPEG says nothing of what it shows: the model scores it once the reader says it is a
# frontal chest radiograph; until then, or after a no, nothing runs and nothing is stored.
what_it_is = confirmed_as(sha, upload.name, data)
if what_it_is is None:
    st.stop()
try:
    bands = resources.band_config()
    analysis = results.case_analysis(
        sha, upload.name, loaded.spec.model_id, loaded.weights_sha256, bands.identity, data, loaded, bands
    )
except ReviewError as exc:
    st.error(str(exc))
    st.stop()

run_key = f"{sha}:{loaded.weights_sha256}:{bands.identity}"
run_ids = st.session_state.setdefault(RUN_IDS, {})
if run_key not in run_ids:
    try:
        with database.transaction() as session:
            stored = repository.store_analysis(
                session, analysis.facts, analysis.prediction, CLOSED_FORM_METHOD, actor=reviewer() or None
            ).run_id
            if what_it_is:
                repository.record_image_confirmation(session, stored, what_it_is, reviewer() or None)
        run_ids[run_key] = stored
    except ReviewError as exc:
        st.error(str(exc))
        st.stop()
run_id = run_ids[run_key]
try:
    kept = results.keep_image(sha, upload.name, data)
except ReviewError as exc:
    st.warning(str(exc))
    kept = False

facts = analysis.facts
prediction = analysis.prediction
details = [f"Case run #{run_id}", f"format {facts.source_format.upper()}"]
if facts.source_format == "dicom":
    details.append(f"modality {facts.modality}")
else:  # the file says nothing of what it shows: the reader did
    details.append(f"no modality in the file; you confirmed {what_it_is}" if what_it_is else "no modality in the file")
if facts.view_position:
    details.append(f"view {facts.view_position}")
if facts.patient_key:
    details.append(f"patient key {facts.patient_key}")
details.append(
    f"model {prediction.model.model_id} in {prediction.timing_ms:.0f} ms on {prediction.model.device.upper()}"
)
if kept:
    details.append(f"de-identified image kept {load_settings().image_retention_days} days")
st.caption(" · ".join(md_escape(d) for d in details))
for note in facts.notes:
    st.warning(note)

ranked = prediction.ranked()
critical = [f.label for f in ranked if f.band.value == "critical"]
labels = [f.label for f in ranked]
FINDINGS = finding_kind(None)


@st.fragment
def _reading() -> None:
    """The finding being judged is the verdict panel's selection: its heatmap, region SHAP and the
    note box follow it, and a verdict stores the heatmap on screen. Choosing another finding (the
    list by the image, J / K, a row's verdict) reruns this part only, not the upload above it."""
    # Image first: the viewer takes most of the width, the finding list and the bands beside it.
    view_col, side_col = st.columns([2.2, 1], gap="medium")
    with side_col:
        if critical:
            st.markdown(f"**Critical band:** {md_escape(', '.join(critical))}")
        label = selection_list(
            FINDINGS,
            run_id,
            labels,
            "review",
            "Finding (its heatmap; your verdict below)",
        )
        st.plotly_chart(
            figures.band_figure(run_key, ranked, prediction.thresholds, prediction.model.trained),
            config={"displayModeBar": False},
            key="band_chart",
        )
        st.caption(
            f"{len(ranked)} findings · {band_legend_text()} · bands version {md_escape(prediction.bands_version)}"
        )
    if label is None:
        return
    with view_col:
        method = cam_viewer(analysis, loaded, label, upload.name, data)
    shap_panel(analysis, loaded, run_id, label)
    # Keyed by the case: a new upload starts with the (six-method) comparison off, shown and computed alike.
    if st.toggle("Compare all heatmap methods for this finding", key=compare_cams_key(sha)):
        compare_methods(analysis, loaded, label)
    finding_verdict_panel(run_id, ranked, prediction.model.trained, (method, label) if method else None, scope="review")


_reading()
next_unreviewed_button(current_run=run_id)
if st.toggle("Show the verdict history for this case", key="show_history"):
    history_table(run_id)
