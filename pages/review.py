"""Review a chest X-ray: upload, findings in bands, Grad-CAM side by side, verdicts."""

from __future__ import annotations

import streamlit as st

from core.settings import load_settings
from inference.models.registry import chest_classifiers
from ui.entry import require_app_entry
from ui.models import classifier_spec
from ui.session import REVIEW_MODEL_KEY, TTA_KEY
from ui.widgets.cam_viewer import awaiting_image
from ui.widgets.model_status import require_model
from ui.widgets.pacs_studies import opened
from ui.widgets.slice_review import review_slice

require_app_entry()

# The title and the file on one line, so that the image starts high on the screen.
title_col, upload_col = st.columns([1, 1.4], gap="large")
with title_col:
    st.title("Review a chest X-ray")
    # The model is chosen per run where a site has registered more than one chest X-ray model.
    offered = {spec.display_name: spec for spec in chest_classifiers()}
    chosen = None
    if len(offered) > 1:
        names = list(offered)
        default = names.index(classifier_spec().display_name) if classifier_spec().display_name in names else 0
        chosen = offered[st.selectbox("Model", names, index=default, key=REVIEW_MODEL_KEY)]
    loaded = require_model(chosen)
    augment = loaded is not None and st.toggle(
        "Uncertainty: test-time augmentation",
        key=TTA_KEY,
        help=(
            "Scores the image four ways (as it is, flipped left-right, 10% brighter and 10% darker) and shows each "
            "finding's mean ± standard deviation on the chart, flagged where it could change band. Four more model "
            "runs; stored with the run."
        ),
    )
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
    from_pacs = opened("radiograph")  # a study opened on the PACS page
    upload = from_pacs.files[0] if from_pacs is not None else None
if upload is None:
    awaiting_image("Drop a chest radiograph above to see the AI findings, heatmaps and record your verdicts.")
    st.stop()

review_slice(loaded, upload, augment=augment)
