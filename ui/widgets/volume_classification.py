"""A brain MRI volume read by a slice classifier, as the reader reviews it on the MRI/CT page and
again on the case page: the volume's answer and the model card's caveat, the bands, the volume in
the viewer with the per-slice strip under it, a class's heatmap on the slice driving it (or the one
clicked on the strip), and a verdict per class."""

from __future__ import annotations

import streamlit as st

from core.types import Finding
from inference.models.cards import card_of
from inference.models.loader import LoadedModel
from inference.volume.types import Volume
from pipelines.classify import VolumeClassification
from ui.text import md_escape
from ui.widgets import figures
from ui.widgets.model_card import VOLUME_CAVEAT, headline, volume_answer
from ui.widgets.slice_strip import slice_heatmap, strip_chart
from ui.widgets.verdicts import exclusive_classes, finding_kind, finding_verdict_panel, selection_list
from ui.widgets.volume_viewer import volume_viewer


def classified_volume_reading(
    volume: Volume,
    loaded: LoadedModel,
    classified: VolumeClassification,
    ranked: tuple[Finding, ...],
    thresholds: dict[str, dict[str, float]],
    run_id: int,
    scope: str,
) -> None:
    """``ranked`` and ``thresholds``: the stored run's findings and the bands it was shown with.
    ``scope`` is the page ("volumes", "cases"): it keys the widgets and the verdict panel."""
    spec = loaded.classifier_spec
    card = card_of(spec)
    st.caption(
        md_escape(
            f"Case run #{run_id} · {volume.description} · {volume.modality} · "
            + " x ".join(str(n) for n in volume.shape)
            + f" voxels · {len(classified.slice_indices)} axial slices scored, {classified.skipped} without content "
            f"skipped, in {classified.timing_ms:.0f} ms · per class the {classified.method} over the slices"
        )
    )
    answer = volume_answer(classified.labels, classified.scores, classified.method, spec.exclusive, loaded.trained)
    if answer:
        st.markdown(answer)
    if card is not None:
        st.caption(md_escape(headline(card)) + " · " + md_escape(VOLUME_CAVEAT))
    view_col, side_col = st.columns([2.2, 1], gap="medium")
    chart_key = f"volume-{scope}-{run_id}"
    with side_col:
        st.plotly_chart(
            figures.band_figure(chart_key, ranked, thresholds, loaded.trained, spec.model_id),
            config={"displayModeBar": False},
            key=f"{scope}::volume_band_chart",
        )
        for label, driving in zip(classified.labels, classified.driving_slice, strict=True):
            st.caption(md_escape(f"{label}: driven by axial slice {driving}"))
    with view_col:
        volume_viewer(volume, None, "")
        strip_chart(volume, chart_key, classified, loaded.trained)
    classes = exclusive_classes(spec.model_id)
    label = selection_list(
        finding_kind(None, classes),
        run_id,
        [f.label for f in ranked],
        scope,
        "Class (its heatmap; your verdict below)",
    )
    if label is not None:
        slice_heatmap(volume, classified, loaded, label)
    finding_verdict_panel(run_id, ranked, loaded.trained, None, scope=scope, classes=classes)
