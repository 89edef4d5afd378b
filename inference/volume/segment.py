"""Run a MONAI segmentation network over a volume and return a ``Segmentation``.

All array work is done in torch (one buffer per input, post-processing on the network output),
so the run costs little more than the network's own forward passes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ChannelAssignmentError, GridMismatch, WrongModality
from inference.models.spec import SegmentationSpec
from inference.volume.measure import measure_structures
from inference.volume.types import LabelMap, MultiChannelVolume, Segmentation, Volume, read_only

if TYPE_CHECKING:
    import torch

    from inference.models.loader import LoadedModel

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

SPACING_TOLERANCE = 0.01  # resample only when an axis differs from the model's grid by more than 1%
_PREP_END, _WINDOWS_END = 0.05, 0.95  # progress fractions: preparation, windows, post-processing

_CHANNEL_ALIASES = {
    "t1c": "T1c",
    "t1ce": "T1c",
    "t1gd": "T1c",
    "t1-gd": "T1c",
    "t1-ce": "T1c",
    "t1post": "T1c",
    "t1": "T1",
    "t2": "T2",
    "flair": "FLAIR",
    "t2flair": "FLAIR",
    "t2-flair": "FLAIR",
}


# --- input checks -----------------------------------------------------------------------------


def _brats_channels(case: MultiChannelVolume, spec: SegmentationSpec) -> tuple[Volume, ...]:
    """The case's channels in the network's order, or an error a radiologist can act on."""
    if not isinstance(case, MultiChannelVolume) or len(case.channels) != spec.in_channels:
        got = len(case.channels) if isinstance(case, MultiChannelVolume) else 1
        raise ChannelAssignmentError(
            f"{spec.display_name} needs {spec.in_channels} co-registered MRI sequences "
            f"({', '.join(spec.channel_names)}); this case has {got}. Upload all four sequences of the study."
        )
    for name, volume in zip(case.channel_names, case.channels):
        if volume.modality == "CT":
            raise WrongModality(
                f"The {name} channel is a CT scan; {spec.display_name} only reads brain MRI. "
                "Choose the whole-body CT model for CT."
            )
    canonical = [_CHANNEL_ALIASES.get(n.strip().lower().replace(" ", ""), n) for n in case.channel_names]
    if sorted(canonical) != sorted(spec.channel_names):
        raise ChannelAssignmentError(
            f"{spec.display_name} needs the sequences {', '.join(spec.channel_names)}; this case has "
            f"{', '.join(case.channel_names)}. Assign each uploaded file to one of the four sequences."
        )
    ordered = tuple(case.channels[canonical.index(name)] for name in spec.channel_names)
    shape = ordered[0].shape
    for name, volume in zip(spec.channel_names, ordered):
        if volume.shape != shape or not np.allclose(volume.affine, ordered[0].affine, atol=1e-3):
            raise GridMismatch(
                f"The {name} sequence is on a different voxel grid from {spec.channel_names[0]} "
                f"({volume.shape} vs {shape}); the sequences must be co-registered (BraTS-style) first."
            )
    return ordered


def _ct_volume(volume, spec: SegmentationSpec) -> Volume:
    if isinstance(volume, MultiChannelVolume):
        if len(volume.channels) != 1:
            raise WrongModality(
                f"{spec.display_name} reads one CT volume; this is a {len(volume.channels)}-channel MRI case. "
                "Choose the BraTS model for brain MRI."
            )
        volume = volume.channels[0]
    if volume.modality == "MR":
        raise WrongModality(
            f"This scan is MRI; {spec.display_name} was trained on CT only and its output on MRI "
            "would be meaningless. Upload a CT series, or use the BraTS model for brain MRI."
        )
    return volume


# --- preprocessing (torch) --------------------------------------------------------------------


def _stack(volumes: tuple[Volume, ...]) -> "torch.Tensor":
    """One (1, C, X, Y, Z) float32 buffer, filled channel by channel (the only full-size copy)."""
    import torch

    x = torch.empty((1, len(volumes), *volumes[0].shape), dtype=torch.float32)
    buffer = x.numpy()
    for c, volume in enumerate(volumes):
        np.copyto(buffer[0, c], volume.data, casting="unsafe")
    return x


def _model_grid(shape, spacing, target: float) -> tuple[int, int, int] | None:
    """The shape on the model's isotropic grid, or None when the input is already on it."""
    if all(abs(s - target) <= SPACING_TOLERANCE * target for s in spacing):
        return None
    return tuple(max(1, int(round(n * s / target))) for n, s in zip(shape, spacing))  # type: ignore[return-value]


def _resample(x: "torch.Tensor", size) -> "torch.Tensor":
    import torch.nn.functional as F

    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)


def normalize_nonzero_(x: "torch.Tensor") -> "torch.Tensor":
    """In place: z-score over the non-zero voxels, zeros stay zero (MONAI NormalizeIntensity nonzero).

    Same statistics as MONAI (mean and population std of the non-zero voxels), computed without
    gathering them: a few fused passes over a contiguous ``x``.
    """
    import torch

    flat = x.view(-1)
    keep = flat != 0
    n = torch.count_nonzero(keep)
    if int(n) == 0:
        return x
    flat.sub_(flat.sum() / n)
    torch.where(keep, flat, torch.zeros((), dtype=flat.dtype), out=flat)
    std = (torch.dot(flat, flat) / n).sqrt()
    if float(std) != 0.0:
        flat.div_(std)
    return x


def scale_minmax_(x: "torch.Tensor", lo: float, hi: float) -> "torch.Tensor":
    """In place: rescale to ``lo..hi`` (MONAI ScaleIntensity; a constant image becomes ``x * lo``)."""
    mn, mx = x.aminmax()
    if bool(mn == mx):
        return x.mul_(lo)
    return x.sub_(mn).mul_((hi - lo) / (mx - mn)).add_(lo)


def _prepare(inputs, spec: SegmentationSpec, device: str = "cpu"):
    """(tensor on the model grid, the reference volume, model-grid shape or None if not resampled).
    Normalisation runs where the network runs: on a GPU it costs milliseconds instead of a CPU pass."""
    if spec.modality == "MR":
        volumes = _brats_channels(inputs, spec)
    else:
        volumes = (_ct_volume(inputs, spec),)
    reference = volumes[0]
    x = _stack(volumes).to(device)
    grid = _model_grid(reference.shape, reference.spacing_mm, spec.target_spacing_mm)
    if grid is not None:
        x = _resample(x, grid)
    if spec.output_kind == "sigmoid-multilabel":  # BraTS: NormalizeIntensity(nonzero, channel_wise)
        for c in range(x.shape[1]):
            normalize_nonzero_(x[0, c])
    else:  # whole-body CT: NormalizeIntensity(nonzero) then ScaleIntensity(-1, 1)
        scale_minmax_(normalize_nonzero_(x), -1.0, 1.0)
    return x, reference, grid


def prepare_input(inputs: MultiChannelVolume | Volume, spec: SegmentationSpec) -> "torch.Tensor":
    """The exact (1, C, X, Y, Z) float32 CPU tensor ``segment`` feeds to the sliding window."""
    return _prepare(inputs, spec)[0]


def pad_to_roi(x: "torch.Tensor", spec: SegmentationSpec) -> "torch.Tensor":
    """Pad like ``sliding_window_inference`` does where the image is smaller than the roi."""
    import torch.nn.functional as F

    pad: list[int] = []
    for k in range(x.dim() - 1, 1, -1):
        diff = max(spec.roi_size[k - 2] - x.shape[k], 0)
        pad.extend([diff // 2, diff - diff // 2])
    return F.pad(x, pad, mode=spec.padding_mode) if any(pad) else x


# --- sliding window ---------------------------------------------------------------------------


def count_windows(shape, spec: SegmentationSpec) -> int:
    """How many windows ``sliding_window_inference`` will run over an image of ``shape``."""
    from monai.data.utils import dense_patch_slices

    roi = spec.roi_size
    size = tuple(max(n, r) for n, r in zip(shape, roi))
    interval = tuple(r if r == n else max(1, int(r * (1 - spec.overlap))) for n, r in zip(size, roi))
    return len(dense_patch_slices(size, roi, interval))


def _run_windows(x: "torch.Tensor", model: "LoadedModel", total: int, progress: Progress | None) -> "torch.Tensor":
    import torch
    from monai.inferers import sliding_window_inference

    spec, network, adapter = model.segmentation_spec, model.module, model.adapter
    done = 0

    def predictor(window: "torch.Tensor") -> "torch.Tensor":
        nonlocal done
        out = adapter.segment_window(spec, network, window)
        done += int(window.shape[0])
        if progress is not None:
            fraction = _PREP_END + (_WINDOWS_END - _PREP_END) * min(done, total) / total
            progress(fraction, f"window {min(done, total)} of {total}")
        return out

    with torch.inference_mode():
        x = x.to(model.device)
        if total == 1:
            # The image fits in one roi: the sliding window would pad, run this one window and
            # blend it with weight 1. Doing exactly that directly skips its full-size output and
            # count-map buffers.
            padded = pad_to_roi(x, spec)
            out = predictor(padded)
            crop = [slice(None), slice(None)]
            for n, p in zip(x.shape[2:], padded.shape[2:]):
                crop.append(slice((p - n) // 2, (p - n) // 2 + n))
            return out[tuple(crop)]
        blended = sliding_window_inference(
            x,
            roi_size=spec.roi_size,
            sw_batch_size=spec.sw_batch_size,
            predictor=predictor,
            overlap=spec.overlap,
            mode=spec.blend_mode,
            padding_mode=spec.padding_mode,
        )
        assert isinstance(blended, torch.Tensor)  # one tensor in, one predictor output: one tensor out
        return blended


# --- post-processing --------------------------------------------------------------------------


def brats_labels_from_logits(logits: "torch.Tensor") -> "torch.Tensor":
    """(3, X, Y, Z) TC/WT/ET logits -> uint8 labels: ET 4, else TC 1 (NCR), else WT 2 (oedema).

    ``logits >= 0`` is ``sigmoid >= 0.5``, MONAI AsDiscrete's threshold test, without the sigmoid.
    """
    import torch

    from inference.models.registry import BRATS_ENHANCING, BRATS_NECROTIC, BRATS_OEDEMA

    tc, wt, et = (logits[i] >= 0 for i in range(3))
    labels = torch.zeros(logits.shape[1:], dtype=torch.uint8, device=logits.device)
    return labels.masked_fill_(wt, BRATS_OEDEMA).masked_fill_(tc, BRATS_NECROTIC).masked_fill_(et, BRATS_ENHANCING)


def _labels(logits: "torch.Tensor", spec: SegmentationSpec) -> "torch.Tensor":
    import torch

    if spec.output_kind == "sigmoid-multilabel":
        return brats_labels_from_logits(logits[0])
    return logits[0].argmax(dim=0).to(torch.uint8)  # argmax of softmax == argmax of logits


def _to_input_grid(labels: "torch.Tensor", shape) -> "torch.Tensor":
    import torch.nn.functional as F

    return F.interpolate(labels[None, None], size=tuple(shape), mode="nearest-exact")[0, 0]


def _fmt(values) -> str:
    return "x".join(f"{v:g}" for v in values)


def _params(spec: SegmentationSpec, reference: Volume, grid, windows: int) -> tuple[tuple[str, str], ...]:
    spacing = reference.spacing_mm
    if grid is None:
        resampling = "none (input already on the model grid)"
    else:
        resampling = (
            f"{_fmt(round(s, 3) for s in spacing)} mm -> {spec.target_spacing_mm:g} mm trilinear; labels back nearest"
        )
    post = (
        f"sigmoid >= {spec.threshold:g} per channel; ET->4, TC->1, WT->2"
        if spec.output_kind == "sigmoid-multilabel"
        else "softmax argmax"
    )
    return (
        ("bundle", f"{spec.bundle_name} {spec.bundle_version}"),
        ("roi", _fmt(spec.roi_size)),
        ("overlap", f"{spec.overlap:g}"),
        ("blend_mode", spec.blend_mode),
        ("padding_mode", spec.padding_mode),
        ("sw_batch_size", str(spec.sw_batch_size)),
        ("windows", str(windows)),
        ("threshold", post),
        ("model_spacing_mm", _fmt([spec.target_spacing_mm] * 3)),
        ("resampling", resampling),
        ("channel_order", ",".join(spec.channel_names)),
        ("input_modality", reference.modality),
        ("intensity", spec.intensity),
        ("precision", "float32"),
    )


def _segment(inputs, model: "LoadedModel", progress: Progress | None) -> Segmentation:
    started = time.perf_counter()
    spec = model.segmentation_spec
    if progress is not None:
        progress(0.0, "preparing input")
    x, reference, grid = _prepare(inputs, spec, model.device)
    windows = count_windows(x.shape[2:], spec)
    logits = _run_windows(x, model, windows, progress)
    del x
    if progress is not None:
        progress(_WINDOWS_END, "building label map")
    labels = _labels(logits, spec)
    del logits
    if grid is not None:
        labels = _to_input_grid(labels, reference.shape)
    data = read_only(np.ascontiguousarray(labels.cpu().numpy()))
    label_map = LabelMap(
        data=data,
        affine=reference.affine,
        labels=spec.labels,
        structures=spec.structures,
        source=f"model:{spec.model_id}",
        sha256=hashlib.sha256(data.tobytes()).hexdigest(),
    )
    segmented = time.perf_counter()
    timing_ms = (segmented - started) * 1000.0
    log.info("Segmented with %s in %.0f ms (%d windows)", spec.model_id, timing_ms, windows)
    measurements = measure_structures(label_map.data, label_map.affine, label_map.structures)
    if progress is not None:
        progress(1.0, "done")
    return Segmentation(
        label_map=label_map,
        model=model.identity,
        params=_params(spec, reference, grid, windows),
        spacing_mm=reference.spacing_mm,
        timing_ms=timing_ms,
        measurements=measurements,
        measure_ms=(time.perf_counter() - segmented) * 1000.0,
    )


def segment_brats(case: MultiChannelVolume, model: "LoadedModel", *, progress: Progress | None = None) -> Segmentation:
    """Brain tumour sub-regions (labels 1 NCR, 2 oedema, 4 ET) on the case's own grid.

    Raises:
        ChannelAssignmentError: not the four sequences the model needs.
        WrongModality: a channel is CT, or ``model`` is not an MRI model.
    """
    if model.spec.modality != "MR":
        raise WrongModality(f"{model.spec.display_name} is not a brain MRI model; choose the BraTS model.")
    return _segment(case, model, progress)


def segment_ct(volume: Volume, model: "LoadedModel", *, progress: Progress | None = None) -> Segmentation:
    """Whole-body structures on the CT's own grid.

    Raises:
        WrongModality: the volume is MRI, or ``model`` is not a CT model.
    """
    if model.spec.modality != "CT":
        raise WrongModality(f"{model.spec.display_name} is not a CT model; choose the whole-body CT model.")
    return _segment(volume, model, progress)


def segment(
    inputs: MultiChannelVolume | Volume, model: "LoadedModel", progress: Progress | None = None
) -> Segmentation:
    """Run ``model`` on ``inputs``, choosing the pipeline from ``model.spec``."""
    if model.spec.modality == "MR":
        return segment_brats(inputs, model, progress=progress)  # type: ignore[arg-type]
    return segment_ct(inputs, model, progress=progress)  # type: ignore[arg-type]
