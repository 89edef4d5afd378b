"""A stored MRI/CT segmentation reopened on the case page: its kept volume in the viewer with the
kept masks, the volume per structure, the verdict panel and the history, as the MRI/CT page
showed them when the run was made."""

from __future__ import annotations

import streamlit as st

from core.vocabulary import RunKind
from inference.volume.case import reviewed_structures
from storage import repository
from storage.reporting import SegmentationWorklistRow
from ui import database, resources, results
from ui.text import md_escape
from ui.widgets.segmentation_results import origin_label, segmentation_results, shown_channel
from ui.widgets.structure_verdicts import masks_origin, measurement_rows, structure_history, structure_verdict_panel
from ui.widgets.volume_viewer import volume_viewer


def _masks_from(row: SegmentationWorklistRow) -> str:
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
        segmentation_results(segmentation, run.run_id, scope="cases")
        return
    # Without the kept volume the stored measurements still stand, and the verdicts can be given.
    measurements = reviewed_structures(run.structures)
    st.dataframe(measurement_rows(measurements), hide_index=True)
    structure_verdict_panel(run.run_id, measurements, masks_origin(run.model_id, run.trained), scope="cases")
    if st.toggle("Show the verdict history of this segmentation", key=f"cases::structure_history::{run_id}"):
        structure_history(run.run_id)
