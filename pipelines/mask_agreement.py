"""A reader's own mask against the AI's, voxel by voxel: for a volume segmented by a model and also
given a mask uploaded from another tool (a reader's correction, say, made in 3D Slicer from the
app's DICOM SEG, whose segment names it keeps), each structure of the same name in both is
compared by its Dice coefficient and the two volumes. The label maps come from the image store.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.vocabulary import RunKind
from storage.image_store import ImageStore
from storage.reporting import StructureVolume
from storage.repository import SegmentationRunRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskPair:
    """A model's segmentation and an uploaded mask of the same volume, with the structure names
    they share."""

    case_id: int
    model_run: int
    model_id: str
    trained: bool
    mask_run: int
    shared: tuple[str, ...]


@dataclass(frozen=True)
class MaskAgreement:
    """One structure of a pair: Dice of the two voxel sets (None when both are empty) and their volumes."""

    case_id: int
    model_run: int
    model_id: str
    trained: bool
    mask_run: int
    structure: str
    dice: float | None
    model_ml: float
    mask_ml: float


def mask_pairs(volumes: Iterable[StructureVolume]) -> list[MaskPair]:
    """Every (model segmentation, uploaded mask) of the same case that share a structure name,
    from the stored measurements (nothing is read from the image store)."""
    runs: dict[int, dict[int, StructureVolume]] = defaultdict(dict)
    names: dict[int, list[str]] = defaultdict(list)
    for v in volumes:
        runs[v.case_id][v.run_id] = v
        names[v.run_id].append(v.structure)
    pairs = []
    for case_id, by_run in sorted(runs.items()):
        models = [v for v in by_run.values() if v.kind is RunKind.SEGMENTATION]
        masks = [v for v in by_run.values() if v.kind is RunKind.UPLOADED_MASK]
        for model in models:
            for mask in masks:
                shared = tuple(n for n in names[model.run_id] if n in set(names[mask.run_id]))
                if shared:
                    pairs.append(MaskPair(case_id, model.run_id, model.model_id, model.trained, mask.run_id, shared))
    return pairs


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """2|A∩B| / (|A| + |B|) of two boolean masks; None when both are empty (nothing to agree on)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return None
    return 2.0 * int(np.count_nonzero(a & b)) / total


def compare(
    store: ImageStore, model: SegmentationRunRecord, mask: SegmentationRunRecord, structures: Iterable[str]
) -> list[MaskAgreement]:
    """Each of ``structures`` in both runs' kept label maps; none when either map is no longer kept
    or they are not on one grid."""
    first = store.get_label_map(model.label_map_sha256)
    second = store.get_label_map(mask.label_map_sha256)
    if first is None or second is None:
        log.info("Case %d: a label map of run %d or %d is not kept", model.case_id, model.run_id, mask.run_id)
        return []
    if first.data.shape != second.data.shape:
        log.warning("Case %d: runs %d and %d are on different grids", model.case_id, model.run_id, mask.run_id)
        return []
    values = {run.run_id: {s.name: s for s in run.structures} for run in (model, mask)}
    found = []
    for name in structures:
        ours, theirs = values[model.run_id][name], values[mask.run_id][name]
        score = dice(np.isin(first.data, ours.values), np.isin(second.data, theirs.values))
        found.append(
            MaskAgreement(
                model.case_id,
                model.run_id,
                model.model_id,
                model.trained,
                mask.run_id,
                name,
                score,
                ours.volume_ml,
                theirs.volume_ml,
            )
        )
    return found
