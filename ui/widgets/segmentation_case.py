"""A stored MRI/CT segmentation reopened on the case page: its kept volume in the viewer with the
kept masks, the volume per structure, the verdict panel and the history, as the MRI/CT page
showed them when the run was made."""

from __future__ import annotations

import streamlit as st

from analytics import exports
from core.vocabulary import RunKind
from inference.volume.case import reviewed_structures
from inference.volume.types import MultiChannelVolume, Volume
from pipelines.captures import mask_pictures
from storage import repository
from storage.reporting import SegmentationWorklistRow
from ui import database, resources, results
from ui.session import prior_volume_key
from ui.text import md_escape
from ui.widgets import image_viewer
from ui.widgets.case_report import case_report_button
from ui.widgets.dicom_exports import reader_sr_button
from ui.widgets.prior import choose_prior, side_by_side
from ui.widgets.segmentation_results import origin_label, segmentation_results, shown_channel
from ui.widgets.structure_verdicts import masks_origin, measurement_rows, structure_history, structure_verdict_panel
from ui.widgets.volume_viewer import masked_volume_scene, volume_viewer
from xai.overlay import png_bytes


def _masks_from(row: SegmentationWorklistRow | repository.SegmentationRunRecord) -> str:
    return "uploaded mask" if row.kind is RunKind.UPLOADED_MASK else row.model_id


def choose_segmentation(rows: list[SegmentationWorklistRow], requested: str | None) -> int:
    """The run to open: the one in the address (``?segmentation=``) when it is listed, else the newest."""
    by_id = {r.run_id: r for r in rows}
    options = list(by_id)
    default = options.index(int(requested)) if requested and requested.isdigit() and int(requested) in by_id else 0
    return st.selectbox(
        "Open segmentation",
        options,
        index=default,
        format_func=lambda r: (
            f"Case {by_id[r].case_id} · run #{r} · {by_id[r].modality} · {_masks_from(by_id[r])} · {by_id[r].status}"
        ),
        key="cases_segmentation_choice",
    )


def segmentation_case(run_id: int) -> None:
    with database.transaction() as session:
        run = repository.get_run(session, run_id, repository.SegmentationRunRecord)
    if run is None:
        st.error("This segmentation could not be found; it may have been removed by an administrator.")
        return
    st.subheader(f"Case {run.case_id} · segmentation")
    st.caption(
        md_escape(
            " · ".join(
                [
                    f"stored {run.created_at:%Y-%m-%d %H:%M} UTC",
                    f"{run.facts.modality} · {run.facts.source_format}",
                    " x ".join(str(n) for n in run.shape) + " voxels",
                    " x ".join(f"{s:g}" for s in run.spacing) + " mm",
                ]
                + ([f"patient key {run.facts.patient_key}"] if run.facts.patient_key else [])
            )
        )
    )
    if not run.trained:
        st.error("These masks come from UNTRAINED weights: they are meaningless, for interface testing only.")
    store = resources.image_store()
    inputs = results.kept_volume(run.facts.input_sha256) if store is not None else None
    segmentation = results.kept_segmentation(run.run_id, run.label_map_sha256, run) if store is not None else None
    if store is None:
        st.caption("The image store is turned off (IMAGE_STORE=0): upload the volume on the MRI/CT page to see it.")
    elif inputs is None or segmentation is None:
        st.caption(
            "The volume is not kept (stored before the image store, or more than "
            f"{store.retention_days} days ago): upload it on the MRI/CT page to see it with its masks."
        )
    else:
        shown = shown_channel(inputs, key=f"cases_channel::{run_id}")
        volume_viewer(shown, segmentation, origin_label(segmentation))
        reference = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
        segmentation_results(segmentation, reference, run.run_id, scope="cases", case_downloads=lambda: _downloads(run))
        _prior_comparison(run, _channel_index(inputs, shown))
        return
    # Without the kept volume the stored measurements still stand, and the verdicts can be given.
    measurements = reviewed_structures(run.structures)
    st.dataframe(measurement_rows(measurements), hide_index=True)
    structure_verdict_panel(run.run_id, measurements, masks_origin(run.model_id, run.trained), scope="cases")
    _downloads(run)
    if st.toggle("Show the verdict history of this segmentation", key=f"cases::structure_history::{run_id}"):
        structure_history(run.run_id)


def _downloads(run: repository.SegmentationRunRecord) -> None:
    """The case report (HTML: each structure's mask on its middle slice, volumes, verdicts and
    their history) and the reader's DICOM SR, side by side."""

    def pictures() -> list[exports.Picture]:
        store = resources.image_store()
        shown = mask_pictures(run, store) if store is not None else []
        return [exports.Picture(png_bytes(p.rgb), p.comment) for p in shown]

    report_column, sr_column = st.columns(2)
    with report_column:
        case_report_button(run, pictures, "cases", f"case-{run.case_id}-segmentation-{run.run_id}-report.html")
    with sr_column:
        reader_sr_button(run.case_id, run.run_id, scope="cases", masks=True)


def _channel_index(inputs: Volume | MultiChannelVolume, shown: Volume) -> int:
    if not isinstance(inputs, MultiChannelVolume):
        return 0
    return next((i for i, c in enumerate(inputs.channels) if c is shown), 0)


def _same_channel(inputs: Volume | MultiChannelVolume, index: int) -> Volume:
    if not isinstance(inputs, MultiChannelVolume):
        return inputs
    return inputs.channels[min(index, len(inputs.channels) - 1)]


def _prior_comparison(run: repository.SegmentationRunRecord, channel: int) -> None:
    """This volume beside an earlier segmentation of the same patient: both in the browser
    viewer with their masks and the crosshair linked in millimetres (scrolling one scrolls the
    other to the same place), each structure's volume then and now, and the verdicts this reader
    may see on the prior."""
    with database.transaction() as session:
        priors = repository.prior_segmentations(session, run.run_id)
    picked = choose_prior(
        priors, prior_volume_key(run.run_id), lambda p: f"Case {p.case_id} · run #{p.run_id} · {_masks_from(p)}"
    )
    if picked is None:
        return
    prior, seen = picked
    browser = image_viewer.browser_viewer_chosen()
    linked = f"prior:{run.run_id}:{prior.run_id}"

    def draw(side: int, shown: repository.SegmentationRunRecord) -> None:
        inputs = results.kept_volume(shown.facts.input_sha256)
        segmentation = results.kept_segmentation(shown.run_id, shown.label_map_sha256, shown)
        if inputs is None or segmentation is None:
            st.caption("The volume or its masks are not kept.")
        elif browser:
            scene = masked_volume_scene(_same_channel(inputs, channel), segmentation, origin_label(segmentation))
            image_viewer.show(scene, f"prior_volume_viewer::{side}", height=420, sync=linked)

    side_by_side(run, prior, _masks_from, draw, "these masks are meaningless")
    if browser:
        st.caption(
            "The crosshair, zoom and window move both volumes together, by position in millimetres: "
            "the one under the mouse leads. Both are in the scanner's coordinates, not registered to each other."
        )
    else:
        st.caption("Linked slices need the browser viewer; the structures' volumes are compared below.")
    then = {m.name: m for m in prior.structures}
    rows = []
    for now in run.structures:
        before = then.get(now.name)
        change = now.volume_ml - before.volume_ml if before else None
        rows.append(
            {
                "structure": now.name,
                "now (mL)": round(now.volume_ml, 2),
                "prior (mL)": round(before.volume_ml, 2) if before else "–",
                "change (mL)": f"{change:+.2f}" if change is not None else "–",
                "change (%)": f"{100 * change / before.volume_ml:+.1f}" if before and before.volume_ml else "–",
                "verdict on the prior": seen.get(now.name, "–"),
            }
        )
    st.dataframe(rows, hide_index=True)
    if (prior.model_id, prior.weights_sha256) != (run.model_id, run.weights_sha256):
        st.warning(
            "The prior's masks come from another model, weights or mask file: a change in volume may be "
            "the masks', not the patient's."
        )
