"""One 2D slice through a classifier on a page: the question a header-less image needs, the
analysis stored once, the image with its heatmap beside the scores in bands, the verdict panel,
the next case and the history. The chest X-ray review and the MRI page's "Classify" task are this
one widget with another model and question."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from inference.models.loader import LoadedModel
from storage import repository
from ui import database, resources, results
from ui.identity import reviewer
from ui.session import RUN_IDS, compare_cams_key
from ui.text import md_escape
from ui.widgets import figures
from ui.widgets.anomaly_map import anomaly_panel
from ui.widgets.cam_viewer import cam_viewer, compare_methods, reading_columns
from ui.widgets.charts import band_legend_text
from ui.widgets.model_card import uncertainty_text
from ui.widgets.next_case import next_unreviewed_button
from ui.widgets.radiograph_check import CHEST_RADIOGRAPH, ImageQuestion, confirmed_as
from ui.widgets.shap_view import shap_panel
from ui.widgets.similar_cases import similar_cases_panel
from ui.widgets.verdicts import exclusive_classes, finding_kind, finding_verdict_panel, history_table, selection_list
from xai.cam import CLOSED_FORM_METHOD


def review_slice(
    loaded: LoadedModel,
    upload,
    question: ImageQuestion = CHEST_RADIOGRAPH,
    before_reading=None,
    augment: bool = False,
) -> None:
    """Everything below the uploader for one uploaded file; ``before_reading`` draws what a page
    adds above the image (the brain MRI card), given the analysis. ``augment``: the reader asked
    for test-time augmentation (a model of exclusive classes always has it): a new run stores its
    spread; a run stored without one stays as it is and the spread shown joins its audit trail."""
    data = upload.getvalue()
    hashes = st.session_state.setdefault("upload_sha256", {})
    sha = hashes.get(upload.file_id) or hashes.setdefault(upload.file_id, hashlib.sha256(data).hexdigest())
    # What is said of the case goes above the reading part, in a container of its own: the image's
    # place in the page is then the same whether the question or the findings are beside it, and the
    # browser keeps its viewer from the one to the other (``reading_columns``).
    head = st.container()
    # A PNG or JPEG says nothing of what it shows: the model scores it once the reader says it is a
    # frontal chest radiograph; until then, or after a no, nothing runs and nothing is stored.
    what_it_is = confirmed_as(sha, upload.name, data, question, head)
    if what_it_is is None:
        return
    with head:
        try:
            bands = resources.band_config()
            analysis = results.case_analysis(
                sha,
                upload.name,
                loaded.spec.model_id,
                loaded.weights_sha256,
                bands.identity,
                data,
                loaded,
                bands,
                augment,
            )
        except ReviewError as exc:
            st.error(str(exc))
            return

        run_key = f"{sha}:{loaded.weights_sha256}:{bands.identity}" + (":tta" if augment else "")
        run_ids = st.session_state.setdefault(RUN_IDS, {})
        if run_key not in run_ids:
            try:
                spread = analysis.uncertainty.as_dict() if analysis.uncertainty else None
                with database.transaction() as session:
                    record = repository.store_analysis(
                        session,
                        analysis.facts,
                        analysis.prediction,
                        CLOSED_FORM_METHOD,
                        actor=reviewer() or None,
                        params={"input": analysis.input, **({"uncertainty": spread} if spread else {})},
                        features=analysis.features,
                    )
                    stored = record.run_id
                    if spread and "uncertainty" not in record.params:  # asked for after the run was stored
                        repository.record_uncertainty(session, stored, spread, reviewer() or None)
                    if what_it_is:
                        repository.record_image_confirmation(session, stored, what_it_is, reviewer() or None)
                run_ids[run_key] = stored
            except ReviewError as exc:
                st.error(str(exc))
                return
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
            details.append(
                f"no modality in the file; you confirmed {what_it_is}" if what_it_is else "no modality in the file"
            )
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

        if before_reading is not None:
            before_reading(analysis)
    spec = loaded.classifier_spec
    noun = "class" if spec.exclusive else "finding"
    ranked = prediction.ranked()
    critical = [f.label for f in ranked if f.band.value == "critical"]
    labels = [f.label for f in ranked]
    classes = exclusive_classes(spec.model_id)
    findings = finding_kind(None, classes)

    @st.fragment
    def _reading() -> None:
        """The finding being judged is the verdict panel's selection: its heatmap, region SHAP and the
        note box follow it, and a verdict stores the heatmap on screen. Choosing another finding (the
        list by the image, J / K, a row's verdict) reruns this part only, not the upload above it."""
        # Image first: the viewer takes most of the width, the finding list and the bands beside it.
        view_col, side_col = reading_columns()
        with side_col:
            if critical:
                st.markdown(f"**Critical band:** {md_escape(', '.join(critical))}")
            label = selection_list(
                findings,
                run_id,
                labels,
                "review",
                f"{noun.capitalize()} (its heatmap; your verdict below)",
            )
            st.plotly_chart(
                figures.band_figure(
                    run_key,
                    ranked,
                    prediction.thresholds,
                    prediction.model.trained,
                    prediction.model.model_id,
                    analysis.uncertainty.intervals() if analysis.uncertainty else None,
                ),
                config={"displayModeBar": False},
                key="band_chart",
            )
            st.caption(
                f"{len(ranked)} {noun}{'es' if noun == 'class' else 's'} · {band_legend_text()} · bands version {md_escape(prediction.bands_version)}"
            )
            if analysis.uncertainty is not None and before_reading is None:  # a page with a card says it there
                st.caption(uncertainty_text(analysis.uncertainty, only_flagged=True, noun=noun, trained=loaded.trained))
        if label is None:
            return
        with view_col:
            method = cam_viewer(analysis, loaded, label, upload.name, data)
        if spec.shap_regions:
            shap_panel(analysis, loaded, run_id, label)
        # Keyed by the case: a new upload starts with the (six-method) comparison off, shown and computed alike.
        if st.toggle(f"Compare all heatmap methods for this {noun}", key=compare_cams_key(sha)):
            compare_methods(analysis, loaded, label)
        anomaly_panel(
            run_id,
            analysis.features,
            analysis.display,
            prediction.model.model_id,
            prediction.model.weights_sha256,
            tuple(spec.normal_labels),
            prediction.model.trained,
            question.one,
            "review",
        )
        finding_verdict_panel(
            run_id,
            ranked,
            prediction.model.trained,
            (method, label) if method else None,
            scope="review",
            classes=classes,
        )

    _reading()
    next_unreviewed_button(current_run=run_id)
    similar_cases_panel(
        run_id,
        sha,
        analysis.features,
        prediction.model.model_id,
        prediction.model.weights_sha256,
        prediction.model.trained,
        "review",
    )
    if st.toggle("Show the verdict history for this case", key="show_history"):
        history_table(run_id)
