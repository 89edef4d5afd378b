"""A 2D slice through any registered classifier, with the checks and extras a brain MRI model needs:
which images it reads (``expected_image``), how stable its answer is (``uncertainty``: test-time
augmentation and an ensemble's checkpoints), and a whole volume classified slice by slice
(``classify_volume``).

TTA scores four views of the slice (the original, a horizontal flip, brightness +10% and -10%),
in the analysis's own batch: the mean and standard deviation per class are the uncertainty, flagged
where mean ± standard deviation crosses a band boundary. The views are label-preserving changes
that a scanner or an export can make; a model whose answer moves under them is less to be trusted
on this image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.errors import CorruptImage, WrongModality
from core.types import Finding, Image2D, ModelIdentity, Prediction
from core.vocabulary import Modality
from inference.images.bands import BandConfig
from inference.images.expected import CHEST_RADIOGRAPH, MODALITY_NAMES, ExpectedImage
from inference.images.preprocess import NORMALISATIONS, model_input, model_square
from inference.models.adapters import as_input
from inference.models.loader import LoadedModel
from inference.models.spec import ClassifierSpec
from inference.volume.slices import oriented_slice, pixel_size_mm, slice_count
from inference.volume.types import Volume
from inference.volume.windowing import percentile_window, window_to_uint8

TTA_VIEWS = ("original", "horizontal flip", "brightness +10%", "brightness -10%")


@dataclass(frozen=True)
class Uncertainty:
    method: str  # "test-time augmentation (4 views)", "ensemble of 3 checkpoints × ..."
    views: tuple[str, ...]
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crosses_band: tuple[bool, ...]  # mean ± std spans a band boundary
    checkpoints: tuple[str, ...] = ()  # the sha256 of each checkpoint of an ensemble, the first one's first

    def intervals(self) -> dict[str, tuple[float, float]]:
        """label -> (mean, standard deviation)."""
        return {label: (m, s) for label, m, s in zip(self.labels, self.mean, self.std, strict=True)}

    def as_dict(self) -> dict:
        out = {
            "method": self.method,
            "views": list(self.views),
            "classes": [
                {"label": label, "mean": round(m, 6), "std": round(s, 6), "crosses_band": c}
                for label, m, s, c in zip(self.labels, self.mean, self.std, self.crosses_band, strict=True)
            ],
        }
        if self.checkpoints:
            out["checkpoints"] = list(self.checkpoints)
        return out


def expected_image(spec: ClassifierSpec) -> ExpectedImage:
    """The DICOM modalities ``spec`` reads, for the front door's one-sentence refusal."""
    if spec.modality is Modality.CHEST_XRAY:
        return CHEST_RADIOGRAPH
    modalities = tuple(m.value for m in (spec.accepts or (spec.modality,)))
    names = " or ".join(MODALITY_NAMES.get(m, m) for m in modalities)
    name = spec.display_name.split(" (")[0]
    return ExpectedImage(
        modalities=frozenset(modalities),
        what=names,
        reader=f"The {name[:1].lower()}{name[1:]}",
        elsewhere=f"it was trained on {' and '.join(modalities)} slices and would give meaningless scores for others.",
        noun="slices",
    )


def tta_inputs(image: Image2D, spec: ClassifierSpec) -> np.ndarray:
    """(4, 1, S, S) model inputs of the four ``TTA_VIEWS``."""
    square = model_square(image.pixels, spec.input_size)
    views = np.stack([square, square[:, ::-1], np.clip(square * 1.1, 0, 255), square * 0.9])
    return NORMALISATIONS[spec.normalisation](views)[:, None].astype(np.float32)


def uncertainty(
    loaded: LoadedModel,
    image: Image2D,
    bands: BandConfig,
    *,
    augment: bool = True,
    scored: np.ndarray | None = None,
) -> Uncertainty | None:
    """How stable the model's answer is on this image: the mean and standard deviation per class
    over the four test-time views (``augment``), over the checkpoints of an ensemble (its card's
    ``weights.ensemble``, each with its own temperature), or over both (every checkpoint on every
    view, one batched pass each). ``scored``: the first checkpoint's calibrated scores (V, C) on
    these views, already computed by the analysis in its own batch (``analyze(augment=...)``); then
    only an ensemble's other checkpoints run here. None when there is nothing to spread over."""
    import torch

    spec = loaded.classifier_spec
    checkpoints = [(spec, loaded.module)]
    checkpoints += [(replace(spec, temperature=m.temperature), m.module) for m in loaded.ensemble]
    views = TTA_VIEWS if augment else ("original",)
    if len(checkpoints) * len(views) < 2:
        return None
    x = tta_inputs(image, spec) if augment else model_input(image.pixels, spec.input_size, spec.normalisation)
    tensor = as_input(x, loaded.device)
    if scored is not None and np.shape(scored) != (len(x), len(spec.labels)):
        raise ValueError(f"Scores of shape {np.shape(scored)} given for {len(x)} views of {len(spec.labels)} classes.")
    scores = [np.asarray(scored, dtype=np.float32)] if scored is not None else []
    with torch.inference_mode():
        for s, module in checkpoints[len(scores) :]:
            scores.append(loaded.adapter.score(s, module, tensor).float().cpu().numpy())
    values = np.concatenate(scores).astype(np.float64)
    mean, std = values.mean(axis=0), values.std(axis=0)
    crosses = []
    for label, m, s in zip(spec.labels, mean, std, strict=True):
        t = bands.thresholds(spec.bands_key, label)
        crosses.append(label not in spec.normal_labels and t.band_of(float(m - s)) != t.band_of(float(m + s)))
    method = [f"ensemble of {len(checkpoints)} checkpoints"] if len(checkpoints) > 1 else []
    if augment:
        method.append(f"test-time augmentation ({len(TTA_VIEWS)} views)")
    return Uncertainty(
        method=" × ".join(method),
        views=views,
        labels=spec.labels,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        crosses_band=tuple(crosses),
        checkpoints=(loaded.weights_sha256, *(m.weights_sha256 for m in loaded.ensemble)) if loaded.ensemble else (),
    )


# Volumes, slice by slice ----------------------------------------------------------------------

AGGREGATIONS = ("max", "mean", "top-k mean", "noisy-or")
TOP_K = 5
MIN_CONTENT = 0.05  # a slice with less of its area above background is not scored (air, the neck)


@dataclass(frozen=True)
class VolumeClassification:
    """A volume classified slice by slice along ``view``: each scored slice's class probabilities,
    and per class the volume's score (``method`` over the slices) and the slice that drives it."""

    model: ModelIdentity
    view: str
    labels: tuple[str, ...]
    slice_indices: tuple[int, ...]  # the slices scored, ascending (empty ones are skipped)
    slice_scores: np.ndarray  # float32 (n scored, C)
    method: str
    scores: tuple[float, ...]  # per class
    driving_slice: tuple[int, ...]  # per class: the volume slice index that drives its score
    skipped: int  # slices without enough content to score
    timing_ms: float


def aggregate(scores: np.ndarray, method: str, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(per-class volume score, per-class index of the driving slice) from (N, C) slice scores:
    ``max``; ``mean`` (driven by the slice nearest the mean); ``top-k mean`` (the mean of the k
    highest; driven by the highest); ``noisy-or``, P(any) = 1 - prod(1 - p_i) (driven by the highest)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError("Aggregation needs at least one scored slice.")
    highest = scores.argmax(axis=0)
    if method == "max":
        return scores.max(axis=0), highest
    if method == "mean":
        mean = scores.mean(axis=0)
        return mean, np.abs(scores - mean).argmin(axis=0)
    if method == "top-k mean":
        top = np.sort(scores, axis=0)[-min(k, len(scores)) :]
        return top.mean(axis=0), highest
    if method == "noisy-or":
        return 1.0 - np.prod(1.0 - np.clip(scores, 0.0, 1.0), axis=0), highest
    raise ValueError(f"Unknown aggregation {method!r}; choose one of {AGGREGATIONS}.")


def volume_slices(
    volume: Volume, view: str, size: int, window: tuple[float, float] | None = None
) -> tuple[tuple[int, ...], np.ndarray, int]:
    """(indices of the slices with content, their (N, size, size) float32 0..255 squares as the
    model sees a slice, the number skipped): each slice in display orientation (anterior up, the
    patient's right on the left), square pixels, windowed to ``window`` (level, width), by default
    the volume's 0.5-99.5 percentiles. Content: voxels that are not zero and not below the window."""
    level, width = window or percentile_window(volume.data)
    kept, squares, skipped = [], [], 0
    for index in range(slice_count(volume.shape, view)):
        plane, content = _windowed(volume, view, index, (level, width))
        if content < MIN_CONTENT:
            skipped += 1
            continue
        kept.append(index)
        squares.append(_square(plane, volume, view, size))
    empty = np.zeros((0, size, size), dtype=np.float32)
    return tuple(kept), (np.stack(squares).astype(np.float32) if squares else empty), skipped


def _windowed(volume: Volume, view: str, index: int, window: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Slice ``index`` windowed to 0..255 (float32), and the share of it with content (voxels that
    are not zero and not below the window)."""
    raw = oriented_slice(volume.data, view, index)
    plane = window_to_uint8(raw, *window).astype(np.float32)
    return plane, float(((plane > 12) & (raw != 0)).mean())


def _square(plane: np.ndarray, volume: Volume, view: str, size: int) -> np.ndarray:
    """A windowed slice as the model sees it: square pixels, the centred square, ``size`` a side."""
    import cv2

    row_mm, col_mm = pixel_size_mm(volume.spacing_mm, view)
    if abs(row_mm - col_mm) > 1e-3:  # square pixels, as in every 2D slice the models saw
        rows, cols = plane.shape
        side = min(row_mm, col_mm)
        shape = (round(cols * col_mm / side), round(rows * row_mm / side))
        plane = np.asarray(cv2.resize(plane, shape), dtype=np.float32)
    return model_square(plane, size)


@dataclass(frozen=True)
class SliceHeatmaps:
    """One slice of a classified volume as the model saw it, its scores and every class's Grad-CAM."""

    view: str
    index: int
    square: np.ndarray  # (S, S) uint8: the windowed, squared slice the model read
    scores: tuple[float, ...]
    maps: np.ndarray  # (C, S, S) Grad-CAM in 0..1, one per class
    timing_ms: float


def volume_slice_heatmaps(
    loaded: LoadedModel, volume: Volume, index: int, view: str = "Axial", window: tuple[float, float] | None = None
) -> SliceHeatmaps:
    """Slice ``index`` of ``volume`` windowed, squared and stacked with its neighbours as
    ``classify_volume`` gives it to the model, and its Grad-CAM for every class from one forward
    pass: computed for the slice a reader asks about, never for the whole volume."""
    import time

    from pipelines.forward import closed_form_gradcam, forward_with_features

    started = time.perf_counter()
    spec = loaded.classifier_spec
    count = slice_count(volume.shape, view)
    if not 0 <= index < count:
        raise ValueError(f"Slice {index} is outside the volume's {count} {view.lower()} slices.")
    window = window or percentile_window(volume.data)
    half = spec.slice_context // 2
    neighbours = [min(count - 1, max(0, index + offset)) for offset in range(-half, half + 1)]
    stack = np.stack(
        [_square(_windowed(volume, view, i, window)[0], volume, view, spec.input_size) for i in neighbours]
    )
    x = NORMALISATIONS[spec.normalisation](stack[None]).astype(np.float32)
    scores, features = forward_with_features(loaded, x)
    maps = closed_form_gradcam(loaded, features[0])
    return SliceHeatmaps(
        view=view,
        index=index,
        square=np.clip(np.rint(stack[half]), 0, 255).astype(np.uint8),
        scores=tuple(float(v) for v in scores[0]),
        maps=maps,
        timing_ms=(time.perf_counter() - started) * 1000.0,
    )


def _stacks(squares: np.ndarray, context: int) -> np.ndarray:
    """(N, context, S, S): each slice with its neighbours (the edge slices repeated) for 2.5D models."""
    if context == 1:
        return squares[:, None]
    half = context // 2
    n = len(squares)
    return np.stack([squares[np.clip(np.arange(n) + offset, 0, n - 1)] for offset in range(-half, half + 1)], axis=1)


def classify_volume(
    loaded: LoadedModel,
    volume: Volume,
    view: str = "Axial",
    method: str | None = None,
    batch_size: int = 32,
    window: tuple[float, float] | None = None,
) -> VolumeClassification:
    """Every slice with content along ``view`` through the model, batched; the volume's scores by
    the card's aggregation (``spec.aggregation``) unless ``method`` names another; ``window``
    (level, width) as in ``volume_slices``.

    Raises:
        WrongModality: the volume is not of a modality the model reads.
        CorruptImage: no slice has enough content to score.
    """
    import time

    import torch

    spec = loaded.classifier_spec
    expected = expected_image(spec)
    if volume.modality not in expected.modalities and volume.modality != "OT":  # OT: the file does not say
        raise WrongModality(
            f"This volume is {MODALITY_NAMES.get(volume.modality, volume.modality)}; "
            f"{expected.reader} reads {' or '.join(sorted(expected.modalities))} only."
        )
    started = time.perf_counter()
    indices, squares, skipped = volume_slices(volume, view, spec.input_size, window)
    if not indices:
        raise CorruptImage("No slice of this volume has enough content above the background to classify.")
    inputs = NORMALISATIONS[spec.normalisation](_stacks(squares, spec.slice_context)).astype(np.float32)
    parts = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = as_input(inputs[start : start + batch_size], loaded.device)
            parts.append(loaded.adapter.score(spec, loaded.module, batch).float().cpu().numpy())
    scores = np.concatenate(parts).astype(np.float32)
    chosen = method or spec.aggregation
    values, driving = aggregate(scores, chosen)
    return VolumeClassification(
        model=loaded.identity,
        view=view,
        labels=spec.labels,
        slice_indices=indices,
        slice_scores=scores,
        method=chosen,
        scores=tuple(float(v) for v in values),
        driving_slice=tuple(indices[int(i)] for i in driving),
        skipped=skipped,
        timing_ms=(time.perf_counter() - started) * 1000.0,
    )


def volume_prediction(result: VolumeClassification, spec: ClassifierSpec, bands: BandConfig) -> Prediction:
    """The volume's per-class scores as the prediction a reader judges and storage keeps."""
    findings = tuple(
        Finding(label=label, score=score, band=spec.band_of(bands, label, score))
        for label, score in zip(result.labels, result.scores, strict=True)
    )
    return Prediction(
        findings=findings,
        model=result.model,
        bands_version=bands.identity,
        thresholds=bands.snapshot(spec.bands_key, list(result.labels)),
        timing_ms=result.timing_ms,
    )
