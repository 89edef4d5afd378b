"""Settings in force: threshold bands and their version, model weights, storage, limits."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sqlalchemy.engine import make_url

from core.errors import ReviewError
from core.settings import load_settings
from inference.models.registry import all_models
from inference.models.weights import installed_weights_path
from ui import models, resources
from ui.entry import require_app_entry
from ui.text import md_escape
from ui.widgets.band_editor import edit_bands_section
from ui.widgets.model_status import bands_validation, require_model

require_app_entry()

st.title("Settings")
settings = load_settings()

st.subheader("Threshold bands")
try:
    bands = resources.band_config()
except ReviewError as exc:
    st.error(str(exc))
    st.stop()
st.markdown(
    f"Version **{bands.version}** (content fingerprint {bands.fingerprint}, recorded with every run as `{bands.identity}`) from `{bands.source}`"
)
st.caption(
    "Scores are calibrated so that 0.5 is each finding's operating point. Below low: negative; "
    "low to high: indeterminate; high to critical: positive; at or above critical: critical."
)
classifier = models.classifier_spec()
validated = bands.validated_with.get(classifier.bands_key)
if validated is None:
    st.caption(
        "Not validated at this site: no site calibration of the readers' verdicts has been saved as these bands."
    )
else:
    st.caption(
        f"Validated at this site on {validated[0]} weights {validated[1][:12]}… (saved from a site calibration)."
    )
    said = bands_validation(models.classifier())
    if said:
        st.warning(said)
rows = []
for label in classifier.labels:
    t = bands.thresholds(classifier.bands_key, label)
    custom = label in bands.per_finding.get(classifier.bands_key, {})
    rows.append(
        {
            "finding": label,
            "low": t.low,
            "high": t.high,
            "critical": t.critical,
            "source": "finding-specific" if custom else "modality default",
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True)
edit_bands_section(bands, pd.DataFrame(rows))

st.subheader("Model")
loaded = require_model()
model_rows = {
    "model id": classifier.model_id,
    "architecture": classifier.display_name,
    "input size": f"{classifier.input_size} x {classifier.input_size}",
    "weights expected at": str(installed_weights_path(classifier, settings)),
    "weights source": classifier.weights_source,
}
if loaded is not None:
    model_rows.update(
        {
            "weights in use": loaded.weights_path or "none: seeded random (untrained) weights",
            "weights sha256": loaded.weights_sha256,
            "trained": "yes" if loaded.trained else "NO — scores are meaningless",
            "device": loaded.device.upper(),
        }
    )
st.dataframe(pd.DataFrame({"setting": list(model_rows), "value": list(model_rows.values())}), hide_index=True)

st.subheader("Every model and where its weights go")
st.caption("Paths in full: put a model's weights file there (or set its environment variable) and restart.")
for spec in all_models():
    st.markdown(f"**{md_escape(spec.display_name)}** · `{spec.model_id}` · {md_escape(spec.modality.value)}")
    st.code(str(installed_weights_path(spec, settings)), language=None, wrap_lines=True)
    st.caption(f"Source: {md_escape(spec.weights_source)}")

st.subheader("Storage and limits")
limits = {
    "database": make_url(settings.database_url).render_as_string(hide_password=True),
    "upload limit": f"{settings.max_upload_mb} MB, {settings.max_image_pixels // 1_000_000} megapixels",
    "patient identifiers": "never stored; PatientID kept only as a keyed hash (PATIENT_HASH_KEY)",
    "images": (
        f"decoded, de-identified pixels kept {settings.image_retention_days} days in {settings.image_store_dir} "
        "(IMAGE_STORE, IMAGE_RETENTION_DAYS); uploaded files and their tags never"
        if settings.image_store
        else "not kept (IMAGE_STORE=0)"
    ),
}
st.dataframe(pd.DataFrame({"setting": list(limits), "value": list(limits.values())}), hide_index=True)
