"""Slices of a canonical (RAS+) volume as a radiologist expects to see them, with mask overlays.

Everything here works on one slice, so a scroll costs a few milliseconds whatever the volume's
size. Conventions (radiological): axial and coronal views show the patient's right on the
screen's left; axial has anterior at the top; coronal and sagittal have superior at the top;
sagittal has anterior on the left.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from inference.volume.types import LabelInfo

VIEWS = ("Axial", "Coronal", "Sagittal")
_AXIS = {"Axial": 2, "Coronal": 1, "Sagittal": 0}
# In-plane (row axis, column axis) of the slice before it is flipped for display.
_PLANE = {"Axial": (1, 0), "Coronal": (2, 0), "Sagittal": (2, 1)}
_MARKS = {
    "Axial": ("R", "L", "A", "P"),
    "Coronal": ("R", "L", "S", "I"),
    "Sagittal": ("A", "P", "S", "I"),
}
_AXIS_NAME = {0: "x", 1: "y", 2: "z"}
_POSITIVE = {0: "+ is the patient's right", 1: "+ is anterior", 2: "+ is superior"}


@dataclass(frozen=True)
class Marks:
    left: str
    right: str
    top: str
    bottom: str


def slice_axis(view: str) -> int:
    try:
        return _AXIS[view]
    except KeyError:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}.") from None


def slice_count(shape: tuple[int, ...], view: str) -> int:
    return int(shape[slice_axis(view)])


def orientation_marks(view: str) -> Marks:
    slice_axis(view)
    return Marks(*_MARKS[view])


def oriented_slice(data: np.ndarray, view: str, index: int) -> np.ndarray:
    """The 2D slice ``index`` along the view's axis, rows and columns in display order (a view, no copy)."""
    axis = slice_axis(view)
    if not 0 <= index < data.shape[axis]:
        raise IndexError(f"{view} slice {index} is outside 0..{data.shape[axis] - 1}.")
    where: list[slice | int] = [slice(None)] * 3
    where[axis] = index
    plane = data[tuple(where)]  # basic indexing: a view (np.take would gather through the volume)
    # Canonical axes increase towards R, A, S; after the transpose rows follow the plane's first
    # axis. Flipping both puts superior/anterior at the top and the patient's right on the left.
    return plane.T[::-1, ::-1]


def pixel_size_mm(spacing_mm: tuple[float, float, float], view: str) -> tuple[float, float]:
    """(row height, column width) in mm of the displayed slice's pixels."""
    rows, cols = _PLANE[view]
    return float(spacing_mm[rows]), float(spacing_mm[cols])


def slice_position_mm(affine: np.ndarray, shape: tuple[int, int, int], view: str, index: int) -> float:
    """World coordinate (RAS+ mm) of the slice centre along the view's axis."""
    axis = slice_axis(view)
    centre = np.array([(n - 1) / 2.0 for n in shape] + [1.0])
    centre[axis] = index
    return float((np.asarray(affine) @ centre)[axis])


def position_text(affine: np.ndarray, shape: tuple[int, int, int], view: str, index: int) -> str:
    axis = slice_axis(view)
    # RAS+ world coordinates, as NIfTI tools show them (a DICOM viewer's LPS x and y have the opposite sign).
    return (
        f"{view} {index + 1} of {shape[axis]} · {_AXIS_NAME[axis]} = "
        f"{slice_position_mm(affine, shape, view, index):.1f} mm (RAS, {_POSITIVE[axis]})"
    )


def display_size(slice_shape: tuple[int, int], pixel_mm: tuple[float, float], width_px: int) -> tuple[int, int]:
    """(height, width) in screen pixels that keeps the slice's true aspect ratio."""
    rows, cols = slice_shape
    height_mm, width_mm = rows * pixel_mm[0], cols * pixel_mm[1]
    return max(1, round(width_px * height_mm / width_mm)), width_px


def colour_table(labels: tuple[LabelInfo, ...], visible: set[int] | frozenset[int]) -> np.ndarray:
    """uint8 (max value + 1, 3) colours; hidden labels and background are black (= no overlay)."""
    top = max((info.value for info in labels), default=0)
    table = np.zeros((top + 1, 3), dtype=np.uint8)
    for info in labels:
        if info.value in visible and info.value > 0:
            table[info.value] = info.color
    return table


def render_pair(
    image_slice: np.ndarray,
    mask_slice: np.ndarray | None,
    table: np.ndarray | None,
    opacity: float,
    size: tuple[int, int],
    marks: Marks,
) -> tuple[np.ndarray, np.ndarray]:
    """The windowed slice (uint8 grey, 2D) and the same slice with masks blended in (RGB), at ``size``,
    both with orientation marks. The mask is resized with nearest neighbour so label edges stay
    where the voxels are."""
    height, width = size
    grey = cv2.resize(np.ascontiguousarray(image_slice), (width, height), interpolation=cv2.INTER_LINEAR)
    overlay = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    if mask_slice is not None and table is not None:
        values = np.asarray(mask_slice)
        values = np.where((values >= 0) & (values < len(table)), values, 0)
        colours = cv2.resize(table[values], (width, height), interpolation=cv2.INTER_NEAREST)
        shown = colours.any(axis=2)
        if shown.any():
            blended = cv2.addWeighted(overlay, 1.0 - opacity, colours, opacity, 0.0)
            overlay[shown] = blended[shown]
    for y0, x0, ink, outline in _mark_stamps(height, width, marks):
        h, w = ink.shape
        for picture, colour in ((grey, 255), (overlay, _MARK_COLOUR)):
            patch = picture[y0 : y0 + h, x0 : x0 + w]
            patch[outline] = 0
            patch[ink] = colour
    return grey, overlay


_MARK_COLOUR = (255, 235, 59)


@lru_cache(maxsize=64)
def _mark_stamps(height: int, width: int, marks: Marks) -> tuple[tuple[int, int, np.ndarray, np.ndarray], ...]:
    """Where each orientation letter goes and its pixels (ink, and a dark outline for contrast), drawn
    once per image size: drawing text on every scroll cost more than the rest of the slice."""
    scale = max(0.45, width / 700.0)
    thickness = 1 if width < 500 else 2
    (tw, th), _ = cv2.getTextSize("M", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = thickness + 3
    places = (
        (marks.left, 6, height // 2 + th // 2),
        (marks.right, width - tw - 6, height // 2 + th // 2),
        (marks.top, width // 2 - tw // 2, th + 6),
        (marks.bottom, width // 2 - tw // 2, height - 6),
    )
    stamps = []
    for text, x, y in places:
        box_h, box_w = th + 2 * pad + 4, tw + 2 * pad
        canvas_ink = np.zeros((box_h, box_w), np.uint8)
        canvas_outline = np.zeros((box_h, box_w), np.uint8)
        origin = (pad, th + pad)
        cv2.putText(canvas_outline, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness + 2, cv2.LINE_AA)
        cv2.putText(canvas_ink, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
        y0 = min(max(0, y - th - pad), max(0, height - box_h))
        x0 = min(max(0, x - pad), max(0, width - box_w))
        h, w = min(box_h, height - y0), min(box_w, width - x0)
        stamps.append((y0, x0, canvas_ink[:h, :w] > 127, (canvas_outline[:h, :w] > 127)))
    return tuple(stamps)


def encode_png(picture: np.ndarray) -> bytes:
    """Fast lossless PNG (level 1) of a grey (2D) or RGB picture."""
    from core.encode import encode_png as png

    return png(picture, compression=1)


def encode_jpeg(picture: np.ndarray, quality: int = 92) -> bytes:
    """The mask overlay as JPEG without chroma subsampling (label edges stay sharp): ten times faster
    to encode than a colour PNG. The plain image beside it stays lossless."""
    from core.encode import encode_jpeg as jpeg

    return jpeg(picture, quality=quality, full_chroma=True)
