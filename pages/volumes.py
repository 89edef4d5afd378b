"""Review an MRI or CT volume: upload, AI or uploaded masks on a slice scroller, volumes in mL,
and a verdict on every structure; or classify one brain MRI slice with a model trained here."""

from __future__ import annotations

import streamlit as st

from core.errors import ChannelAssignmentError, ReviewError, StorageError
from core.settings import load_settings
from inference.masks.load import default_threshold
from inference.models.registry import BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET, slice_classifiers
from inference.volume.case import case_facts
from inference.volume.ingest import BRATS_CHANNELS, assign_mri_channels
from inference.volume.types import MultiChannelVolume, Segmentation, Volume
from pipelines.classify import volume_prediction
from pipelines.kept_volumes import store_segmentation_run
from storage import repository
from ui import background, database, resources, results
from ui.entry import require_app_entry
from ui.identity import reviewer
from ui.session import (
    CT_TASK,
    LEGEND_UPLOAD,
    MASK_TASK,
    MASK_UPLOAD,
    RUN_IDS,
    SLICE_UPLOAD,
    VOLUME_TASK,
    channel_key,
    segment_key,
    volume_upload_key,
)
from ui.text import md_escape
from ui.widgets.cam_viewer import awaiting_image
from ui.widgets.job_progress import follow_job
from ui.widgets.model_card import prediction_and_card
from ui.widgets.model_status import classifier_panel, seg_model_panel
from ui.widgets.pacs_studies import opened
from ui.widgets.radiograph_check import BRAIN_MRI_SLICE
from ui.widgets.segmentation_results import CHANNEL_NAMES, origin_label, segmentation_results, shown_channel
from ui.widgets.slice_review import review_slice
from ui.widgets.volume_classification import classified_volume_reading
from ui.widgets.volume_viewer import volume_viewer

require_app_entry()

TASK_BRATS = "Brain tumour (MRI, 4 channels)"
TASK_CT = CT_TASK
TASK_CLASSIFY = "Classify a brain MRI slice"
TASKS = (TASK_BRATS, TASK_CT, MASK_TASK, TASK_CLASSIFY)
SEG_RUN_IDS = "segmentation_run_ids"
SHOWN_UPLOADS = "volume_uploads_shown"  # per task: (files listed, files read as the volume)

st.title("Review an MRI or CT volume")
task = st.segmented_control("What to review", TASKS, default=TASK_BRATS, key=VOLUME_TASK) or TASK_BRATS


def _classify_slice() -> None:
    """One 2D slice through a brain MRI classifier: the review page's reading, with the model's card."""
    specs = {spec.display_name: spec for spec in slice_classifiers()}
    chosen = st.selectbox("Model", list(specs), key="slice_classifier")
    spec = specs[chosen]
    loaded = classifier_panel(spec)
    if loaded is None:
        return
    uploads = st.file_uploader(
        "One brain MRI slice (DICOM MR, PNG or JPEG), or a whole volume (NIfTI, or the files or zip of a DICOM series)",
        max_upload_size=max(load_settings().max_upload_mb, load_settings().max_volume_upload_mb),
        accept_multiple_files=True,
        key=SLICE_UPLOAD,
        help=(
            "Read in memory; the files are never stored. The scores and your verdicts are stored; so is the decoded, "
            "de-identified slice (no DICOM tags), so the case reopens with it, unless IMAGE_STORE=0."
        ),
    )
    if not uploads:
        awaiting_image(
            f"Drop a brain MRI slice above to see what {spec.display_name} says, where it looked, and record your verdict."
        )
        return
    if len(uploads) > 1 or uploads[0].name.lower().endswith((".nii", ".nii.gz", ".zip")):
        _classify_volume(loaded, uploads)
        return
    review_slice(
        loaded, uploads[0], BRAIN_MRI_SLICE, before_reading=lambda analysis: prediction_and_card(loaded, analysis)
    )


def _classify_volume(loaded, uploads) -> None:
    """A volume (NIfTI, or a DICOM series) through the slice classifier, axial slice by slice: the volume's score per
    class (the card's aggregation) with the slice that drives it, the per-slice strip under the
    viewer, and a verdict per class stored like a slice's."""
    spec = loaded.classifier_spec
    try:
        volume = results.volume(results.upload_key(uploads), tuple(uploads))
        classified = results.volume_classification(
            volume.input_sha256, spec.model_id, loaded.weights_sha256, volume, loaded
        )
    except ReviewError as exc:
        st.error(str(exc))
        return
    bands = resources.band_config()
    prediction = volume_prediction(classified, spec, bands)
    run_key = f"{volume.input_sha256}:{loaded.weights_sha256}:{bands.identity}"
    run_ids = st.session_state.setdefault(RUN_IDS, {})
    if run_key not in run_ids:
        try:
            with database.transaction() as session:
                run_ids[run_key] = repository.store_analysis(
                    session, case_facts(volume), prediction, "none (volume)", actor=reviewer() or None
                ).run_id
        except ReviewError as exc:
            st.error(str(exc))
            return
        try:
            results.keep_volume(volume)  # so the case reopens with it
        except StorageError as exc:
            st.warning(f"Your verdicts are stored, but the volume could not be kept for reopening the case: {exc}")
    classified_volume_reading(
        volume, loaded, classified, prediction.ranked(), prediction.thresholds, run_ids[run_key], "volumes"
    )


if task == TASK_CLASSIFY:
    _classify_slice()
    st.stop()


def _brats_inputs(uploads) -> MultiChannelVolume | None:
    names = [u.name for u in uploads]
    try:
        automatic = assign_mri_channels(names)
    except ChannelAssignmentError as exc:
        st.warning(f"{exc} Assign the files by hand below.")
        automatic = {}
    columns = st.columns(4)
    assignment = []
    for column, channel in zip(columns, BRATS_CHANNELS):
        default = names.index(automatic[channel]) if channel in automatic else None
        chosen = column.selectbox(
            CHANNEL_NAMES[channel], names, index=default, key=channel_key(channel), placeholder="choose the file"
        )
        assignment.append((channel, chosen))
    if any(name is None for _, name in assignment):
        st.info("Assign a file to each of the four channels to continue.")
        return None
    if len({name for _, name in assignment}) < 4:
        st.error("Each channel needs its own file; one file is assigned to two channels.")
        return None
    return results.mri_channels(results.upload_key(uploads), tuple(assignment), tuple(uploads))


def _upload_volume() -> Volume | MultiChannelVolume | None:
    if task == TASK_BRATS:
        prompt = "The four MRI channels of one brain case as NIfTI (T1c, T1, T2, FLAIR), co-registered on one grid"
    else:
        prompt = (
            "A volume: one NIfTI (.nii / .nii.gz), a DICOM series (several files or one .zip) or a multi-frame DICOM"
        )
    uploads = st.file_uploader(
        prompt,
        accept_multiple_files=True,
        key=volume_upload_key(task),
        help="Read in memory; the file is never stored. Its decoded voxels are kept de-identified in the image store (unless turned off) so the case reopens.",
    )
    if not uploads and task != TASK_BRATS:
        from_pacs = opened("volume")  # a series opened on the PACS page
        uploads = list(from_pacs.files) if from_pacs is not None else []
    if not uploads:
        st.info("Upload a volume above to scroll through it, see the masks and record your verdicts.")
        return None
    if task == TASK_BRATS:
        if len(uploads) != 4:
            st.error(
                f"The brain tumour model needs exactly 4 NIfTI files (T1c, T1, T2, FLAIR); "
                f"{len(uploads)} {'was' if len(uploads) == 1 else 'were'} uploaded."
            )
            return None
        return _brats_inputs(uploads)
    uploads = _newest_drop(uploads)
    return results.volume(results.upload_key(uploads), tuple(uploads))


def _newest_drop(uploads: list) -> list:
    """The files to read as the volume. The uploader keeps every file dropped on it, so a second
    volume dropped after a first one arrives with it; the files added since the last volume was
    shown are read alone when they make a volume by themselves (a new case), and together with
    the earlier ones otherwise (more files of the same DICOM series). Files are told apart by name
    and size, which survive a rerun."""
    state_key = f"{SHOWN_UPLOADS}::{task}"
    ids = [f"{u.name}:{u.size}" for u in uploads]
    listed, active = st.session_state.get(state_key, ((), ()))
    if tuple(ids) == tuple(listed):
        chosen = [u for u, i in zip(uploads, ids) if i in set(active)] or uploads
    else:
        chosen = uploads
        added = [u for u, i in zip(uploads, ids) if i not in set(listed)]
        if listed and set(listed) <= set(ids) and added:
            try:
                results.volume(results.upload_key(added), tuple(added))
                chosen = added
            except ReviewError:
                chosen = uploads  # not a volume alone: part of the same series
        st.session_state[state_key] = (tuple(ids), tuple(f"{u.name}:{u.size}" for u in chosen))
    if len(chosen) < len(uploads):
        kept = {id(u) for u in chosen}
        set_aside = ", ".join(u.name for u in uploads if id(u) not in kept)
        st.info(
            md_escape(
                f"Showing {', '.join(u.name for u in chosen)}, added last. Set aside: {set_aside} "
                "(remove it from the list above with ×)."
            )
        )
    return chosen


def _model_segmentation(inputs, spec) -> tuple[Segmentation, int] | None:
    loaded = seg_model_panel(spec)
    if loaded is None:
        return None
    key = background.segmentation_key(inputs.input_sha256, spec.model_id, loaded.weights_sha256)
    job = resources.jobs().get(key)
    if job is not None and job.done and job.error is None:
        return job.result
    if job is not None and not job.done:
        follow_job(key, "Segmenting", "You can scroll the volume meanwhile.")
        return None
    if job is not None and job.error:
        st.error(job.error)
    if st.button(f"Segment with {spec.display_name}", type="primary", key=segment_key(spec.model_id)):
        try:
            background.start_segmentation(inputs, loaded, case_facts(inputs), reviewer() or None)
        except ReviewError as exc:  # the workers' set-up (image store off), or the store not writable
            st.error(str(exc))
            return None
        st.rerun()
    return None


def _uploaded_segmentation(volume: Volume) -> tuple[Segmentation, int] | None:
    left, middle, right = st.columns([2, 1.4, 1])
    masks = left.file_uploader(
        "Label map: NIfTI on the same grid, or a DICOM SEG", accept_multiple_files=False, key=MASK_UPLOAD
    )
    legend = middle.file_uploader(
        "Label names (optional): JSON or CSV legend", key=LEGEND_UPLOAD, type=["json", "csv", "txt"]
    )
    probability = right.checkbox(
        "It is a probability map",
        key="mask_is_probability",
        help="Voxels at or above the threshold become label 1. The threshold is in the map's own values.",
    )
    if masks is None:
        st.caption("Upload a label map from nnU-Net, TotalSegmentator or another tool to review it here.")
        return None
    threshold = None
    if probability:
        # In the map's own units, starting at half its scale: 0.5 on a 0-255 map would keep every
        # voxel above zero, so the range is read and shown first.
        lo, hi = results.probability_range(results.upload_key([masks]), masks)
        threshold = float(
            right.number_input(
                "Threshold",
                min_value=lo,
                max_value=hi,
                value=default_threshold((lo, hi)),
                key=f"mask_threshold::{results.upload_key([masks])}",
                format="%g",
            )
        )
        right.caption(md_escape(f"The map's values run from {lo:g} to {hi:g}; kept: ≥ {threshold:g}."))
    key = results.upload_key([masks] + ([legend] if legend else []))
    segmentation = results.uploaded_mask(key, volume.input_sha256, threshold, masks, legend, volume)
    return segmentation, _stored_run(volume, segmentation)


def _stored_run(inputs, segmentation: Segmentation) -> int:
    run_ids = st.session_state.setdefault(SEG_RUN_IDS, {})
    run_key = f"{inputs.input_sha256}:{segmentation.model.model_id}:{segmentation.label_map.sha256}"
    if run_key not in run_ids:
        run_ids[run_key] = store_segmentation_run(
            database.transaction, resources.image_store(), inputs, case_facts(inputs), segmentation, reviewer() or None
        )
    return run_ids[run_key]


try:
    inputs = _upload_volume()
except ReviewError as exc:
    st.error(str(exc))
    st.stop()
if inputs is None:
    st.stop()

volume = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
for warning in volume.warnings:
    st.warning(warning)
facts = case_facts(inputs)
shown = shown_channel(inputs, key="channel_shown")
st.caption(
    md_escape(
        f"{volume.description} · {volume.modality} · {facts.source_format} · "
        + " x ".join(str(n) for n in volume.shape)
        + " voxels · stored as "
        + volume.original_axcodes
        + (f" · patient key {facts.patient_key}" if facts.patient_key else "")
    )
)

# Two slots in a fixed order: whatever the segmentation controls draw, the viewer keeps its place
# on the page, so the browser viewer is not rebuilt (and keeps the reader's slices and window).
controls, viewer_slot = st.container(), st.container()
result = None
with controls:
    try:
        if task == TASK_BRATS:
            result = _model_segmentation(inputs, BRATS_SEGRESNET)
        elif task == TASK_CT:
            if volume.modality == "MR":
                st.warning("This volume looks like an MRI (no air at -1000 HU); the whole-body model expects CT in HU.")
            result = _model_segmentation(inputs, WHOLEBODY_CT_SEGRESNET)
        else:
            result = _uploaded_segmentation(volume)
    except ReviewError as exc:
        st.error(str(exc))

segmentation, run_id = result if result is not None else (None, None)
with viewer_slot:
    volume_viewer(shown, segmentation, origin_label(segmentation) if segmentation is not None else "")
if segmentation is not None and run_id is not None:
    segmentation_results(segmentation, volume, run_id, scope="volumes")
