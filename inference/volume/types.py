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
    "DicomSource",
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
class DicomSource:
    """Where a volume read from DICOM came from: the identifiers and geometry a DICOM SEG or SR
    written about it must reference, so PACS files it with its study. UIDs and positions only,
    never a patient identifier (the patient is the volume's keyed hash)."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str  # "" when the series does not give one
    sop_class_uid: str
    modality: str
    sop_instance_uids: tuple[str, ...]  # per slice, in order along the slice normal
    frame_numbers: tuple[int, ...]  # per slice: its 1-based frame in a multi-frame file, 0 for a single-frame file
    positions_lps: tuple[tuple[float, float, float], ...]  # ImagePositionPatient per slice
    orientation: tuple[float, ...]  # ImageOrientationPatient: row cosines then column cosines
    pixel_spacing: tuple[float, float]  # (between rows, between columns) in mm
    rows: int
    columns: int

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> DicomSource:
        """The inverse of ``as_dict`` (after a round trip through JSON, which makes tuples lists)."""
        return cls(
            study_instance_uid=str(data["study_instance_uid"]),
            series_instance_uid=str(data["series_instance_uid"]),
            frame_of_reference_uid=str(data["frame_of_reference_uid"]),
            sop_class_uid=str(data["sop_class_uid"]),
            modality=str(data["modality"]),
            sop_instance_uids=tuple(str(u) for u in data["sop_instance_uids"]),
            frame_numbers=tuple(int(n) for n in data["frame_numbers"]),
            positions_lps=tuple((float(x), float(y), float(z)) for x, y, z in data["positions_lps"]),
            orientation=tuple(float(v) for v in data["orientation"]),
            pixel_spacing=(float(data["pixel_spacing"][0]), float(data["pixel_spacing"][1])),
            rows=int(data["rows"]),
            columns=int(data["columns"]),
        )


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
    dicom_source: DicomSource | None = None  # the series it was read from; None for NIfTI

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
