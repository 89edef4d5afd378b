"""Per-case results, computed once and reused on every rerun (slider moves never call a model).

* X-ray cases: ``st.cache_data`` keyed by the input's sha256 and every parameter that changes the
  result (model id, weights hash, bands version, CAM method, label). Arguments starting with ``_``
  are not part of the key.
* Volumes (MRI / CT) and uploaded masks: hundreds of MB, so they live in ``st.cache_resource``
  (shared, never copied or pickled on a rerun) and their arrays are read-only. Keys are the
  uploads' file ids, which are random per upload, so one session cannot reach another's volume by
  guessing.

The cached figures of stored runs are in ``ui.widgets.figures``; the models in ``ui.resources``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.settings import load_settings
from inference.images.bands import BandConfig
from inference.models.loader import LoadedModel
from ui.resources import anatomy_model, image_store, patient_hash_key


@st.cache_data(max_entries=128, show_spinner="Reading the image and running the model…")
def case_analysis(
    input_sha256: str,
    filename: str,
    model_id: str,
    weights_sha256: str,
    bands_version: str,
    _data: bytes,
    _loaded: LoadedModel,
    _bands: BandConfig,
    augment: bool = False,
):
    """Decode, predict and compute every Grad-CAM for one upload; cached per input and model.
    ``augment``: test-time augmentation too (always for exclusive classes)."""
    from dataclasses import replace

    from pipelines.analyze import analyze
    from pipelines.classify import expected_image, uncertainty

    image = _decode(filename, _data, expected_image(_loaded.classifier_spec))
    # Four views of a small network (in the analysis's own batch), and every checkpoint of an ensemble.
    augment = augment or _loaded.classifier_spec.exclusive
    analysis = analyze(_loaded, image, _bands, augment=augment)
    spread = uncertainty(_loaded, image, _bands, augment=augment, scored=analysis.scored)
    return replace(analysis, uncertainty=spread) if spread is not None else analysis


def _decode(filename: str, data: bytes, expected=None):
    """The upload through the front door: checked against what the model reads (``expected``), or,
    for an image a model has already accepted, any radiograph, MR or CT slice."""
    from inference.images.expected import ANY_READABLE
    from inference.images.ingest import load_image

    settings = load_settings()
    return load_image(
        data,
        filename,
        max_bytes=settings.max_upload_mb * 1_000_000,
        max_pixels=settings.max_image_pixels,
        hash_key=patient_hash_key(),
        expected=expected or ANY_READABLE,
        retain_characteristics=settings.retain_patient_characteristics,
    )


@st.cache_data(max_entries=1024, show_spinner=False)
def keep_image(input_sha256: str, filename: str, _data: bytes) -> bool:
    """Keep the decoded, de-identified radiograph in the image store, once per input and process
    (the file itself, with its tags, is never kept). False when the store is turned off.

    Raises:
        StorageError: the store cannot be written (not cached: the next rerun tries again).
    """
    store = image_store()
    if store is None:
        return False
    if not store.has(input_sha256):
        store.put_image(_decode(filename, _data))
    return True


def keep_volume(volume) -> None:
    """Keep a classified volume's decoded, de-identified voxels (no DICOM tags) in the image store,
    so its case reopens with it; nothing when the store is turned off or holds it already.

    Raises:
        StorageError: the store cannot be written.
    """
    from pipelines.kept_volumes import keep_volume as keep

    store = image_store()
    if store is not None:
        keep(store, volume)


def _kept_crop(input_sha256: str) -> np.ndarray | None:
    """The kept radiograph's square centre crop (what the model saw), or None when not kept."""
    from inference.images.preprocess import display_crop

    store = image_store()
    image = store.get_image(input_sha256) if store is not None and input_sha256 else None
    return display_crop(image.pixels) if image is not None else None


@st.cache_data(max_entries=64, show_spinner=False)
def kept_display_png(input_sha256: str) -> bytes | None:
    """The kept radiograph's centre crop as PNG, or None when not kept."""
    from core.encode import encode_png

    crop = _kept_crop(input_sha256)
    return encode_png(crop) if crop is not None else None


def kept_pixels(input_sha256: str) -> np.ndarray | None:
    """The kept radiograph's whole decoded pixels, or None when not kept."""
    store = image_store()
    image = store.get_image(input_sha256) if store is not None and input_sha256 else None
    return image.pixels if image is not None else None


@st.cache_data(max_entries=2000, show_spinner=False)
def kept_thumbnail(input_sha256: str, size: int = 72) -> str | None:
    """A small PNG of the kept radiograph as a data URL (for the worklist), or None when not kept."""
    import base64

    import cv2

    from core.encode import encode_png

    crop = _kept_crop(input_sha256)
    if crop is None:
        return None
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return "data:image/png;base64," + base64.b64encode(encode_png(small)).decode()


@st.cache_data(max_entries=32, show_spinner="Reading the kept image and running the model…")
def kept_case_analysis(input_sha256: str, model_id: str, weights_sha256: str, bands_version: str, _loaded, _bands):
    """A stored case's image from the image store through the model again (its heatmaps), or None
    when the image is not kept. Cached per input and model like an upload."""
    from pipelines.analyze import analyze

    store = image_store()
    image = store.get_image(input_sha256) if store is not None else None
    return analyze(_loaded, image, _bands) if image is not None else None


@st.cache_resource(max_entries=16, show_spinner="Preparing the full image for the viewer…")
def xray_viewer_scene(input_sha256: str, filename: str, _data: bytes | None):
    """The whole radiograph for the browser viewer, from the upload or (without ``_data``) from
    the image store; None when the image is not kept. Encoded once per input and process."""
    from pipelines.viewer_layers import xray_scene

    if _data is not None:
        image = _decode(filename, _data)
    else:
        store = image_store()
        image = store.get_image(input_sha256) if store is not None and input_sha256 else None
    return xray_scene(image.pixels, input_sha256) if image is not None else None


@st.cache_data(max_entries=256, show_spinner=False)
def heatmap_viewer_layer(
    input_sha256: str,
    weights_sha256: str,
    method: str,
    label: str,
    trained: bool,
    image_shape: tuple[int, ...],
    caption: str,
    _cam: np.ndarray,
):
    """One heatmap as a viewer layer over the whole image, encoded once per (case, weights, method, finding)."""
    from pipelines.viewer_layers import heatmap_layer

    return heatmap_layer(_cam, (int(image_shape[0]), int(image_shape[1])), caption, trained)


@st.cache_resource(max_entries=8, ttl=4 * 3600, show_spinner="Preparing the volume for the viewer…")
def volume_viewer_scene(volume_sha256: str, _volume):
    """A volume for the browser viewer (int16, gzipped), encoded once per volume and process."""
    from pipelines.viewer_layers import volume_scene

    return volume_scene(_volume)


@st.cache_resource(max_entries=4, ttl=4 * 3600, show_spinner="Reading the kept volume…")
def kept_volume(input_sha256: str):
    """A stored segmentation run's volume from the image store (Volume or MultiChannelVolume), or
    None when it is not kept. Read once per process while recently used."""
    from pipelines.kept_volumes import kept_volume as read

    store = image_store()
    return read(store, input_sha256) if store is not None else None


@st.cache_resource(max_entries=8, ttl=4 * 3600, show_spinner=False)
def kept_segmentation(run_id: int, label_map_sha256: str, _run):
    """A stored segmentation run with its kept label map, or None when the map is not kept."""
    from pipelines.kept_volumes import reopened_segmentation

    store = image_store()
    return reopened_segmentation(store, _run) if store is not None else None


@st.cache_resource(max_entries=16, ttl=4 * 3600, show_spinner=False)
def label_viewer_layer(label_map_sha256: str, present: frozenset[int], caption: str, trained: bool, _label_map):
    """A label map for the browser viewer, encoded once per label map."""
    from pipelines.viewer_layers import label_layer

    return label_layer(_label_map, set(present), caption, trained)


@st.cache_data(max_entries=128, show_spinner=False)
def display_png(input_sha256: str, _display: np.ndarray) -> bytes:
    """The analysed crop as the page shows it, PNG-encoded once per input when first shown (the
    crop depends on the input alone; the analysis itself, which the CLI also runs, encodes nothing)."""
    from xai.overlay import png_bytes

    return png_bytes(_display)


@st.cache_data(max_entries=512, show_spinner="Computing the heatmap…")
def cam_map(
    input_sha256: str,
    weights_sha256: str,
    method: str,
    label_index: int,
    _loaded: LoadedModel,
    _model_input: np.ndarray,
) -> np.ndarray:
    """One label's heatmap for a pytorch-grad-cam method other than the closed-form Grad-CAM."""
    from xai.cam import pgc_cam

    return pgc_cam(_loaded, _model_input, method, label_index)


@st.cache_data(max_entries=512, show_spinner="Checking how much the score depends on the highlighted pixels…")
def faithfulness(
    input_sha256: str,
    weights_sha256: str,
    methods: tuple[str, ...],
    label_index: int,
    _loaded: LoadedModel,
    _model_input: np.ndarray,
    _cams: tuple[np.ndarray, ...],
):
    from pipelines.analyze import score_batch
    from xai.faithfulness import faithfulness_of

    return faithfulness_of(score_batch(_loaded), _model_input[0, 0], dict(zip(methods, _cams)), label_index)


@st.cache_data(max_entries=128, show_spinner="Segmenting the anatomy…")
def anatomy_regions(input_sha256: str, _image: np.ndarray):
    """The anatomical regions of one case (computed once; the segmentation takes seconds)."""
    from xai.anatomy import choose_regions

    return choose_regions(anatomy_model(), _image)[0]


# --- Volumes (MRI / CT) ------------------------------------------------------------------------


def upload_key(uploads) -> str:
    return "|".join(f"{u.file_id}:{u.size}" for u in uploads)


def _contents(uploads) -> list[tuple[str, bytes]]:
    # Read only on a cache miss: getvalue() copies the upload, hundreds of MB for a CT series.
    return [(u.name, u.getvalue()) for u in uploads]


@st.cache_data(max_entries=8, show_spinner="Reading the probability map's range…")
def probability_range(key: str, _mask) -> tuple[float, float]:
    """The value range of an uploaded probability map, read once per upload."""
    from inference.masks.load import probability_map_range

    settings = load_settings()
    [(name, data)] = _contents([_mask])
    return probability_map_range(
        name, data, max_bytes=settings.max_volume_upload_mb * 1_000_000, max_voxels=settings.max_volume_voxels
    )


@st.cache_resource(max_entries=4, ttl=4 * 3600, show_spinner="Reading the volume…")
def volume(key: str, _uploads: tuple):
    """One NIfTI, a DICOM series (files or a zip) or a multi-frame DICOM as a canonical Volume."""
    from inference.volume.ingest import load_volume

    settings = load_settings()
    return load_volume(
        _contents(_uploads),
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
        hash_key=patient_hash_key(),
    )


@st.cache_resource(max_entries=2, ttl=4 * 3600, show_spinner="Reading the four MRI channels…")
def mri_channels(key: str, assignment: tuple[tuple[str, str], ...], _uploads: tuple):
    """The BraTS channels (T1c, T1, T2, FLAIR) on one grid, from the reviewer's file assignment."""
    from inference.volume.ingest import load_mri_channels

    settings = load_settings()
    by_name = dict(_contents(_uploads))
    chosen = {channel: (name, by_name[name]) for channel, name in assignment}
    return load_mri_channels(
        chosen,
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
        hash_key=patient_hash_key(),
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def mr_window(volume_sha256: str, _data: np.ndarray) -> tuple[float, float]:
    """The percentile window of one MR volume, computed once (it reads the whole volume)."""
    from inference.volume.windowing import percentile_window

    return percentile_window(_data)


@st.cache_resource(max_entries=8, ttl=4 * 3600, show_spinner="Reading the mask…")
def uploaded_mask(key: str, volume_sha256: str, threshold: float | None, _mask, _legend, _volume):
    """A label map from another tool on this volume's grid, measured once."""
    from inference.masks.load import load_label_map
    from inference.volume.case import uploaded_segmentation

    settings = load_settings()
    legend = _contents([_legend])[0] if _legend is not None else None
    label_map = load_label_map(
        _contents([_mask]),
        _volume,
        legend=legend,
        threshold=threshold,
        max_bytes=settings.max_volume_upload_mb * 1_000_000,
        max_voxels=settings.max_volume_voxels,
    )
    return uploaded_segmentation(label_map, _volume)


@st.cache_resource(max_entries=4, ttl=4 * 3600, show_spinner="Classifying the volume slice by slice…")
def volume_classification(input_sha256: str, model_id: str, weights_sha256: str, _volume, _loaded):
    """A volume through a slice classifier, once per volume, model and weights (read-only result)."""
    from pipelines.classify import classify_volume

    return classify_volume(_loaded, _volume)


@st.cache_data(max_entries=64, show_spinner="Computing this slice's heatmap…")
def volume_slice_heatmaps(input_sha256: str, weights_sha256: str, view: str, index: int, _volume, _loaded):
    """One slice of a classified volume with every class's Grad-CAM, once per (volume, weights,
    slice): computed when a reader asks for that slice, never on scrolling back to it."""
    from pipelines.classify import volume_slice_heatmaps as compute

    return compute(_loaded, _volume, index, view)


@st.cache_data(max_entries=256, show_spinner="Comparing the masks voxel by voxel…")
def mask_agreement(model_label_map: str, mask_label_map: str, structures: tuple[str, ...], _model, _mask) -> list:
    """A model's masks against an uploaded mask of the same volume, per shared structure (Dice and
    volumes): once per pair of label maps (their sha256s), never on a rerun."""
    from pipelines.mask_agreement import compare

    store = image_store()
    return compare(store, _model, _mask, structures) if store is not None else []


@st.cache_data(max_entries=16, show_spinner="Fitting the calibration to the readers' verdicts…")
def site_calibration(digest: str, target_sensitivity: float, _facts) -> list:
    """analytics.calibration over ``_facts`` (the verdicts on screen, named by ``digest``): once per
    set of verdicts and target, never on a rerun."""
    from analytics.calibration import calibrate

    return calibrate(_facts, target_sensitivity=target_sensitivity)


@st.cache_data(max_entries=16, show_spinner="Comparing the weeks…")
def drift_weeks(
    model_id: str | None, include_untrained: bool, until, reference_weeks: int, latest_run: int
) -> tuple[list, list, int]:
    """(score weeks, input weeks, runs with an input profile) of the runs before ``until``: read
    and compared once per filter and per newest run (``latest_run``), never on a rerun."""
    from analytics.drift import input_drift, score_drift
    from storage import reporting
    from ui.resources import database

    with database().begin() as session:
        scores = reporting.classification_scores(session, model_id=model_id)
        profiles = reporting.input_profiles(session, model_id=model_id)
    scores = [r for r in scores if (include_untrained or r.trained) and r.created_at < until]
    profiles = [r for r in profiles if (include_untrained or r.trained) and r.created_at < until]
    return score_drift(scores, reference_weeks), input_drift(profiles, reference_weeks), len(profiles)


@st.cache_data(max_entries=16, show_spinner="Summarising the study…")
def study_summary(
    study_id: int, last_read: int, reads_count: int, _reads, _ai, findings: tuple[str, ...], normal: tuple[str, ...]
):
    """analytics.reader_study over a study's reads (named by the study, its newest read and their
    number): the bootstrap runs once per set of reads, never on a rerun."""
    from analytics.reader_study import summarise

    return summarise(_reads, _ai, findings, normal)


@st.cache_resource(max_entries=8, show_spinner=False)
def similar_index(model_id: str, weights_sha256: str):
    """The server's one vector index of a model's weights, shared by every session; each search
    first adds what was stored since (``SimilarIndex.refresh``)."""
    from analytics.similar import SimilarIndex

    return SimilarIndex(model_id, weights_sha256)


@st.cache_resource(max_entries=4, show_spinner="Building the anomaly bank from this site's confirmed normals…")
def anomaly_bank(model_id: str, weights_sha256: str, normal_runs: tuple[int, ...]):
    """The memory bank of these confirmed normal runs' patch features: built once per set of
    normals (a new confirmed normal makes a new set), shared by every session."""
    from storage.features import run_features
    from ui.resources import database
    from xai.anomaly import NormalBank

    with database().begin() as session:
        kept = run_features(session, normal_runs)
    return NormalBank([kept[r].patches for r in normal_runs if r in kept])


@st.cache_data(max_entries=32, show_spinner=False)
def confirmed_normal_runs(
    model_id: str, weights_sha256: str, normal_labels: tuple[str, ...], limit: int, state: tuple[int, int]
) -> list[int]:
    """``storage.reporting.confirmed_normals``, read once per state of the verdicts and features
    (``state``: ``reporting.review_state``), not on every rerun of the reading part."""
    from storage import reporting
    from ui.resources import database

    with database().begin() as session:
        return reporting.confirmed_normals(session, model_id, weights_sha256, normal_labels, limit)
