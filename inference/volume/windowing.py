"""Grey-level windows for showing CT and MR slices (pure numpy; runs on every slice scroll)."""

from __future__ import annotations

import numpy as np

from inference.volume.types import Volume

# name -> (level, width) in Hounsfield units
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Brain": (40.0, 80.0),
    "Subdural": (75.0, 215.0),
    "Stroke": (40.0, 40.0),
    "Lung": (-600.0, 1500.0),
    "Bone": (300.0, 1500.0),
    "Soft tissue": (40.0, 400.0),
}
_HEAD_EXTENT_MM = 250.0  # a head CT covers less than this along the body axis
_HEAD_FIELD_MM = 280.0  # and less than this across: a head scan's field of view, a body's is 350-500 mm
_PERCENTILE_SAMPLE = 2_000_000


def window_to_uint8(slice_: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``level - width/2 .. level + width/2`` linearly to 0..255 (clipped), as uint8."""
    if not np.isfinite(width) or width <= 0 or not np.isfinite(level):
        raise ValueError(f"The window must have a finite level and a width > 0, got level {level}, width {width}.")
    low = np.float32(level - width / 2.0)
    out = np.subtract(slice_, low, dtype=np.float32)
    out *= np.float32(255.0 / width)
    np.clip(out, 0.0, 255.0, out=out)
    out += np.float32(0.5)  # round to nearest rather than truncate
    return out.astype(np.uint8)


def percentile_window(volume_data: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """(level, width) spanning the ``low``..``high`` percentiles of the non-zero voxels.

    Zero is left out because MR volumes are mostly zero background, which would drag the window
    down. Large volumes are sampled with a fixed stride, so the result is deterministic.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"Percentiles must satisfy 0 <= low < high <= 100, got {low} and {high}.")
    flat = np.asarray(volume_data).reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLE)
    sample = flat[::step]
    sample = sample[(sample != 0) & np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    width = hi - lo if hi > lo else 1.0
    return (lo + hi) / 2.0, width


def default_ct_preset(volume: Volume) -> str:
    """The CT preset to show a volume first: brain for a head-sized scan, soft tissue for a body.

    Head-sized means small both along the body axis and across it. The length alone is not enough:
    a slab of a whole-body CT (or a thick-slice series cut short) is short but 500 mm wide.
    """
    extent = [n * s for n, s in zip(volume.shape, volume.spacing_mm)]
    head = extent[2] < _HEAD_EXTENT_MM and max(extent[0], extent[1]) < _HEAD_FIELD_MM
    return "Brain" if head else "Soft tissue"
