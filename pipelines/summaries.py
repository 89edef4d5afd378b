"""One image's analysis as plain JSON-ready data: what the command line prints with ``--json`` and
what the HTTP API answers, so a script and a service read the same fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.types import ModelIdentity, Prediction
from inference.models.loader import UNTRAINED_LABEL

if TYPE_CHECKING:
    from inference.images.bands import BandConfig
    from inference.models.loader import LoadedModel
    from inference.volume.types import Volume
    from pipelines.analyze import CaseAnalysis
    from pipelines.classify import Uncertainty


def model_facts(identity: ModelIdentity) -> dict:
    """The model a result came from: id, weights sha256 and whether those weights were trained."""
    return {"id": identity.model_id, "weights_sha256": identity.weights_sha256, "trained": identity.trained}


def finding_rows(prediction: Prediction) -> list[dict]:
    """Each finding's calibrated score and band, in the model's label order."""
    return [{"label": f.label, "score": round(f.score, 6), "band": f.band.value} for f in prediction.findings]


def untrained_note(trained: bool) -> dict:
    """``{"warning": ...}`` for a result from untrained weights, nothing for a trained one."""
    return {} if trained else {"warning": f"UNTRAINED WEIGHTS: {UNTRAINED_LABEL}"}


def analysis_summary(analysis: CaseAnalysis) -> dict:
    """The findings in bands, the model, the bands version and the time the model and Grad-CAM took."""
    prediction = analysis.prediction
    return {
        "modality": analysis.facts.modality,
        "findings": finding_rows(prediction),
        "model": model_facts(prediction.model),
        "bands_version": prediction.bands_version,
        "timing_ms": round(prediction.timing_ms + analysis.gradcam.timing_ms, 1),
    }


def slice_summary(analysis: CaseAnalysis, *, exclusive: bool, spread: Uncertainty | None = None) -> dict:
    """A 2D classifier's answer on one slice: each class in its band, the top class when the
    classes exclude each other, and the test-time or ensemble spread where it was computed."""
    prediction = analysis.prediction
    top = max(prediction.findings, key=lambda f: f.score)
    result: dict = {
        "modality": analysis.facts.modality,
        "model": model_facts(prediction.model),
        "prediction": top.label if exclusive else None,
        "classes": finding_rows(prediction),
        "bands_version": prediction.bands_version,
    }
    if spread is not None:
        result["uncertainty"] = spread.as_dict()
    result["timing_ms"] = round(prediction.timing_ms + analysis.gradcam.timing_ms, 1)
    return result


def volume_classification(volume: Volume, loaded: LoadedModel, bands: BandConfig) -> dict:
    """A 2D classifier over a volume's slices: each class's volume score in its band, every slice's
    scores, and how the volume's score was made from them (and which slice drives each class)."""
    from pipelines.classify import classify_volume

    spec = loaded.classifier_spec
    result = classify_volume(loaded, volume)
    classes = [
        {"label": label, "score": round(score, 6), "band": spec.band_of(bands, label, score).value}
        for label, score in zip(result.labels, result.scores, strict=True)
    ]
    return {
        "modality": volume.modality,
        "model": model_facts(loaded.identity),
        "classes": classes,
        "slices": [
            {"index": index, "scores": [round(float(v), 6) for v in row]}
            for index, row in zip(result.slice_indices, result.slice_scores, strict=True)
        ],
        "aggregate": {
            "method": result.method,
            "view": result.view,
            "slice": dict(zip(result.labels, result.driving_slice, strict=True)),
            "skipped_slices": result.skipped,
        },
        "bands_version": bands.identity,
        "timing_ms": round(result.timing_ms, 1),
    }
