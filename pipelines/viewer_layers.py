"""What the browser viewer shows, as data: images, heatmaps, masks and outlines as gzipped NIfTI
layers with their colours and captions, and the window presets of a scene.

Each layer is encoded once (the ui layer caches them) and identified by the hash of its bytes,
so the browser receives a layer's pixels once per tab and is told only its id afterwards. Nothing
here imports Streamlit; the component that draws the layers is ``ui.widgets.image_viewer``.

Geometry. A radiograph is one slice: voxel (i, j, 0) is the pixel in column i, row j, and the
affine puts row 0 at the top of the screen (y decreases down the rows). A heatmap is computed on
the model's square centre crop at the model's input size; its affine scales it onto that crop,
so the viewer draws it in place over the whole image. Volumes keep their canonical RAS+ voxel
order and affine, so millimetres, orientation letters and the ruler are the scan's own.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from core.results import LabelInfo, LabelMap
from inference.images.preprocess import CropBox, centre_crop_box
from inference.volume.types import Volume
from inference.volume.windowing import CT_PRESETS, default_ct_preset, percentile_window

# Layer roles, drawn in this order (the image first).
IMAGE, OUTLINE, HEATMAP, LABELS = "image", "outline", "heatmap", "labels"
HEATMAP_COLORMAPS = ("jet", "hot", "viridis", "inferno")  # NiiVue has each of xai.overlay's
HEATMAP_FLOOR = 0.1  # heatmap values below a tenth of the scale are left transparent
OUTLINE_COLOUR = (255, 214, 0)
UNTRAINED_HEATMAP = "UNTRAINED WEIGHTS: this heatmap is meaningless"
UNTRAINED_MASK = "UNTRAINED MODEL: these masks are meaningless"


@dataclass(frozen=True)
class ViewerLayer:
    role: str
    name: str  # a file name ending in .nii.gz: NiiVue reads the format from it
    nifti_gz: bytes = field(repr=False)
    caption: str = ""
    colormap: str = "gray"
    cal_min: float | None = None
    cal_max: float | None = None
    labels: tuple[LabelInfo, ...] = ()
    untrained: str = ""  # the banner the viewer shows while this layer is visible; "" when trained

    @cached_property
    def id(self) -> str:  # hashed once: a CT layer is tens of MB
        return hashlib.sha256(self.nifti_gz).hexdigest()[:24]

    def spec(self) -> dict:
        entry: dict = {
            "id": self.id,
            "role": self.role,
            "name": self.name,
            "caption": self.caption,
            "colormap": self.colormap,
            "untrained": self.untrained,
        }
        if self.cal_min is not None:
            entry["cal_min"], entry["cal_max"] = self.cal_min, self.cal_max
        if self.labels:
            entry["labels"] = [{"value": i.value, "name": i.name, "rgb": list(i.color)} for i in self.labels]
        return entry


@dataclass(frozen=True)
class WindowPreset:
    name: str
    level: float
    width: float


@dataclass(frozen=True)
class ViewerScene:
    """One case as the viewer opens it; a new ``scene_id`` resets window, zoom and pan."""

    kind: str  # "xray" or "volume"
    scene_id: str
    layers: tuple[ViewerLayer, ...]
    window: WindowPreset  # the window it opens in
    presets: tuple[WindowPreset, ...]
    units: str  # "HU" for CT, "" otherwise
    ruler: str  # what the ruler's numbers mean
    radiological: bool = True
    heatmap_opacity: float = 0.45
    heatmap_colormap: str = "jet"
    mask_opacity: float = 0.45
    image_shape: tuple[int, ...] = ()  # (rows, columns) of a radiograph, (X, Y, Z) of a volume
    resolution: str = ""  # how a radiograph is shown: "full resolution" or the reduction

    def spec(self, height: int) -> dict:
        return {
            "kind": self.kind,
            "scene": self.scene_id,
            "height": height,
            "layers": [layer.spec() for layer in self.layers],
            "window": {"level": self.window.level, "width": self.window.width},
            "presets": [{"name": p.name, "level": p.level, "width": p.width} for p in self.presets],
            "units": self.units,
            "ruler": self.ruler,
            "radiological": self.radiological,
            "heatmap_opacity": self.heatmap_opacity,
            "heatmap_colormap": self.heatmap_colormap,
            "colormaps": list(HEATMAP_COLORMAPS),
            "mask_opacity": self.mask_opacity,
            "image_shape": list(self.image_shape),
            "resolution": self.resolution,
        }

    def only(self, *roles: str) -> ViewerScene:
        """This scene with only the layers of ``roles`` (the image alone, beside its heatmap)."""
        return replace(self, layers=tuple(layer for layer in self.layers if layer.role in roles))

    def with_layers(self, *extra: ViewerLayer | None) -> ViewerScene:
        """This scene with ``extra`` layers on top (``None`` for a layer the page does not have)."""
        return replace(self, layers=self.layers + tuple(layer for layer in extra if layer is not None))


def nifti_gz(data: np.ndarray, affine: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> bytes:
    """A NIfTI-1 file of ``data`` on ``affine`` (sform and qform), gzipped."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.header.set_slope_inter(slope, inter)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    # Level 1: several times faster than the default for a few percent more bytes (a CT is
    # encoded while the reader waits).
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


# --- Radiographs --------------------------------------------------------------------------------

# The largest side the browser viewer is sent. NiiVue keeps an image in a 3D texture, and WebGL2
# lets a browser cap those at 2048 per side (SwiftShader, many integrated GPUs do). Past its cap
# NiiVue 0.69 falls back to a 2D texture path that draws the pixels in file order, ignoring the
# affine (upside down here) and without any overlay (no heatmap, no crop outline). A radiograph
# larger than this is sent reduced, its world coordinates still the original pixels, and the
# viewer says so.
MAX_VIEWER_SIDE = 2048


def _as_slice(pixels_hw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(pixels_hw).T[:, :, None])


def _grid_affine(scale_x: float, scale_y: float) -> np.ndarray:
    """The affine of a grid whose pixel (i, j) covers original columns i*sx..(i+1)*sx and rows
    j*sy..(j+1)*sy: world x is the original column, world -y the original row (pixel centres)."""
    affine = np.diag([scale_x, -scale_y, 1.0, 1.0])
    affine[0, 3] = (scale_x - 1) / 2
    affine[1, 3] = -(scale_y - 1) / 2
    return affine


def viewer_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of a radiograph of ``shape`` as the browser viewer is sent it."""
    height, width = int(shape[0]), int(shape[1])
    factor = min(1.0, MAX_VIEWER_SIDE / max(height, width))
    if factor == 1.0:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


def xray_scene(pixels: np.ndarray, input_sha256: str) -> ViewerScene:
    """The whole radiograph (0..255 grey levels), at full resolution up to ``MAX_VIEWER_SIDE`` a
    side and reduced past it (said in the status line), and the model's crop outline."""
    import cv2

    grey = np.clip(np.rint(np.asarray(pixels, dtype=np.float32)), 0, 255).astype(np.uint8)
    shape = (int(grey.shape[0]), int(grey.shape[1]))
    rows, cols = viewer_shape(shape)
    sent = grey if (rows, cols) == shape else cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA)
    affine = _grid_affine(shape[1] / cols, shape[0] / rows)
    image = ViewerLayer(IMAGE, "radiograph.nii.gz", nifti_gz(_as_slice(sent), affine), "Radiograph")
    low, high = np.percentile(grey[:: max(1, grey.shape[0] // 512), :: max(1, grey.shape[1] // 512)], [0.5, 99.5])
    auto = WindowPreset("Percentiles 0.5-99.5 %", float(low + high) / 2, float(max(high - low, 1.0)))
    full = WindowPreset("Full range", 127.5, 255.0)
    if (rows, cols) == shape:
        resolution = "full resolution"
    else:
        resolution = f"shown reduced to {cols} × {rows} px ({100 * cols / shape[1]:.0f} %), the browser's limit"
    return ViewerScene(
        kind="xray",
        scene_id=f"xray:{input_sha256}",
        layers=(image, crop_outline(shape, centre_crop_box(shape))),
        window=full,
        presets=(full, auto, WindowPreset("High contrast", 127.5, 128.0)),
        units="",
        ruler="ruler lengths in pixels of the original image (it gives no pixel spacing)",
        radiological=False,
        image_shape=shape,
        resolution=resolution,
    )


def crop_outline(shape: tuple[int, int], box: CropBox) -> ViewerLayer:
    """The square the model sees, as a label layer drawn over the radiograph, on the grid the
    viewer is sent the radiograph on (so NiiVue can make it its drawing layer)."""
    height, width = shape
    rows, cols = viewer_shape(shape)
    sx, sy = width / cols, height / rows
    thick = max(2, round(max(rows, cols) / 400))
    mask = np.zeros((rows, cols), dtype=np.uint8)
    top, left = round(box.top / sy), round(box.left / sx)
    bottom, right = round((box.top + box.size) / sy), round((box.left + box.size) / sx)
    mask[top:bottom, left:right] = 1
    mask[top + thick : bottom - thick, left + thick : right - thick] = 0
    return ViewerLayer(
        OUTLINE,
        "crop-outline.nii.gz",
        nifti_gz(_as_slice(mask), _grid_affine(sx, sy)),
        "Model crop outline",
        labels=(LabelInfo(1, "the square the model sees", OUTLINE_COLOUR),),
    )


def heatmap_layer(cam: np.ndarray, image_shape: tuple[int, int], caption: str, trained: bool) -> ViewerLayer:
    """A (S, S) heatmap in 0..1 over the model's centre crop of an image of ``image_shape``."""
    box = centre_crop_box(image_shape)
    size = cam.shape[0]
    scale = box.size / size
    # Cam pixel i covers image columns left + i*scale .. left + (i+1)*scale: the crop's grid, moved.
    affine = _grid_affine(scale, scale)
    affine[0, 3] += box.left
    affine[1, 3] -= box.top
    values = np.clip(np.rint(np.nan_to_num(np.asarray(cam, dtype=np.float32)) * 255), 0, 255).astype(np.uint8)
    return ViewerLayer(
        HEATMAP,
        "heatmap.nii.gz",
        nifti_gz(_as_slice(values), affine, slope=1 / 255),  # read as 0..1, as its colour scale says
        caption,
        colormap="jet",
        cal_min=HEATMAP_FLOOR,  # lower values are not drawn: the image shows through
        cal_max=1.0,
        untrained="" if trained else UNTRAINED_HEATMAP,
    )


# --- Volumes ------------------------------------------------------------------------------------


def volume_scene(volume: Volume, scene_id: str | None = None) -> ViewerScene:
    """A CT in Hounsfield units (int16), or an MR quantised to int16 with the scale kept in the
    header (its values stay the scanner's), on the volume's own affine."""
    data = np.asarray(volume.data)
    if volume.modality == "CT":
        stored, slope, inter = np.clip(np.rint(data), -32768, 32767).astype(np.int16), 1.0, 0.0
        name = default_ct_preset(volume)
        presets = tuple(WindowPreset(n, lv, w) for n, (lv, w) in CT_PRESETS.items())
        window = next(p for p in presets if p.name == name)
        units = "HU"
    else:
        low, high = float(np.nanmin(data)), float(np.nanmax(data))
        slope = (high - low) / 65535.0 if high > low else 1.0
        inter = low + 32768.0 * slope
        stored = np.clip(np.rint((data - inter) / slope), -32768, 32767).astype(np.int16)
        level, width = percentile_window(data)
        window = WindowPreset("Auto (0.5-99.5 percentile)", level, width)
        presets = (window, WindowPreset("Full range", (low + high) / 2, max(high - low, 1e-3)))
        units = ""
    image = ViewerLayer(IMAGE, "volume.nii.gz", nifti_gz(stored, volume.affine, slope, inter), volume.description)
    return ViewerScene(
        kind="volume",
        scene_id=scene_id or f"volume:{volume.input_sha256}",
        layers=(image,),
        window=window,
        presets=presets,
        units=units,
        ruler="ruler and positions in mm",
        image_shape=volume.shape,
    )


def label_layer(label_map: LabelMap, present: set[int], caption: str, trained: bool) -> ViewerLayer:
    """The label map with each present label's colour; hidden or absent labels are never drawn."""
    top = max((info.value for info in label_map.labels), default=0)
    dtype = np.uint8 if top < 256 else np.uint16
    return ViewerLayer(
        LABELS,
        "labels.nii.gz",
        nifti_gz(np.asarray(label_map.data).astype(dtype, copy=False), label_map.affine),
        caption,
        labels=tuple(info for info in label_map.labels if info.value > 0 and info.value in present),
        untrained="" if trained else UNTRAINED_MASK,
    )
