"""Plain, frozen results that storage keeps: a region SHAP explanation of an X-ray run, and a
segmentation (label map, structures and their measurements). They live here, beside
``core.types``, so that storage needs nothing above core; ``xai.region_shap`` and
``inference.volume.types`` hand out these same classes under their old names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import ModelIdentity

REGION_SHAP_METHOD = "region-shap-exact"
"""The method name stored with a region SHAP explanation (``xai.region_shap.METHOD``)."""


@dataclass(frozen=True)
class RegionExplanation:
    labels: tuple[str, ...]
    region_names: tuple[str, ...]
    values: np.ndarray  # float64 (C, R): Shapley value of each region for each finding
    base_values: np.ndarray  # float64 (C,): scores with every region hidden
    scores: np.ndarray  # float64 (C,): scores with nothing hidden
    evaluations: int
    regions_source: str
    masking: str
    timing_ms: float
    max_err: float  # largest additivity error over findings: |sum of values - (score - base)|

    def for_label(self, label: str) -> tuple[np.ndarray, float, float]:
        index = self.labels.index(label)
        row: np.ndarray = self.values[index]
        return row, float(self.base_values[index]), float(self.scores[index])

    def is_flat(self, label: str, tolerance: float = 1e-6) -> bool:
        """True when no masking moved this finding's score at all."""
        values, _, _ = self.for_label(label)
        return bool(np.all(np.abs(values) <= tolerance))


@dataclass(frozen=True)
class LabelInfo:
    """One value of a label map, as drawn in the viewer."""

    value: int
    name: str
    color: tuple[int, int, int]  # RGB 0..255


@dataclass(frozen=True)
class Structure:
    """What a reviewer reads and judges: the union of one or more label values. For a BraTS run
    "Whole tumour" is {1, 2, 4}; for an uploaded mask each label value is its own structure."""

    name: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class LabelMap:
    """An integer label map on a volume's canonical grid (0 = background)."""

    data: np.ndarray  # int16 or uint8 (X, Y, Z), read-only
    affine: np.ndarray
    labels: tuple[LabelInfo, ...]  # values present or declared, ascending
    structures: tuple[Structure, ...]
    source: str  # "model:<model_id>" or "uploaded:<file name>"
    sha256: str  # of the label map's bytes as uploaded, or of the array for a model output

    def label(self, value: int) -> LabelInfo:
        for info in self.labels:
            if info.value == value:
                return info
        raise KeyError(value)


@dataclass(frozen=True)
class StructureMeasurement:
    name: str
    values: tuple[int, ...]
    voxels: int
    volume_ml: float
    axial_first: int | None  # first and last axial (axis 2) slice holding the structure
    axial_last: int | None
    max_axial_extent_mm: float  # longest in-plane diameter on any axial slice (RECIST-like), 0 if empty


@dataclass(frozen=True)
class Segmentation:
    """A label map produced by a model (or uploaded), with the identity of what produced it."""

    label_map: LabelMap
    model: ModelIdentity  # for an uploaded mask: model_id "uploaded-mask", weights_sha256 = the file's hash
    params: tuple[tuple[str, str], ...]  # what shaped the output (roi, overlap, threshold...), as text
    spacing_mm: tuple[float, float, float]
    timing_ms: float  # producing the label map (for a model: preparing, windows, label map)
    measurements: tuple[StructureMeasurement, ...]  # every structure of the label map, measured once
    measure_ms: float  # measuring them

    def params_dict(self) -> dict[str, str]:
        return dict(self.params)
