"""Plain, frozen result types passed between layers (no Streamlit, no torch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.vocabulary import Band


@dataclass(frozen=True)
class CaseFacts:
    """The non-identifying facts kept about an input; nothing here names a patient."""

    input_sha256: str
    source_format: str  # "png", "jpeg" or "dicom"
    modality: str  # DICOM modality, or "image" for PNG/JPEG
    view_position: str | None = None
    body_part: str | None = None
    patient_key: str | None = None  # keyed hash of PatientID, never the ID itself
    notes: tuple[str, ...] = ()
    # (study, series, SOP instance, SOP class) UIDs of a DICOM image, so results sent back to PACS
    # are filed in its study; kept with the image, not in the database's case row
    dicom_uids: tuple[str, str, str, str] | None = None
    # What the acquisition says of the image, for drift monitoring ((name, value) pairs: manufacturer,
    # pixel spacing, bits stored, from a DICOM header); nothing here identifies a patient
    acquisition: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CaseFacts:
        """The facts from their JSON form (``dataclasses.asdict`` then JSON: its tuples became lists)."""
        return cls(
            **{
                **raw,
                "notes": tuple(raw.get("notes", ())),
                "dicom_uids": tuple(raw["dicom_uids"]) if raw.get("dicom_uids") else None,
                "acquisition": tuple(tuple(pair) for pair in raw.get("acquisition", ())),
            }
        )


@dataclass(frozen=True)
class Image2D:
    """A decoded 2D radiograph: float32 (H, W) pixels, 0..255, dense tissue white whatever the
    source photometric interpretation was."""

    pixels: np.ndarray
    facts: CaseFacts

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass(frozen=True)
class Finding:
    label: str
    score: float
    band: Band


def rank_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """By band (critical, positive, indeterminate, negative), then by score, highest first: the
    order every screen shows (the chart, the verdict panel, the report)."""
    return tuple(sorted(findings, key=lambda f: (-f.band.rank, -f.score)))


@dataclass(frozen=True)
class ModelIdentity:
    model_id: str
    weights_sha256: str
    trained: bool
    device: str


@dataclass(frozen=True)
class Prediction:
    findings: tuple[Finding, ...]  # in the model's label order
    model: ModelIdentity
    bands_version: str
    thresholds: dict[str, dict[str, float]]  # finding -> {low, high, critical} the reviewer saw
    timing_ms: float

    def ranked(self) -> tuple[Finding, ...]:
        return rank_findings(self.findings)

    def finding(self, label: str) -> Finding:
        for f in self.findings:
            if f.label == label:
                return f
        raise KeyError(label)


@dataclass(frozen=True)
class CamSet:
    """Heatmaps in [0, 1] on the model's input grid (the square centre crop), one per label."""

    method: str
    labels: tuple[str, ...]
    maps: np.ndarray  # float32 (n_labels, S, S)
    model: ModelIdentity
    timing_ms: float

    def map_for(self, label: str) -> np.ndarray:
        cam: np.ndarray = self.maps[self.labels.index(label)]
        return cam


@dataclass(frozen=True)
class ImageFeatures:
    """What a classifier's last feature layer makes of one image: its embedding (the rectified
    activations averaged over the image, unit length: for finding similar cases) and each patch's
    rectified activations (for the anomaly map against the site's normals). Vectors, never pixels."""

    embedding: np.ndarray  # float32 (K,), unit length
    patches: np.ndarray  # float16 (h * w, K), the feature grid row by row
    grid: tuple[int, int]  # (h, w)

    @classmethod
    def from_activations(cls, activations: np.ndarray) -> ImageFeatures:
        """From one image's feature-layer activations (K, h, w)."""
        rectified = np.maximum(np.asarray(activations, dtype=np.float32), 0.0)
        k, h, w = rectified.shape
        pooled = rectified.mean(axis=(1, 2))
        norm = float(np.linalg.norm(pooled))
        embedding = (pooled / norm if norm > 0 else pooled).astype(np.float32)
        patches = rectified.reshape(k, h * w).T.astype(np.float16)
        return cls(embedding, patches, (h, w))
