"""MRI and CT cases that reopen: a segmentation run is stored with its volume and label map kept
in the de-identified image store, and a stored run is brought back as the same ``Volume`` and
``Segmentation`` the MRI/CT page showed (so the same viewer and verdict panel serve it).

Storing goes through ``store_segmentation_run`` alone, for a model's run (a background job) and
an uploaded mask (the page) alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from core.errors import StorageError
from core.types import CaseFacts, ModelIdentity
from inference.volume.types import DicomSource, MultiChannelVolume, Segmentation, Volume
from storage import repository
from storage.image_store import ImageStore
from storage.repository import SegmentationRunRecord

log = logging.getLogger(__name__)

_SINGLE = "image"  # the channel name of a one-channel volume


def keep_volume(store: ImageStore, inputs: Volume | MultiChannelVolume) -> bool:
    """Keep the decoded volume (each channel of a BraTS case) under the run's input sha256, with
    the de-identified facts the page shows: no file name, series description or reading warning
    (any may carry a patient's name). Returns whether it was written (False: kept already).

    Raises:
        StorageError: the store cannot be written.
    """
    if isinstance(inputs, MultiChannelVolume):
        names, channels = inputs.channel_names, inputs.channels
    else:
        names, channels = (_SINGLE,), (inputs,)
    reference = channels[0]
    meta = {
        "modality": reference.modality,
        "source_format": reference.source_format,
        "original_axcodes": reference.original_axcodes,
        "patient_key": reference.patient_key,
        "descriptions": [
            f"{reference.modality} volume ({n})" if len(names) > 1 else f"{reference.modality} volume" for n in names
        ],
        "channel_sha256": [c.input_sha256 for c in channels],
        "multichannel": isinstance(inputs, MultiChannelVolume),
        # UIDs and slice positions (no patient identifier), for the DICOM SEG and SR of its runs
        "dicom_source": None if reference.dicom_source is None else reference.dicom_source.as_dict(),
    }
    return store.put_volume(inputs.input_sha256, {n: c.data for n, c in zip(names, channels)}, reference.affine, meta)


def kept_volume(store: ImageStore, input_sha256: str) -> Volume | MultiChannelVolume | None:
    """The volume a run was computed on, from the store, or None when it is not kept."""
    kept = store.get_volume(input_sha256)
    if kept is None:
        return None
    meta = kept.meta
    volumes = tuple(
        Volume(
            data=data,
            affine=kept.affine,
            modality=meta["modality"],
            source_format=meta["source_format"],
            input_sha256=sha,
            description=description,
            original_axcodes=meta["original_axcodes"],
            patient_key=meta["patient_key"],
            dicom_source=DicomSource.from_dict(meta["dicom_source"]) if meta.get("dicom_source") else None,
        )
        for data, sha, description in zip(kept.channels, meta["channel_sha256"], meta["descriptions"])
    )
    if meta["multichannel"]:
        return MultiChannelVolume(kept.channel_names, volumes, input_sha256)
    return volumes[0]


def keep_segmentation(
    store: ImageStore | None, inputs: Volume | MultiChannelVolume, segmentation: Segmentation
) -> bool:
    """Keep a stored run's volume and label map so that its case reopens. The run is stored
    already: a store that cannot be written is logged and the case reopens without its image.
    Returns whether both are kept."""
    if store is None:
        return False
    try:
        keep_volume(store, inputs)
        store.put_label_map(segmentation.label_map)
    except StorageError as exc:
        log.warning("Segmentation of %s… stored, but its volume is not kept: %s", inputs.input_sha256[:12], exc)
        return False
    return True


def store_segmentation_run(
    transaction: Callable[[], AbstractContextManager[Session]],
    store: ImageStore | None,
    inputs: Volume | MultiChannelVolume,
    facts: CaseFacts,
    segmentation: Segmentation,
    actor: str | None,
) -> int:
    """Store a segmentation run (model or uploaded mask) in one transaction, then keep its volume
    and label map in the image store; returns the run id."""
    with transaction() as session:
        run_id = repository.store_segmentation(session, facts, segmentation, actor=actor).run_id
    keep_segmentation(store, inputs, segmentation)
    return run_id


def reopened_segmentation(store: ImageStore, run: SegmentationRunRecord) -> Segmentation | None:
    """A stored run as the ``Segmentation`` the page showed: its kept label map with the run's
    model identity, parameters and measurements (as stored, not measured again); None when the
    label map is not kept."""
    label_map = store.get_label_map(run.label_map_sha256)
    if label_map is None:
        return None
    return Segmentation(
        label_map=label_map,
        model=ModelIdentity(run.model_id, run.weights_sha256, run.trained, run.device),
        params=tuple(run.params.items()),
        spacing_mm=run.spacing,
        timing_ms=run.timing_ms,
        measurements=run.structures,
        measure_ms=0.0,
    )


def stored_segmentation(
    transaction: Callable[[], AbstractContextManager[Session]], store: ImageStore | None, run_id: int
) -> tuple[Segmentation, int]:
    """A run stored by a worker, as the page shows a finished segmentation: (Segmentation, run id).

    Raises:
        StorageError: the run or its label map cannot be found (the image store off or not shared).
    """
    with transaction() as session:
        run = repository.get_run(session, run_id, SegmentationRunRecord)
    if run is None:
        raise StorageError(f"Segmentation run {run_id} is not in the database.")
    segmentation = None if store is None else reopened_segmentation(store, run)
    if segmentation is None:
        raise StorageError(
            f"Segmentation run {run_id} is stored, but its label map is not in this app's image store: the app "
            "and the workers must share REVIEW_DATA_DIR (and IMAGE_STORE=1)."
        )
    return segmentation, run_id
