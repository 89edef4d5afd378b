"""Stored cases: reopen one to see what the AI showed, the verdicts and their history."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from analytics import exports
from inference.volume.case import is_volume_source
from inference.volume.types import Volume
from storage import reporting, repository, studies
from storage.features import run_features
from ui import database, resources, results
from ui.entry import require_app_entry
from ui.identity import reviewer, visible_reviewer
from ui.session import audit_key, prior_key
from ui.text import md_escape
from ui.widgets import figures, image_viewer
from ui.widgets.cam_viewer import cam_viewer
from ui.widgets.case_report import case_report_button
from ui.widgets.charts import band_legend_text, score_text, shap_waterfall
from ui.widgets.dicom_exports import reader_sr_button
from ui.widgets.kept_case import kept_analysis, run_model
from ui.widgets.next_case import next_unreviewed_button, reader_worklist, study_cases_note
from ui.widgets.prior import choose_prior, side_by_side
from ui.widgets.segmentation_case import choose_segmentation, segmentation_case
from ui.widgets.similar_cases import similar_cases_panel
from ui.widgets.verdicts import exclusive_classes, finding_kind, finding_verdict_panel, history_table, selection_list
from ui.widgets.volume_classification import classified_volume_reading
from xai.overlay import jpeg_bytes, png_bytes, whole_image_overlay

require_app_entry()

st.title("Case review")

board = reader_worklist()
cases, segmentations = board.cases, board.segmentations
study_cases_note(board)
if not cases and not segmentations:
    if board.in_study:
        st.stop()
    st.info("No cases yet. Analyse a chest X-ray on the Review page, or an MRI/CT volume, and it appears here.")
    st.stop()

# Two kinds of case: chest X-ray analyses (?case=) and MRI/CT segmentations (?segmentation=).
KIND_XRAY, KIND_VOLUME = "Classifications (chest X-ray, brain MRI)", "MRI and CT segmentations"
kinds = [k for k, rows in ((KIND_XRAY, cases), (KIND_VOLUME, segmentations)) if rows]
wanted = KIND_VOLUME if "segmentation" in st.query_params and segmentations else kinds[0]
if len(kinds) > 1:
    kind = st.segmented_control("Cases", kinds, default=wanted, key=f"cases_kind::{wanted}") or wanted
else:
    kind = kinds[0]
if kind == KIND_VOLUME:
    st.query_params.pop("case", None)
    chosen_run = choose_segmentation(segmentations, st.query_params.get("segmentation"))
    st.query_params["segmentation"] = str(chosen_run)
    segmentation_case(chosen_run)
    st.stop()
st.query_params.pop("segmentation", None)

by_id = {c.case_id: c for c in cases}
requested = st.query_params.get("case")
options = [c.case_id for c in cases]
default = options.index(int(requested)) if requested and requested.isdigit() and int(requested) in by_id else 0
case_id = st.selectbox(
    "Open case",
    options,
    index=default,
    format_func=lambda c: f"Case {c} · {by_id[c].top_band.value} · {by_id[c].status}",
)
st.query_params["case"] = str(case_id)

with database.transaction() as session:
    run = repository.get_run(session, by_id[case_id].run_id, repository.ClassificationRunRecord)
if run is None:
    st.error("This case's analysis could not be found; it may have been removed by an administrator.")
    st.stop()

header, jump = st.columns([3, 2], vertical_alignment="bottom")
header.subheader(f"Case {case_id}")
with jump:
    next_unreviewed_button(cases, current_run=run.run_id)
st.caption(
    " · ".join(
        md_escape(x)
        for x in [
            f"run #{run.run_id}",
            f"analysed {run.created_at:%Y-%m-%d %H:%M} UTC",
            f"model {run.model_id}",
            f"weights sha256 {run.weights_sha256[:12]}…",
            f"bands version {run.bands_version}",
            f"device {run.device.upper()}",
        ]
    )
)
if not run.trained:
    st.error("This run used UNTRAINED weights: scores are meaningless, for interface testing only.")
ranked = run.ranked()


def _volume_reading(run) -> bool:
    """A brain MRI volume classified slice by slice, reopened as the MRI/CT page showed it: the
    kept volume in the viewer with the per-slice strip, a class's heatmap on its driving slice,
    the verdict panel. False, the page saying why, when the volume is not kept or the run's
    weights are not the ones loaded."""
    store = resources.image_store()
    volume = results.kept_volume(run.facts.input_sha256) if store is not None else None
    if store is None:
        st.caption("The image store is turned off (IMAGE_STORE=0): upload the volume on the MRI/CT page to see it.")
    elif volume is None:
        st.caption(
            "The volume is not kept (classified before volumes were kept, or more than "
            f"{store.retention_days} days ago): upload it on the MRI/CT page to see it and its heatmaps."
        )
    if not isinstance(volume, Volume):
        return False
    loaded = run_model(run, "volume")
    if loaded is None:
        return False
    classified = results.volume_classification(volume.input_sha256, run.model_id, run.weights_sha256, volume, loaded)
    classified_volume_reading(volume, loaded, classified, ranked, run.thresholds, run.run_id, "cases")
    return True


def _image_reading(run, with_image: bool) -> Callable[[], list[exports.Picture]]:
    """As on the Review page: the verdict panel's selection is the finding whose heatmap is shown
    (and the one the report carries). Returns what the case report shows of the image. Drawn in
    the page's run, not a fragment: the case's viewer and the prior's two viewers then ask for
    lost pixels through reruns of the whole page alike. With the case's viewer in a fragment, a
    fragment's rerun interleaved with the page's and the page went blank (white, sidebar and all)
    in fresh-clone CI runs."""
    labels = [f.label for f in ranked]
    # Image first, as on the Review page: the viewer takes most of the width, the list beside it.
    image_col, chart_col = st.columns([2.2, 1], gap="medium")
    with chart_col:
        label = selection_list(
            finding_kind(None, exclusive_classes(run.model_id)),
            run.run_id,
            labels,
            "cases",
            "Finding (its heatmap; your verdict below)",
        )
        st.plotly_chart(
            figures.band_figure(f"stored-run-{run.run_id}", ranked, run.thresholds, run.trained, run.model_id),
            config={"displayModeBar": False},
        )
        st.caption(band_legend_text())
    method = analysis = None
    if with_image and label is not None:
        with image_col:
            analysis, state = kept_analysis(run)
            if analysis is not None:
                method = cam_viewer(analysis, state, label)
    finding_verdict_panel(
        run.run_id,
        ranked,
        run.trained,
        (method, label) if method and label else None,
        scope="cases",
        classes=exclusive_classes(run.model_id),
    )

    def pictures() -> list[exports.Picture]:
        """With the kept image, the report carries it and the Grad-CAM of the finding on screen."""
        pixels = results.kept_pixels(run.facts.input_sha256) if analysis is not None else None
        if analysis is None or pixels is None or label is None:
            return []
        # The whole film, not the model's square crop (a landscape film's chest wall was cut off).
        grey, heat = whole_image_overlay(pixels, analysis.gradcam.map_for(label), "jet", 0.45, trained=run.trained)
        caption = f"Grad-CAM for {label} over the square the model sees" + (
            "" if run.trained else " (untrained weights: meaningless)"
        )
        return [
            exports.Picture(png_bytes(grey), "The whole image"),
            exports.Picture(jpeg_bytes(heat), caption, "image/jpeg"),
        ]

    return pictures


def _reading(run) -> None:
    """The run as its reader saw it (a radiograph or slice with its heatmaps, or a volume with its
    strip), then the report, the reader's SR and the prior."""
    if is_volume_source(run.facts.source_format):
        pictures = _no_pictures if _volume_reading(run) else _image_reading(run, with_image=False)
    else:
        pictures = _image_reading(run, with_image=True)
    report_column, sr_column = st.columns(2)  # side by side, as beside a segmentation
    with report_column:
        case_report_button(run, pictures, "cases", f"case-{case_id}-report.html")
    with sr_column:
        reader_sr_button(case_id, run.run_id, scope="cases")
    _prior_comparison(run)


def _no_pictures() -> list[exports.Picture]:
    return []


only = visible_reviewer()  # None: everyone's (admin, open mode); else this reader's own entries


def _prior_comparison(run) -> None:
    """This case beside an earlier one of the same patient: images (when kept), each finding's
    score and band then and now, and the verdicts this reader may see on the prior."""
    with database.transaction() as session:
        hidden = studies.hidden_cases(session, reviewer())
        # A prior in a reader study this reader has not read yet would show its AI output.
        priors = [p for p in repository.prior_classifications(session, run.run_id) if p.case_id not in hidden]
    picked = choose_prior(priors, prior_key(run.run_id), lambda p: f"Case {p.case_id}")
    if picked is None:
        return
    prior, seen = picked
    # Both whole images in the browser viewer, zoom, pan and window linked (the one under the
    # mouse leads); the server-rendered crops where the browser viewer is not in use.
    browser = image_viewer.browser_viewer_chosen()
    linked = f"prior:{run.run_id}:{prior.run_id}"

    def draw(side: int, shown) -> None:
        scene = results.xray_viewer_scene(shown.facts.input_sha256, "", None) if browser else None
        if scene is not None:
            image_viewer.show(scene, f"prior_viewer::{side}", height=460, sync=linked)
            return
        picture = results.kept_display_png(shown.facts.input_sha256)
        if picture is not None:
            st.image(picture, caption="Image (the square centre crop the model saw)", output_format="PNG")
        else:
            st.caption("Image not kept.")

    side_by_side(run, prior, lambda shown: shown.model_id, draw, "scores are meaningless")
    if browser:
        st.caption("Zoom, pan and window move both images together: the one under the mouse leads.")
    then = {f.label: f for f in prior.findings}
    rows = []
    for finding in ranked:
        before = then.get(finding.label)
        rows.append(
            {
                "finding": finding.label,
                "now": score_text(finding.score, run.trained) + f" · {finding.band.value}",
                "prior": (score_text(before.score, prior.trained) + f" · {before.band.value}") if before else "–",
                # From the scores as shown (two decimals): 0.98 against 0.97 reads +0.01, not +0.00.
                "change": f"{round(finding.score, 2) - round(before.score, 2):+.2f}" if before else "–",
                "verdict on the prior": seen.get(finding.label, "–"),
            }
        )
    st.dataframe(rows, hide_index=True)
    if prior.model_id != run.model_id or prior.weights_sha256 != run.weights_sha256:
        st.warning(
            "The prior was scored by other model weights: a change in score may be the model's, not the patient's."
        )


_reading(run)
with database.transaction() as session:
    explanation = repository.get_region_explanation(session, run.run_id)
    kept_features = run_features(session, [run.run_id]).get(run.run_id)
similar_cases_panel(
    run.run_id, run.facts.input_sha256, kept_features, run.model_id, run.weights_sha256, run.trained, "cases"
)
if explanation is not None:
    st.subheader("Region SHAP stored with this run")
    shown = st.selectbox("Finding", [f.label for f in ranked], key=f"cases_shap_finding::{run.run_id}")
    values, base, score = explanation.for_label(shown)
    if explanation.is_flat(shown):
        st.info(
            f"No region changes the {shown} score: hiding any of them leaves it at {score_text(score, run.trained)}."
        )
    else:
        st.plotly_chart(
            shap_waterfall(explanation.region_names, values.tolist(), base, score, shown, run.trained),
            config={"displayModeBar": False},
        )
    st.caption(f"Regions: {explanation.regions_source}. {explanation.evaluations} model evaluations.")
st.subheader("History")
history_table(run.run_id)

if st.toggle("Show the audit trail", key=audit_key(case_id)):
    with database.transaction() as session:
        events = reporting.case_trail(session, case_id, actor=only)
        names = repository.reviewer_names(session)
    if only is not None:
        st.caption("Only your own actions and the system's are shown; the lead (admin) sees everyone's.")
    st.dataframe(
        [
            {
                "time (UTC)": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                # Never "None": the system acts without a name, and empty details are left out.
                "who": names.get(e.actor, e.actor) if e.actor else "system",
                "event": e.kind.replace("_", " "),
                "run": f"#{e.run_id}" if e.run_id is not None else "–",
                "detail": ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in e.detail.items() if v not in (None, "")),
            }
            for e in events
        ],
        hide_index=True,
    )
