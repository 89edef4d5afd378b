"""Plain, frozen types for 3D volumes, label maps, segmentations and their measurements.

Every array here is in the *canonical* voxel order: axis 0 runs towards the patient's Right,
axis 1 towards Anterior, axis 2 towards Superior (nibabel's closest RAS+ orientation), so one
viewer and one measurement routine serve NIfTI and DICOM alike. ``affine`` maps canonical voxel
indices to RAS+ millimetres, so oblique acquisitions keep their true geometry. Arrays are made
read-only when a Volume is built: a cached volume shared by sessions cannot be changed by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import ModelIdentity


def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths in mm: the norms of the affine's three column vectors."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.sqrt((columns**2).sum(axis=0)))  # type: ignore[return-value]


def voxel_volume_ml(affine: np.ndarray) -> float:
    """One voxel's volume in mL (cm^3); the determinant is right for oblique and sheared grids too."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


@dataclass(frozen=True)
class Volume:
    """A decoded 3D scan. CT voxels are Hounsfield units; MR voxels are the scanner's arbitrary units."""

    data: np.ndarray  # float32 (X, Y, Z), canonical RAS+ voxel order, read-only
    affine: np.ndarray  # float64 4x4: canonical voxel index -> RAS+ mm
    modality: str  # "CT", "MR", or "OT" when the file does not say and the values do not tell
    source_format: str  # "nifti", "dicom-series" or "dicom-multiframe"
    input_sha256: str  # of the uploaded bytes (all files of a series, in sorted order)
    description: str  # de-identified: file name or series description, never a patient name
    original_axcodes: str  # orientation of the file as stored, e.g. "LPS" or "RAS"
    patient_key: str | None = None  # keyed hash of PatientID, never the ID itself
    warnings: tuple[str, ...] = ()  # e.g. a missing slice or uneven spacing, with where

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)


@dataclass(frozen=True)
class MultiChannelVolume:
    """Co-registered channels on one grid (a BraTS case: T1c, T1, T2, FLAIR in that order)."""

    channel_names: tuple[str, ...]
    channels: tuple[Volume, ...]
    input_sha256: str  # of the channels' hashes, in channel order

    @property
    def reference(self) -> Volume:
        return self.channels[0]


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
