"""What the browser viewer draws, read back from its canvas: every radiograph, of any size and
aspect, the right way up and round, and its heatmap over the pixels it was computed on.

A radiograph over 2048 pixels a side was drawn upside down and without its heatmap: NiiVue keeps
an image in a 3D texture, and past the browser's 3D-texture limit (2048 here, in SwiftShader, and
on many GPUs) it falls back to a path that ignores the image's orientation and its overlays. The
viewer is now sent such an image reduced to the limit, and says so."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import numpy as np
import pytest

from pipelines.viewer_layers import HEATMAP_FLOOR
from tests.conftest import SAMPLES
from tests.e2e.conftest import browser_page, open_page, upload_radiograph, uploader
from tests.e2e.test_browser import _shot, _sign
from tests.e2e.test_viewer import _canvas, _state, _viewer
from ui.session import MASK_TASK, volume_upload_key

pytestmark = pytest.mark.e2e
CXR = SAMPLES / "cxr"


def _grey(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def _resized(source: Path, width: int, height: int, folder: Path) -> tuple[Path, np.ndarray]:
    from PIL import Image

    image = Image.open(source).convert("L").resize((width, height), Image.Resampling.BILINEAR)
    path = folder / f"cxr_{width}x{height}.jpg"
    image.save(path, quality=95)
    return path, _grey(path)


def _monochrome1(folder: Path) -> tuple[Path, np.ndarray]:
    """The SIIM radiograph stored inverted (MONOCHROME1: white is 0), as CR plates often are: it
    must be drawn as the original, bones white."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(CXR / "siim_sample.dcm")
    original = ds.pixel_array.astype(np.float32)
    top = (1 << int(ds.BitsStored)) - 1
    ds.PixelData = (top - ds.pixel_array.astype(np.int32)).astype(ds.pixel_array.dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the sample is JPEG; stored plain
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = folder / "siim_monochrome1.dcm"
    ds.save_as(path)
    return path, original


def _placement(canvas: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float]:
    """(left, top, scale): where NiiVue fits an image of ``shape`` (rows, columns), centred."""
    rows, cols = canvas.shape[:2]
    scale = min(cols / shape[1], rows / shape[0])
    return (cols - shape[1] * scale) / 2, (rows - shape[0] * scale) / 2, scale


def _inner(canvas: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The drawn image's region of the canvas (grey), less a margin of 3 px for the edges' rounding,
    and its size (columns, rows)."""
    left, top, scale = _placement(canvas, shape)
    x0, y0 = int(np.ceil(left)) + 3, int(np.ceil(top)) + 3
    x1, y1 = int(left + shape[1] * scale) - 3, int(top + shape[0] * scale) - 3
    return canvas[y0:y1, x0:x1].astype(np.float32).mean(axis=2), (x1 - x0, y1 - y0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _orientations(image: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "as it is": image,
        "flipped up-down": image[::-1],
        "flipped left-right": image[:, ::-1],
        "turned 180°": image[::-1, ::-1],
        "turned 90°": np.rot90(image),
        "turned 270°": np.rot90(image, 3),
    }


def _best_orientation(drawn: np.ndarray, size: tuple[int, int], image: np.ndarray) -> dict[str, float]:
    import cv2

    # The image at the drawn size, cut by the same 3 px margin (in the drawn image's pixels).
    scores = {}
    for name, candidate in _orientations(image).items():
        fitted = cv2.resize(np.ascontiguousarray(candidate), (size[0] + 6, size[1] + 6), interpolation=cv2.INTER_AREA)
        scores[name] = _correlation(drawn, fitted[3:-3, 3:-3])
    return scores


def _sent_heatmap(frame) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap the viewer holds, decoded from the very bytes the page sent: its values
    (rows, columns) and its affine (voxel -> original image column, -row)."""
    import nibabel as nib

    layer = next(entry for entry in _state(frame)["layers"] if entry["role"] == "heatmap")
    encoded = frame.evaluate(
        """id => { const b = window.parent.__reviewViewerPixels.get(id); let s = "";
           for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
           return btoa(s); }""",
        layer["id"],
    )
    image = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(encoded)))
    return np.asarray(image.dataobj, dtype=np.float32)[:, :, 0].T, image.affine


def _expected_heat(canvas: np.ndarray, shape: tuple[int, int], values: np.ndarray, affine: np.ndarray) -> tuple:
    """The heatmap where it should be drawn: its values on the canvas's grid, and the canvas box
    (x0, y0, x1, y1) of the square it covers."""
    import cv2

    left, top, scale = _placement(canvas, shape)
    n = values.shape[0]
    cell = affine[0, 0]  # original pixels per heatmap pixel
    x_first, y_first = affine[0, 3], -affine[1, 3]  # the centre of heatmap pixel (0, 0)
    x0 = left + (x_first - cell / 2 + 0.5) * scale
    y0 = top + (y_first - cell / 2 + 0.5) * scale
    side = n * cell * scale
    box = (int(round(x0)) + 3, int(round(y0)) + 3, int(round(x0 + side)) - 3, int(round(y0 + side)) - 3)
    full = cv2.resize(values, (int(round(side)), int(round(side))), interpolation=cv2.INTER_LINEAR)
    ox, oy = int(round(x0)), int(round(y0))
    return full[box[1] - oy : box[3] - oy, box[0] - ox : box[2] - ox], box


def _heat_luminance(frame) -> np.ndarray:
    """The canvas with the heatmap opaque in 'inferno' (its brightness rises with the value and
    never saturates), as luminance."""
    frame.get_by_role("checkbox", name="Show the heatmap").check()
    frame.get_by_role("combobox", name="Heatmap colormap").select_option("inferno")
    slider = frame.get_by_role("slider", name="Heatmap opacity")
    slider.focus()
    slider.press("End")
    frame.wait_for_function("() => window.reviewViewer.state().layers.find(l => l.role === 'heatmap').opacity === 1")
    rgb = _canvas(frame).astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _width(page, viewer: str) -> float:
    return page.evaluate(f"() => document.querySelector(\"iframe[src*='{viewer}']\").getBoundingClientRect().width")


_DRAWN = """size => { const f = document.querySelector("iframe[src*='review_viewer']");
  try { const s = f.contentWindow.reviewViewer.state(); return s.ready && s.status.includes(size); }
  catch (e) { return false; } }"""

CASES = (
    ("nih 512 x 512", lambda folder: (CXR / "nih_00000001_000.png", _grey(CXR / "nih_00000001_000.png"))),
    ("padchest 1036 x 885", lambda folder: (CXR / "padchest_16747_3_1.jpg", _grey(CXR / "padchest_16747_3_1.jpg"))),
    ("2373 x 1900", lambda folder: _resized(CXR / "padchest_16747_3_1.jpg", 2373, 1900, folder)),
    ("3000 x 2400", lambda folder: _resized(CXR / "padchest_16747_3_1.jpg", 3000, 2400, folder)),
    ("portrait 1900 x 2373", lambda folder: _resized(CXR / "padchest_16747_3_1.jpg", 1900, 2373, folder)),
    ("MONOCHROME1 DICOM 1024", _monochrome1),
)


def test_every_radiograph_is_drawn_the_right_way_up_with_its_heatmap_in_place(shared_server, tmp_path: Path) -> None:
    import cv2
    from playwright.sync_api import expect

    url, _ = shared_server
    failures = []
    with browser_page(1600, 1000) as page:
        page.goto(url)
        _sign(page, "Dr Orientation")
        for name, make in CASES:
            path, image = make(tmp_path)
            upload_radiograph(page, str(path))
            rows, cols = image.shape
            # This image's viewer drawn (the previous case's stays on screen until the page reruns).
            page.wait_for_function(_DRAWN, arg=f"{cols} × {rows} px")
            expect(page.get_by_text("18 findings ·")).to_be_visible()
            frame = _viewer(page)
            if name == CASES[0][0]:  # image first: the viewer takes at least 60% of a 1600 px window
                assert _width(page, "review_viewer") >= 0.6 * 1600
            if name == "2373 x 1900":
                _shot(page, "36-viewer-large-radiograph")
            # The picture alone: the crop outline and the heatmap hidden, as a reader can.
            frame.get_by_role("checkbox", name="Model crop outline").uncheck()
            frame.get_by_role("checkbox", name="Show the heatmap").uncheck()
            canvas = _canvas(frame)
            drawn, size = _inner(canvas, (rows, cols))
            scores = _best_orientation(drawn, size, image)
            best = max(scores, key=lambda k: scores[k])
            if best != "as it is" or scores["as it is"] < 0.9:
                failures.append(f"{name}: drawn best matches the image {best} ({scores})")
                continue
            # The heatmap is drawn over the pixels it was computed on: its drawn brightness
            # follows its values there, not their mirror images, and its peak is where its
            # values peak.
            values, affine = _sent_heatmap(frame)
            want, (x0, y0, x1, y1) = _expected_heat(canvas, (rows, cols), values, affine)
            got = _heat_luminance(frame)[y0:y1, x0:x1]
            # Where the values are under the floor the heatmap is transparent and the image shows.
            drawn_heat = want >= HEATMAP_FLOOR + 0.03  # values 0..1 (its header's scale)
            heat_scores = {
                k: _correlation(
                    got[drawn_heat & (v >= HEATMAP_FLOOR + 0.03)], v[drawn_heat & (v >= HEATMAP_FLOOR + 0.03)]
                )
                for k, v in _orientations(want).items()
                if v.shape == got.shape
            }
            best = max(heat_scores, key=lambda k: heat_scores[k])
            if best != "as it is" or heat_scores["as it is"] < 0.9:
                failures.append(f"{name}: the drawn heatmap best matches its values {best} ({heat_scores})")
            blur = max(3, got.shape[0] // 20) | 1
            masked = np.where(drawn_heat, got, 0)
            peak_got = np.unravel_index(int(np.argmax(cv2.GaussianBlur(masked, (blur, blur), 0))), got.shape)
            peak_want = np.unravel_index(int(np.argmax(cv2.GaussianBlur(want, (blur, blur), 0))), want.shape)
            distance = float(np.hypot(peak_got[0] - peak_want[0], peak_got[1] - peak_want[1]))
            if distance > got.shape[0] / 20:
                failures.append(
                    f"{name}: heatmap peak drawn at {peak_got} of its square, its values peak at {peak_want}"
                )
            frame.get_by_role("checkbox", name="Model crop outline").check()
    assert not failures, "\n".join(failures)


def _planes(canvas: np.ndarray, shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the axial, coronal and sagittal planes, drawn side by side in that
    order at one scale (NiiVue's row layout), from the extent of the lit (white) pixels."""
    x, y, z = shape
    lit = canvas.min(axis=2) > 200
    columns, rows = np.flatnonzero(lit.any(axis=0)), np.flatnonzero(lit.any(axis=1))
    left, top = int(columns[0]), int(rows[0])
    scale = (int(columns[-1]) + 1 - left) / (x + x + y)
    widths = {"axial": x, "coronal": x, "sagittal": y}
    heights = {"axial": y, "coronal": z, "sagittal": z}
    planes, start = {}, float(left)
    for plane in ("axial", "coronal", "sagittal"):
        end = start + widths[plane] * scale
        planes[plane] = (round(start), top, round(end), round(top + heights[plane] * scale))
        start = end
    return planes


def test_a_marked_corner_of_a_volume_shows_where_the_orientation_letters_say(shared_server, tmp_path: Path) -> None:
    """An asymmetric synthetic volume (RAS+, 40 x 56 x 24 mm) with its right-anterior-superior
    corner bright: in each of the three planes the bright corner lies on the sides whose letters
    are R (or L), A (or P) and S, as NiiVue draws them."""
    import nibabel as nib
    from playwright.sync_api import expect

    data = np.full((40, 56, 24), 1000, dtype=np.int16)
    data[18:, 26:, 10:] = 100  # dark past the middle towards +x (Right), +y (Anterior), +z (Superior)
    path = tmp_path / "marked_corner.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    url, _ = shared_server
    with browser_page(1600, 1400) as page:
        page.goto(f"{url}/volumes")
        _sign(page, "Dr Letters")
        open_page(page, "Review an MRI or CT")
        page.get_by_role("radiogroup", name="What to review").get_by_role("radio", name=MASK_TASK).click()
        expect(page.get_by_text("A volume: one NIfTI")).to_be_visible()
        uploader(page, volume_upload_key(MASK_TASK)).set_input_files(str(path))
        frame = _viewer(page)
        state = _state(frame)
        letters = state["letters"]
        # The three planes as large as the window allows: the viewer spans the page (no sidebar column).
        assert _width(page, "review_viewer") >= 0.85 * 1600
        canvas = _canvas(frame)
        import os

        if os.environ.get("DEBUG_HEAT"):
            from PIL import Image

            Image.fromarray(canvas).save("/tmp/volume_canvas.png")
        planes = _planes(canvas, data.shape)
        # The dark corner: neither the white volume, nor the red crosshair or the amber letters.
        dark = canvas.max(axis=2) < 60
        wrong = []
        for plane, (x0, y0, x1, y1) in planes.items():
            ys, xs = np.nonzero(dark[y0:y1, x0:x1])
            assert len(xs) > 100, f"{plane}: the marked corner is not drawn in {(x0, y0, x1, y1)}"
            on_left = xs.mean() < (x1 - x0) / 2
            on_top = ys.mean() < (y1 - y0) / 2
            # The corner is Right, Anterior and Superior: the left edge's letter says which of
            # those sides lies left, the top edge's letter which lies on top.
            left_side = {"axial": "R", "coronal": "R", "sagittal": "A"}[plane]
            top_side = {"axial": "A", "coronal": "S", "sagittal": "S"}[plane]
            if on_left != (letters[plane]["left"] == left_side):
                wrong.append(
                    f"{plane}: the {left_side} corner is drawn {'left' if on_left else 'right'}, "
                    f"the left edge is marked {letters[plane]['left']}"
                )
            if on_top != (letters[plane]["top"] == top_side):
                wrong.append(
                    f"{plane}: the {top_side} corner is drawn {'top' if on_top else 'bottom'}, "
                    f"the top edge is marked {letters[plane]['top']}"
                )
        _shot(page, "37-volume-orientation-letters")
    assert not wrong, "\n".join(wrong)
