"""Class activation maps for the chest X-ray DenseNet.

Grad-CAM for every label comes from one forward pass: the target layer (``features.norm5``) feeds
ReLU, global average pooling and a linear layer, so d score_c / d A_k(i,j) is
``s'_c * W_ck / HW * [A_k(i,j) > 0]``. The Grad-CAM channel weight is therefore
``s'_c / HW * W_ck * (share of positions where A_k > 0)``; ``s'_c > 0`` drops out in the
normalisation. The map is taken over the post-ReLU activations, as pytorch-grad-cam sees them
(torchxrayvision applies that ReLU in place), and scaled exactly as pytorch-grad-cam scales it.

The other methods run through pytorch-grad-cam on a private copy of the network whose target
layer is an explicit ReLU after ``norm5`` (``LoadedModel.hooked_copy``): hooks never sit on the
module that other sessions' forward passes use, and one lock serialises the copy's users.
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
    features: "np.ndarray | torch.Tensor", classifier_weight: "np.ndarray | torch.Tensor", size: int
) -> np.ndarray:
    """Grad-CAM maps for every output of the DenseNet, from the target layer's activations.

    Computed with torch on the model's own thread pool: numpy's BLAS threads spin after a call
    and, on a 2-core machine, slowed the next forward pass by ~70%.

    Args:
        features: (K, h, w) activations of ``features.norm5`` before ReLU, for one image
            (numpy array or tensor).
        classifier_weight: (C, K) weight of the final linear layer.
        size: side of the model input; maps are returned as (C, size, size) float32 in [0, 1].
    """
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        features = torch.as_tensor(features, dtype=torch.float32)
        weight = torch.as_tensor(classifier_weight, dtype=torch.float32).to(features.device)
        if features.ndim != 3 or weight.ndim != 2 or weight.shape[1] != features.shape[0]:
            raise ValueError(
                f"features must be (K, h, w) and weights (C, K), got {tuple(features.shape)} and {tuple(weight.shape)}."
            )
        positive_share = (features > 0).float().mean(dim=(1, 2))
        channel_weights = weight * positive_share[None, :]
        k, h, w = features.shape
        raw = (channel_weights @ F.relu(features).reshape(k, h * w)).reshape(-1, 1, h, w)
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
