"""What this tool is and is not, and what each registered model reads and says."""

from __future__ import annotations

import streamlit as st

from inference.models.registry import all_models
from inference.models.spec import ClassifierSpec, SegmentationSpec
from ui.entry import require_app_entry
from ui.text import md_escape
from ui.widgets.model_status import DISCLAIMER
from xai.overlay import CAM_MEANING

require_app_entry()

st.title("About this tool")
st.warning(DISCLAIMER)
st.markdown(
    """
This dashboard shows what imaging AI models say about chest radiographs and about MRI and CT
volumes, where they looked, and lets radiologists record whether they agree. It is for research,
evaluation and demonstration.

- **Chest X-rays** (DICOM CR/DX, PNG, JPEG): findings are calibrated scores, 0.5 being each
  finding's operating point, placed in low / high / critical threshold bands; heatmaps (Grad-CAM
  and related methods) show which image regions a score was most sensitive to; region SHAP
  explains a score as the sum of eight image regions' effects.
- **MRI and CT volumes** (NIfTI, DICOM series or multi-frame DICOM): a segmentation network or a
  mask made by another tool (nnU-Net, TotalSegmentator, a DICOM SEG) is shown on a slice scroller
  in three planes, each structure measured in mL, with a verdict per structure.
- **Verdicts** (agree / disagree / unsure, per finding or structure) are stored append-only with
  the model, weights hash and thresholds the reviewer saw, so every record can later be traced to
  exactly what was on screen.
- **Untrained weights** (for trying the interface where trained weights cannot be installed) are
  labelled on every score, heatmap, mask and stored record; their output means nothing.
- **Privacy:** uploaded files are never kept; a chest X-ray's decoded pixels, and an MRI or CT's
  decoded volume (every channel) with its label map, are kept (for a set number of days, and only
  if the site leaves the image store on) so a case reopens with its image, never with file names,
  DICOM tags or series descriptions; patient names, birth dates and accession numbers are never
  stored or shown; a PatientID is kept only as a keyed hash.
"""
)


_MODALITY_WORDS = {"cxr": "Chest X-ray", "MR": "MRI", "CT": "CT"}


def _reads(spec) -> str:
    modality = _MODALITY_WORDS.get(spec.modality.value, spec.modality.value)
    if isinstance(spec, ClassifierSpec):
        return f"{modality} image, {len(spec.labels)} findings: " + ", ".join(spec.labels)
    if isinstance(spec, SegmentationSpec):
        structures = [s.name for s in spec.structures]
        shown = ", ".join(structures[:8]) + (f" and {len(structures) - 8} more" if len(structures) > 8 else "")
        channels = ", ".join(spec.channel_names)
        return f"{modality} volume ({channels}), {len(structures)} structures: {shown}"
    return modality


st.subheader("The models")
for spec in all_models():
    st.markdown(
        f"- **{md_escape(spec.display_name)}** ({spec.task.value}): {md_escape(_reads(spec))}.  \n"
        f"  Weights: {md_escape(spec.weights_source)}"
    )
st.caption(md_escape("Weights are installed per site (python -m inference weights import ...); see Settings."))
st.info(CAM_MEANING)
