"""Image regions a radiologist names, on the model's square input grid.

Without an anatomy model the regions come from a fixed normalised grid over the centred crop (the
patient's right is on the image's left, as radiographs are displayed): three zones per lung, a
central column for the heart and mediastinum, and the rest of the image. It is a grid, not
anatomy, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_SOURCE = "fixed grid on the centred crop (not anatomy)"

REGION_NAMES: tuple[str, ...] = (
    "Right upper zone",
    "Right middle zone",
    "Right lower zone",
    "Left upper zone",
    "Left middle zone",
    "Left lower zone",
    "Heart and mediastinum",
    "Rest of image",
)

# Normalised boxes (top, bottom, left, right) on the square crop; later boxes do not overwrite earlier ones.
_ZONES = ((0.08, 0.36), (0.36, 0.60), (0.60, 0.86))
_RIGHT_LUNG = (0.08, 0.40)  # image left
_LEFT_LUNG = (0.60, 0.92)  # image right
_MEDIASTINUM = (0.10, 0.86, 0.40, 0.60)


@dataclass(frozen=True)
class RegionSet:
    names: tuple[str, ...]
    label_map: np.ndarray  # int8 (S, S): index into names for every pixel
    source: str

    @property
    def size(self) -> int:
        return int(self.label_map.shape[0])

    def mask(self, index: int) -> np.ndarray:
        mask: np.ndarray = self.label_map == index
        return mask


def grid_regions(size: int) -> RegionSet:
    """The eight regions on a ``size`` x ``size`` model input."""
    label_map = np.full((size, size), REGION_NAMES.index("Rest of image"), dtype=np.int8)

    def box(top: float, bottom: float, left: float, right: float, index: int) -> None:
        rows = slice(int(round(top * size)), int(round(bottom * size)))
        cols = slice(int(round(left * size)), int(round(right * size)))
        label_map[rows, cols] = index

    for zone, (top, bottom) in enumerate(_ZONES):
        box(top, bottom, *_RIGHT_LUNG, zone)
        box(top, bottom, *_LEFT_LUNG, 3 + zone)
    box(*_MEDIASTINUM, REGION_NAMES.index("Heart and mediastinum"))
    label_map.setflags(write=False)
    return RegionSet(names=REGION_NAMES, label_map=label_map, source=GRID_SOURCE)
