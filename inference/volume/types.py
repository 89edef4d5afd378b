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

# The label map, segmentation and measurement types are core's (storage keeps them and depends on
# core alone); they are importable from here as before.
from core.results import LabelInfo, LabelMap, Segmentation, Structure, StructureMeasurement

__all__ = [
    "LabelInfo",
    "LabelMap",
    "MultiChannelVolume",
    "Segmentation",
    "Structure",
    "StructureMeasurement",
    "Volume",
    "read_only",
    "spacing_from_affine",
    "voxel_volume_ml",
]


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
