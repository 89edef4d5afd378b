"""Class activation maps for every registered classifier.

Grad-CAM for every label comes from one forward pass, in closed form: each model's adapter derives
the channel weights for its own architecture (``Adapter.gradcam_terms``: the DenseNet's ReLU gate
before pooling gives one form, a ResNet's ``layer4`` feeding pooling directly another), and the
map is scaled exactly as pytorch-grad-cam scales it; ``tests/unit/xai/test_cam.py`` holds every
registered classifier's maps to pytorch-grad-cam's ``GradCAM`` on the logits.

The other methods run through pytorch-grad-cam on a private copy of the network
(``LoadedModel.hooked_copy``): hooks never sit on the module that other sessions' forward passes
use, and one lock serialises the copy's users.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from inference.models.loader import LoadedModel

log = logging.getLogger(__name__)

CLOSED_FORM_METHOD = "Grad-CAM"
CAM_METHODS = ("Grad-CAM", "Grad-CAM++", "XGrad-CAM", "HiRes-CAM", "Layer-CAM", "Eigen-CAM")


def _pgc_class(method: str) -> type[Any]:
    """The pytorch-grad-cam class for a method (the library ships no type information)."""
    import pytorch_grad_cam as pgc

    classes: dict[str, type[Any]] = {
        "Grad-CAM": pgc.GradCAM,
        "Grad-CAM++": pgc.GradCAMPlusPlus,
        "XGrad-CAM": pgc.XGradCAM,
        "HiRes-CAM": pgc.HiResCAM,
        "Layer-CAM": pgc.LayerCAM,
        "Eigen-CAM": pgc.EigenCAM,
    }
    try:
        return classes[method]
    except KeyError:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {CAM_METHODS}.") from None


def gradcam_all_labels(
    activations: "np.ndarray | torch.Tensor", channel_weights: "np.ndarray | torch.Tensor", size: int
) -> np.ndarray:
    """Grad-CAM maps for every label, from the closed-form terms of the model's adapter
    (``Adapter.gradcam_terms``): ReLU(weights @ activations), scaled to [0, 1] and resized.

    Computed with torch on the model's own thread pool: numpy's BLAS threads spin after a call
    and, on a 2-core machine, slowed the next forward pass by ~70%.

    Args:
        activations: (K, h, w) target-layer activations as pytorch-grad-cam records them, one image.
        channel_weights: (C, K) Grad-CAM channel weights of every label.
        size: side of the model input; maps are returned as (C, size, size) float32 in [0, 1].
    """
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        features = torch.as_tensor(activations, dtype=torch.float32)
        weight = torch.as_tensor(channel_weights, dtype=torch.float32).to(features.device)
        if features.ndim != 3 or weight.ndim != 2 or weight.shape[1] != features.shape[0]:
            raise ValueError(
                f"features must be (K, h, w) and weights (C, K), got {tuple(features.shape)} and {tuple(weight.shape)}."
            )
        k, h, w = features.shape
        raw = (weight @ features.reshape(k, h * w)).reshape(-1, 1, h, w)
        scaled = _minmax(F.relu(raw))
        if h != size or w != size:
            # Bilinear with half-pixel centres, as cv2.resize(INTER_LINEAR) in pytorch-grad-cam.
            scaled = F.interpolate(scaled, size=(size, size), mode="bilinear", align_corners=False)
        maps: np.ndarray = _minmax(scaled)[:, 0].cpu().numpy().astype(np.float32)
        return maps


def _minmax(maps: "torch.Tensor") -> "torch.Tensor":
    """Per-map scaling to [0, 1] over the last two axes, as pytorch-grad-cam's ``scale_cam_image``."""
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return shifted / (1e-7 + shifted.amax(dim=(-2, -1), keepdim=True))


def target_layer(module: "torch.nn.Module", dotted: str) -> "torch.nn.Module":
    layer = module
    for part in dotted.split("."):
        layer = getattr(layer, part)
    return layer


def pgc_cam(loaded: "LoadedModel", model_input: np.ndarray, method: str, label_index: int) -> np.ndarray:
    """One label's map from pytorch-grad-cam (any method in ``CAM_METHODS``), (S, S) in [0, 1]."""
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = _pgc_class(method)
    x = torch.from_numpy(model_input).to(loaded.device).requires_grad_(True)
    with loaded.hook_lock:
        module = loaded.hooked_copy()
        layer = target_layer(module, loaded.classifier_spec.cam_target_layer)
        with cam_class(model=module, target_layers=[layer]) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(label_index)])
    return np.asarray(maps[0], dtype=np.float32)


def heatmap_problem(cam: np.ndarray) -> str | None:
    """A plain reason not to draw a heatmap, or None when it is drawable."""
    if not np.all(np.isfinite(cam)):
        return "The heatmap contains invalid values (NaN or infinity) and is not drawn."
    if float(cam.max() - cam.min()) < 1e-6:
        return "The heatmap is flat: no region raised this score, so there is nothing to highlight."
    return None
