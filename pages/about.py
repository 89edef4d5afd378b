"""What this tool is and is not."""

from __future__ import annotations

import streamlit as st

from ui.entry import require_app_entry
from ui.widgets.model_status import DISCLAIMER
from xai.overlay import CAM_MEANING

require_app_entry()

st.title("About this tool")
st.warning(DISCLAIMER)
st.markdown(
    """
This dashboard shows what an imaging AI model says about a chest radiograph, where it looked,
and lets radiologists record whether they agree. It is for research, evaluation and
demonstration.

- **Findings** are scores from the torchxrayvision DenseNet-121 (18 findings), calibrated so
  that 0.5 is each finding's operating point, placed in low / high / critical threshold bands.
- **Heatmaps** (Grad-CAM and related methods) show which image regions the score was most
  sensitive to.
- **Verdicts** are stored append-only with the model, weights hash and thresholds the reviewer
  saw, so every record can later be traced to exactly what was on screen.
- **Privacy:** images are not stored; patient names, birth dates and accession numbers are never
  stored or shown; a PatientID is kept only as a keyed hash.
"""
)
st.info(CAM_MEANING)
