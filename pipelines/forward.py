"""One forward pass of a classifier with its CAM layer's activations, and the closed-form Grad-CAM
of every label from them: shared by a single image's analysis and a volume slice's heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inference.models.adapters import as_input
from inference.models.loader import LoadedModel
from xai.cam import gradcam_all_labels

if TYPE_CHECKING:
    import torch


def forward_with_features(loaded: LoadedModel, x: np.ndarray) -> tuple[np.ndarray, "torch.Tensor"]:
    """Calibrated scores (B, C) and CAM target-layer activations (B, K, h, w) from one forward pass
    (how is the model's adapter's business)."""
    import torch

    with torch.inference_mode():
        scores, features = loaded.adapter.forward_with_features(
            loaded.classifier_spec, loaded.module, as_input(x, loaded.device)
        )
    return scores.float().cpu().numpy(), features


def closed_form_gradcam(loaded: LoadedModel, features: "torch.Tensor") -> np.ndarray:
    """(C, S, S) Grad-CAM of every label from one image's target-layer activations (K, h, w)."""
    spec = loaded.classifier_spec
    channel_weights, activations = loaded.adapter.gradcam_terms(spec, loaded.module, features)
    return gradcam_all_labels(activations, channel_weights, spec.input_size)
