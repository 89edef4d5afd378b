"""One image through a registered classifier: calibrated findings, bands and all Grad-CAMs in one pass."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.errors import CorruptImage
from core.types import CamSet, CaseFacts, Finding, Image2D, ImageFeatures, Prediction
from inference.images.bands import BandConfig
from inference.images.preprocess import display_crop, model_input
from inference.models.adapters import as_input
from inference.models.loader import LoadedModel
from pipelines.classify import Uncertainty, tta_inputs
from pipelines.forward import closed_form_gradcam, forward_with_features
from xai.cam import CLOSED_FORM_METHOD

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class CaseAnalysis:
    """What the review page shows for one image; the display crop is what the model saw. Nothing is
    encoded here: images are encoded where, and when, they are shown."""

    facts: CaseFacts
    display: np.ndarray  # uint8 (D, D) square centre crop
    model_input: np.ndarray  # float32 (1, 1, S, S) for on-demand CAM methods
    prediction: Prediction
    gradcam: CamSet
    uncertainty: Uncertainty | None = None  # test-time augmentation, where it was run
    # The calibrated scores (V, C) of the views the analysis scored: the image, then (augment) the
    # other test-time views.
    scored: np.ndarray | None = None
    # What drift monitoring compares week by week (stored with the run): ``input_profile``.
    input: dict[str, object] | None = None
    # The image's embedding and patch features (stored with the run): similar cases, anomaly map.
    features: ImageFeatures | None = None


def analyze(loaded: LoadedModel, image: Image2D, bands: BandConfig, augment: bool = False) -> CaseAnalysis:
    """``augment``: the other test-time views ride in the same batch as the image (``scored`` then
    holds their scores too, for ``pipelines.classify.uncertainty``): cheaper than a second pass."""
    started = time.perf_counter()
    spec = loaded.classifier_spec
    x = model_input(image.pixels, spec.input_size, spec.normalisation)
    scores, features = forward_with_features(loaded, tta_inputs(image, spec) if augment else x)
    if not np.isfinite(scores).all():
        raise CorruptImage("The model returned invalid scores (NaN) for this image; it is not analysed.")
    predicted = time.perf_counter()
    maps = closed_form_gradcam(loaded, features[0])
    finished = time.perf_counter()
    findings = tuple(
        Finding(label=label, score=float(score), band=spec.band_of(bands, label, float(score)))
        for label, score in zip(spec.labels, scores[0])
    )
    identity = loaded.identity
    prediction = Prediction(
        findings=findings,
        model=identity,
        bands_version=bands.identity,
        thresholds=bands.snapshot(spec.bands_key, list(spec.labels)),
        timing_ms=(predicted - started) * 1000.0,
    )
    gradcam = CamSet(
        method=CLOSED_FORM_METHOD,
        labels=spec.labels,
        maps=maps,
        model=identity,
        timing_ms=(finished - predicted) * 1000.0,
    )
    return CaseAnalysis(
        facts=image.facts,
        display=display_crop(image.pixels),
        model_input=x,
        prediction=prediction,
        gradcam=gradcam,
        scored=scores,
        input=input_profile(image),
        features=ImageFeatures.from_activations(features[0].float().cpu().numpy()),
    )


def input_profile(image: Image2D) -> dict[str, object]:
    """The input as drift monitoring compares it: its format, view and acquisition facts, its size,
    and its decoded intensities (0-255, dense tissue white) as a mean and a spread. A brighter
    detector or another export moves these before it moves any score."""
    pixels = image.pixels
    return {
        "format": image.facts.source_format,
        "view": image.facts.view_position or "",
        **dict(image.facts.acquisition),
        "rows": int(pixels.shape[0]),
        "cols": int(pixels.shape[1]),
        "mean": round(float(pixels.mean()), 2),
        "std": round(float(pixels.std()), 2),
    }


def score_batch(loaded: LoadedModel):
    """A ``predict`` function for explanation code: model inputs (N, 1, S, S) -> calibrated scores (N, C)."""

    def predict(images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            scores = loaded.adapter.score(loaded.classifier_spec, loaded.module, as_input(images, loaded.device))
        return scores.float().cpu().numpy()

    return predict
