"""One finding's heatmap of an analysed image, by any CAM method, drawn for a reader elsewhere
(the HTTP API): over the square the model saw, labelled untrained in its pixels when it is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import BadParameter
from inference.models.loader import LoadedModel
from pipelines.analyze import CaseAnalysis
from xai.cam import CAM_METHODS, CLOSED_FORM_METHOD, heatmap_problem, pgc_cam
from xai.overlay import COLORMAPS, OPACITY_RANGE


@dataclass(frozen=True)
class Heatmap:
    label: str  # the finding it explains
    method: str
    cam: np.ndarray  # (S, S) float32 in [0, 1], on the model's input square
    problem: str | None  # why it is not drawn, when it is not drawable


def check_drawing(colormap: str, alpha: float) -> None:
    if colormap not in COLORMAPS:
        raise BadParameter(f"Unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}.")
    low, high = OPACITY_RANGE
    if not low <= alpha <= high:
        raise BadParameter(f"alpha must be between {low} and {high}, got {alpha}.")


def heatmap_of(loaded: LoadedModel, analysis: CaseAnalysis, finding: str | None, method: str) -> Heatmap:
    """``finding`` (default: the highest-ranked one, as the review page opens) by ``method``
    (Grad-CAM from the analysis's own pass; the others through pytorch-grad-cam)."""
    if method not in CAM_METHODS:
        raise BadParameter(f"Unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}.")
    labels = analysis.gradcam.labels
    label = finding if finding is not None else analysis.prediction.ranked()[0].label
    if label not in labels:
        raise BadParameter(f"{loaded.spec.model_id} has no finding {label!r}; its findings are {', '.join(labels)}.")
    if method == CLOSED_FORM_METHOD:
        cam = analysis.gradcam.map_for(label)
    else:
        cam = pgc_cam(loaded, analysis.model_input, method, labels.index(label))
    return Heatmap(label=label, method=method, cam=cam, problem=heatmap_problem(cam))


def drawn(
    analysis: CaseAnalysis, heatmap: Heatmap, colormap: str, alpha: float, max_side: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(overlay, heatmap) RGB uint8 pictures of the model's square, at most ``max_side`` px a side;
    both carry the untrained banner in their pixels when the weights are untrained."""
    import cv2

    from core.annotate import with_banner
    from xai.overlay import colorize, overlay, resize_map

    check_drawing(colormap, alpha)
    square = analysis.display
    if square.shape[0] > max_side:
        square = cv2.resize(square, (max_side, max_side), interpolation=cv2.INTER_AREA)
    trained = analysis.prediction.model.trained
    over = overlay(square, heatmap.cam, colormap, alpha, trained=trained)
    heat = colorize(resize_map(heatmap.cam, square.shape[0]), colormap)
    return over, (heat if trained else with_banner(heat))
