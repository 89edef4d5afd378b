"""The browser viewer (NiiVue, WebGL2 in headless Chromium) driven as a reader drives it: the whole
radiograph with window/level, zoom and the heatmap's opacity changed in the browser; a volume
scrolled with the wheel and the keys over three linked planes with its mask; the pixels sent once
per case, not again when the page reruns."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES
from tests.e2e import verdict_rows
from tests.e2e.conftest import (
    browser_page,
    case_of_run,
    download,
    open_page,
    settled,
    shown_run,
    upload_radiograph,
    uploader,
)
from tests.e2e.test_browser import _shot, _sign
from tests.e2e.test_volume_browser import MRI, _mask_file
from ui.session import MASK_TASK, MASK_UPLOAD, volume_upload_key
from ui.widgets.radiograph_check import YES_LABEL

pytestmark = pytest.mark.e2e
PADCHEST = SAMPLES / "cxr" / "padchest_16747_3_1.jpg"  # 1036 x 885: wider than it is tall


@pytest.fixture(autouse=True)
def _viewer_built() -> None:
    from ui.widgets.image_viewer import BUNDLE

    if not BUNDLE.is_file():
        pytest.fail(f"The browser viewer is not built ({BUNDLE} is missing): run `bash scripts/build-viewer`.")


def _viewer(page, nth: int | None = None):
    """The page's browser viewer (``nth`` of several: a heatmap beside its image is the second)."""
    from playwright.sync_api import expect

    element = page.locator("iframe[src*='review_viewer']")
    if nth is not None:
        element = element.nth(nth)
    expect(element).to_be_visible()
    frame = element.element_handle().content_frame()
    frame.wait_for_function("() => window.reviewViewer && window.reviewViewer.state().ready")
    return frame


def _canvas(frame) -> np.ndarray:
    """The viewer's canvas as drawn now, (rows, columns, 3) uint8."""
    drawn = frame.evaluate("() => window.reviewViewer.pixels()")
    rgb = np.frombuffer(base64.b64decode(drawn["rgb"]), dtype=np.uint8)
    return rgb.reshape(drawn["height"], drawn["width"], 3)


def _mask_pixels(frame) -> int:
    """How many canvas pixels are tinted the crimson (230, 25, 75) of label 1 over grey: red and
    some blue over green (the crosshair's pure red has no blue)."""
    rgb = _canvas(frame).astype(np.int16)
    return int(((rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 2] - rgb[..., 1] > 10)).sum())


def _state(frame) -> dict:
    return frame.evaluate("() => window.reviewViewer.state()")


# Counts the messages the page sends on its websocket, in the page itself: WebSocket.send is
# synchronous there, so a count read after the page's pending tasks have run has every message a
# change made (the browser's own report of a sent frame reaches the test by another path, later).
_COUNT_SENT = """(() => {
  if (window.top !== window) return;
  const send = WebSocket.prototype.send;
  window.__reviewSent = 0;
  WebSocket.prototype.send = function (data) { window.__reviewSent += 1; return send.call(this, data); };
})()"""


class _Socket:
    """The sizes of the websocket frames the page receives (Streamlit's one socket), and how many
    messages it has sent."""

    def __init__(self, page) -> None:
        self.page = page
        self.received: list[int] = []
        page.add_init_script(_COUNT_SENT)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: self.received.append(len(payload))))

    def sent(self, frame) -> int:
        """Messages sent so far, once what the viewer in ``frame`` posted to the page has been
        handled: the viewer's task queue, then the page's (a message posted earlier is handled
        before a task queued later), without waiting a fixed time."""
        flush = "() => new Promise(done => setTimeout(done, 0))"
        frame.evaluate(flush)
        self.page.evaluate(flush)
        return self.page.evaluate("() => new Promise(done => setTimeout(() => done(window.__reviewSent), 0))")


def test_radiograph_in_the_browser_viewer(shared_server) -> None:
    from playwright.sync_api import expect

    url, _ = shared_server
    with browser_page(1500, 2400) as page:
        socket = _Socket(page)
        page.goto(url)
        _sign(page, "Dr Viewer")
        upload_radiograph(page, str(PADCHEST))
        expect(page.get_by_text("18 findings ·")).to_be_visible()
        frame = _viewer(page)
        state = _state(frame)
        # The whole image, not the 885 x 885 crop the model sees; its crop and heatmap over it.
        assert "1036 × 885 px, full resolution" in state["status"]
        assert [layer["role"] for layer in state["layers"]] == ["image", "outline", "heatmap"]
        assert state["banner"] == "UNTRAINED WEIGHTS: this heatmap is meaningless"
        assert (state["calMin"], state["calMax"]) == (0, 255)
        first_image = max(socket.received)
        assert first_image > 200_000  # the radiograph's pixels, once

        canvas = frame.locator("#gl")
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        sent_before = socket.sent(frame)
        # Window/level: the left button's default tool on a radiograph.
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 60, cy + 40, steps=6)
        page.mouse.up()
        windowed = _state(frame)
        assert (windowed["calMin"], windowed["calMax"]) != (0, 255)
        # Invert keeps the reader's window (it reset it to the one the case opened in).
        frame.get_by_role("checkbox", name="Invert").check()
        inverted = _state(frame)
        assert inverted["invert"] is True
        assert (inverted["calMin"], inverted["calMax"]) == pytest.approx((windowed["calMin"], windowed["calMax"]))
        frame.get_by_role("checkbox", name="Invert").uncheck()
        page.mouse.move(cx, cy)  # back over the image (the clicks moved the pointer to the toolbar)
        # The wheel zooms a radiograph about the point under the pointer (it drifted to the top-left).
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.35)
        spot = (box["width"] * 0.3, box["height"] * 0.35)
        under = frame.evaluate("([x, y]) => window.reviewViewer.pointAt(x, y)", spot)
        page.mouse.wheel(0, -300)
        frame.wait_for_function("() => window.reviewViewer.state().zoom > 1")
        still = frame.evaluate("([x, y]) => window.reviewViewer.pointAt(x, y)", spot)
        assert abs(still[0] - under[0]) < 3 and abs(still[1] - under[1]) < 3, (under, still)
        # Shift-drag is the ruler alone: no pan; the ruler's numbers carry no "mm" (they are pixels).
        pan_before = _state(frame)["pan"]
        page.keyboard.down("Shift")
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=5)
        page.mouse.up()
        page.keyboard.up("Shift")
        assert _state(frame)["pan"] == pan_before
        assert _state(frame)["rulerUnits"] == ""
        page.mouse.move(cx, cy)
        # The heatmap's opacity and colormap are changed in the browser.
        opacity = frame.get_by_role("slider", name="Heatmap opacity")
        opacity.focus()
        for _ in range(4):
            opacity.press("ArrowRight")
        frame.get_by_role("combobox", name="Heatmap colormap").select_option("inferno")
        heat = next(layer for layer in _state(frame)["layers"] if layer["role"] == "heatmap")
        assert heat["opacity"] == pytest.approx(0.65)
        assert heat["colormap"] == "inferno"
        frame.get_by_role("checkbox", name="Model crop outline").uncheck()
        outline = next(layer for layer in _state(frame)["layers"] if layer["role"] == "outline")
        assert outline["opacity"] == 0
        assert socket.sent(frame) == sent_before, "window, zoom, opacity and colours must not reach the server"
        _shot(page, "30-viewer-radiograph")

        # Another finding: a new heatmap (small) comes, the radiograph does not come again, and
        # the reader's zoom and window stay.
        received_before = len(socket.received)
        page.get_by_role("combobox", name="Finding (its heatmap; your verdict below)").click()
        option = page.get_by_role("option").nth(3)
        chosen = option.inner_text().strip()
        option.click()
        frame.wait_for_function(
            "id => { const h = window.reviewViewer.state().layers.find(l => l.role === 'heatmap'); return h && h.id !== id; }",
            arg=heat["id"],
        )
        assert socket.sent(frame) > sent_before, "the count sees what the page does send (the finding chosen)"
        after = _state(frame)
        assert after["zoom"] > 1 and (after["calMin"], after["calMax"]) == (windowed["calMin"], windowed["calMax"])
        assert max(socket.received[received_before:]) < first_image / 4
        # A verdict from the keyboard while the viewer has the focus: the key reaches the page,
        # and goes to the finding whose heatmap is on screen.
        assert after["layers"][-1]["caption"].startswith(f"Grad-CAM for {chosen} (")
        canvas.click()
        canvas.press("a")
        expect(page.get_by_text(f"Saved: {chosen} — agree")).to_be_visible()
        assert max(socket.received[received_before:]) < first_image / 4


def test_volume_in_three_linked_planes(server, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, _ = server
    mask = _mask_file(tmp_path)
    with browser_page(1500, 2200) as page:
        socket = _Socket(page)
        page.goto(f"{url}/volumes")
        _sign(page, "Dr Planes")
        open_page(page, "Review an MRI or CT")
        page.get_by_role("radiogroup", name="What to review").get_by_role("radio", name=MASK_TASK).click()
        expect(page.get_by_text("A volume: one NIfTI")).to_be_visible()
        uploader(page, volume_upload_key(MASK_TASK)).set_input_files(str(MRI / "mni152_t1.nii.gz"))
        frame = _viewer(page)
        start = _state(frame)
        assert start["voxel"] == [98, 116, 94]  # the middle of 197 x 233 x 189
        assert re.search(r"axial 95/189 · coronal 117/233 · sagittal 99/197", start["status"])
        uploader(page, MASK_UPLOAD).set_input_files(str(mask))
        expect(page.get_by_text("Volume per structure (uploaded mask)")).to_be_visible()
        frame = _viewer(page)
        frame.wait_for_function("() => window.reviewViewer.state().layers.some(l => l.role === 'labels')")
        volume_bytes = max(socket.received)

        # The wheel over the left plane (axial) moves through axial slices; the others stay.
        canvas = frame.locator("#gl")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 6, box["y"] + box["height"] / 2)
        sent_before = socket.sent(frame)
        for _ in range(3):
            page.mouse.wheel(0, -100)
        frame.wait_for_function("() => window.reviewViewer.state().voxel[2] === 97")
        assert _state(frame)["voxel"][:2] == [98, 116]
        # Keys scroll the plane under the pointer: the coronal one in the middle.
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        canvas.press("ArrowDown")
        canvas.press("ArrowDown")
        frame.wait_for_function("() => window.reviewViewer.state().voxel[1] === 114")
        # A label hidden and the masks' opacity changed, in the browser.
        frame.get_by_role("checkbox", name="Show Label 1").uncheck()
        assert _state(frame)["hiddenLabels"] == [1]
        assert socket.sent(frame) == sent_before, "slices and mask visibility must not reach the server"
        assert "UNTRAINED" not in _state(frame)["banner"]  # an uploaded mask is no model's output
        _shot(page, "31-viewer-volume")

        # A structure chosen on the page moves the crosshair to its middle axial slice; the
        # volume is not sent again.
        received_before = len(socket.received)
        page.get_by_role("combobox", name=re.compile("Go to a structure")).click()
        page.get_by_role("option", name="Label 1").click()
        frame.wait_for_function("() => window.reviewViewer.state().voxel[2] !== 97")
        assert socket.sent(frame) > sent_before, "the count sees what the page does send (the structure chosen)"
        assert max(socket.received[received_before:], default=0) < volume_bytes / 10
        row = verdict_rows.row(page, "volumes", 0, noun="structure")
        verdict_rows.button(row, "agree").click()
        expect(page.get_by_text("Saved: Label 1 — agree")).to_be_visible()

        # Another day: the worklist's row reopens the case in this tab, the kept volume and masks
        # in the viewer where the reader left it (the tab keeps a case's view: window, zoom,
        # crosshair), every mask shown again, the verdict as given.
        left_at = _state(frame)["voxel"]
        open_page(page, "Worklist")
        expect(page.get_by_text("click a row to open it with its kept volume")).to_be_visible()
        settled(page)
        grid = page.locator("[data-testid='stDataFrame']").first
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the only row's selection box
        expect(page.get_by_role("heading", name="Case 1 · segmentation")).to_be_visible()
        assert len(page.context.pages) == 1
        frame = _viewer(page)
        frame.wait_for_function(
            "() => { const s = window.reviewViewer.state(); return s.ready && s.layers.some(l => l.role === 'labels'); }"
        )
        assert _state(frame)["voxel"] == left_at
        # The masks are drawn, not only listed: the label hidden above was kept hidden, and the
        # reopened case showed its legend over bare planes.
        assert _state(frame)["hiddenLabels"] == []
        assert _mask_pixels(frame) > 20_000
        expect(verdict_rows.chosen(verdict_rows.row(page, "cases", 0, noun="structure"))).to_have_text(
            re.compile("Agree$")
        )
        settled(page)
        _shot(page, "33-viewer-volume-reopened")
        # The reopened case's masks as DICOM SEG, built from the kept volume: the uploaded mask's
        # voxels, on the template's grid, named as on the page.
        seg = download(page, "Download the masks as DICOM SEG", tmp_path)
    _same_voxels_as(seg, mask)


def _same_voxels_as(seg: Path, mask: Path) -> None:
    import nibabel as nib
    import pydicom

    from inference.masks.load import load_label_map
    from inference.volume.ingest import load_volume

    header = pydicom.dcmread(seg, stop_before_pixels=True)
    assert header.Modality == "SEG" and [s.SegmentLabel for s in header.SegmentSequence] == ["Label 1"]
    template = MRI / "mni152_t1.nii.gz"
    volume = load_volume(
        [(template.name, template.read_bytes())], max_bytes=10**9, max_voxels=10**8, hash_key=b"any key"
    )
    back = load_label_map([(seg.name, seg.read_bytes())], volume, max_bytes=10**9, max_voxels=10**8)
    assert int((np.asarray(back.data) > 0).sum()) == int((np.asarray(nib.load(mask).dataobj) > 0).sum())


def _film(folder: Path, patient_id: str, variant: int) -> Path:
    import pydicom

    ds = pydicom.dcmread(SAMPLES / "cxr" / "siim_sample.dcm")
    ds.PatientID = patient_id
    ds.InstanceNumber = variant  # another film of the same patient
    path = folder / f"film{variant}.dcm"
    ds.save_as(path)
    return path


def test_a_case_and_its_prior_move_together(shared_server, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, database_url = shared_server
    patient = f"MRN-{tmp_path.name}"  # a patient of this test's own on the shared server
    with browser_page(1500, 2600) as page:
        page.goto(url)
        _sign(page, "Dr Prior")
        runs: list[int] = []
        for variant in (1, 2):
            upload_radiograph(page, str(_film(tmp_path, patient, variant)))
            runs.append(shown_run(page, after=runs[-1] if runs else None))
            settled(page)
        case = case_of_run(database_url, runs[1])
        assert case_of_run(database_url, runs[0]) != case, "two films, two cases"
        open_page(page, "Case review")
        # The worklist's order depends on the other tests' cases: open this patient's newest.
        page.get_by_role("combobox", name="Open case").click()
        page.get_by_role("option", name=re.compile(rf"^Case {case} ")).click()
        expect(page.get_by_role("heading", name=f"Case {case}", exact=True)).to_be_visible()
        settled(page)
        # The tab's pixel cache emptied (as when it is full): the viewers must ask for their
        # pixels, and get them, although the page counts them as sent already.
        page.evaluate("() => window.__reviewViewerPixels && window.__reviewViewerPixels.clear()")
        page.get_by_text("Compare with a prior of this patient (1)").click()
        expect(page.get_by_text("move both images together")).to_be_visible()
        settled(page)
        frames = page.locator("iframe[src*='review_viewer']")
        expect(frames).to_have_count(3)  # the case's own viewer, then the two linked ones
        _wait_linked_ready(page)
        left, right = (frames.nth(i).element_handle().content_frame() for i in (1, 2))
        # Linked by the two runs: this case's, then the prior's.
        assert _state(left)["sync"] == _state(right)["sync"] == f"prior:{runs[1]}:{runs[0]}"

        # The wheel over the prior zooms both; a window drag on this case windows both.
        box = frames.nth(2).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 3)
        page.mouse.wheel(0, -300)
        right.wait_for_function("() => window.reviewViewer.state().zoom > 1")
        left.wait_for_function(f"() => Math.abs(window.reviewViewer.state().zoom - {_state(right)['zoom']}) < 1e-6")
        box = frames.nth(1).bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 3
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 60, cy + 40, steps=6)
        page.mouse.up()
        windowed = _state(left)
        assert (windowed["calMin"], windowed["calMax"]) != (0, 255)
        right.wait_for_function(
            f"() => window.reviewViewer.state().calMin === {windowed['calMin']} && "
            f"window.reviewViewer.state().calMax === {windowed['calMax']}"
        )
        assert _state(right)["pan"] == _state(left)["pan"]
        page.get_by_text("move both images together").scroll_into_view_if_needed()
        _shot(page, "34-prior-linked")


# The linked viewers' states, read from the page: Streamlit may rebuild a component's frame while
# it loads, and a locator would wait for the frame it replaced.
_LINKED_STATES = (
    "() => [...document.querySelectorAll(\"iframe[src*='review_viewer']\")].slice(-2).map(f => { try { "
    "const s = f.contentWindow.reviewViewer.state(); return s.ready ? 'ready' : "
    "f.contentDocument.getElementById('message').textContent || 'drawing'; } catch (e) { return 'loading'; } })"
)


def _wait_linked_ready(page) -> None:
    """Both linked viewers (the page's last two) drawn, kept in view while they draw (Chromium
    throttles a frame out of sight): checked as the page says it, every 250 ms, for 2 minutes."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    check = (
        "() => { const f = document.querySelectorAll(\"iframe[src*='review_viewer']\"); "
        "if (f.length) f[f.length - 1].scrollIntoView({block: 'center'}); "
        f'return JSON.stringify(({_LINKED_STATES})()) === \'["ready","ready"]\'; }}'
    )
    try:
        page.wait_for_function(check, polling=250, timeout=120_000)
    except PlaywrightTimeout:
        raise AssertionError(f"the linked viewers did not finish drawing: {page.evaluate(_LINKED_STATES)}") from None


def test_a_follow_up_volume_and_its_prior_scroll_together(tmp_path: Path, monkeypatch) -> None:
    """Two segmentations of one patient reopened side by side on the case page: the wheel over
    the prior scrolls it, and this study's crosshair follows to the same place in millimetres."""
    from playwright.sync_api import expect

    from tests.app.test_volume_page import _stored_follow_up
    from tests.e2e.conftest import require_browser, streamlit_app

    require_browser()
    # Stored where the server will look (its database and image store), before it starts.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'e2e.sqlite3'}")
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    first = _stored_follow_up("a1" * 32, lesion_slices=4)
    second = _stored_follow_up("b2" * 32, lesion_slices=6)
    with streamlit_app(tmp_path) as (url, _), browser_page(1500, 2400) as page:
        page.goto(f"{url}/cases?segmentation={second}")
        _sign(page, "Dr Follow")
        expect(page.get_by_role("heading", name=re.compile("· segmentation"))).to_be_visible()
        page.get_by_text("Compare with a prior of this patient (1)").click()
        expect(page.get_by_text("move both volumes together")).to_be_visible()
        settled(page)
        frames = page.locator("iframe[src*='review_viewer']")
        expect(frames).to_have_count(3)  # the case's own viewer, then the two linked ones
        _wait_linked_ready(page)
        left, right = (frames.nth(i).element_handle().content_frame() for i in (1, 2))
        assert _state(left)["sync"] == _state(right)["sync"] == f"prior:{second}:{first}"
        start = _state(left)["voxel"]
        assert _state(right)["voxel"] == start
        box = right.locator("#gl").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 6, box["y"] + box["height"] / 2)  # the prior's axial plane
        for _ in range(3):
            page.mouse.wheel(0, -100)
        right.wait_for_function(f"() => window.reviewViewer.state().voxel[2] === {start[2] + 3}")
        left.wait_for_function(f"() => window.reviewViewer.state().voxel[2] === {start[2] + 3}")
        assert _state(left)["voxel"][:2] == start[:2]
        page.get_by_text("move both volumes together").scroll_into_view_if_needed()
        _shot(page, "35-prior-volumes-linked")


def _shown_in(page, label: str) -> str:
    """What a Streamlit list shows as chosen (the value of its combobox)."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def test_after_a_new_upload_the_lists_show_the_heatmap_drawn(shared_server) -> None:
    """Finding and method chosen on one radiograph, then another uploaded: the finding list, the
    method list and the viewer's heatmap name the same finding and method, and a key press judges
    that finding."""
    from playwright.sync_api import expect

    url, _ = shared_server
    finding_list, method_list = "Finding (its heatmap; your verdict below)", "CAM method"
    with browser_page(1600, 2400) as page:
        page.goto(url)
        _sign(page, "Dr Lists")
        upload_radiograph(page, str(SAMPLES / "cxr" / "nih_00000001_000.png"))
        expect(page.get_by_text("18 findings ·")).to_be_visible()
        page.get_by_role("combobox", name=finding_list).click()
        page.get_by_role("option", name="Edema", exact=True).click()
        settled(page)
        page.get_by_role("combobox", name=method_list).click()
        page.get_by_role("option", name="Eigen-CAM", exact=True).click()
        settled(page)
        frame = _viewer(page)
        frame.wait_for_function(
            "() => window.reviewViewer.state().layers.some(l => l.caption.startsWith('Eigen-CAM for Edema ('))"
        )
        first_scene = _state(frame)["scene"]
        frame.evaluate("() => { window.__sameViewer = true; }")
        # Asked what the new JPEG is, the reader sees it whole in the same viewer (not one the page
        # rebuilt) and may window it; the findings then come into that viewer, as windowed.
        page.locator("input[type=file]").set_input_files(str(PADCHEST))
        expect(page.get_by_role("button", name=YES_LABEL)).to_be_visible()
        frame.wait_for_function(
            """scene => { const s = window.reviewViewer.state(); return s.ready && s.scene !== scene
               && s.layers.map(l => l.role).join() === 'image'; }""",
            arg=first_scene,
        )
        assert frame.evaluate("() => window.__sameViewer === true"), "the viewer was rebuilt for the question"
        frame.get_by_role("combobox", name="Window preset").select_option(label="High contrast")
        frame.wait_for_function("() => window.reviewViewer.state().calMin > 60")
        windowed = (_state(frame)["calMin"], _state(frame)["calMax"])
        page.get_by_role("button", name=YES_LABEL).click()
        page.wait_for_function(
            """scene => { const f = document.querySelector("iframe[src*='review_viewer']");
               try { const s = f.contentWindow.reviewViewer.state(); return s.ready && s.scene !== scene
                 && s.layers.some(l => l.role === 'heatmap'); } catch (e) { return false; } }""",
            arg=first_scene,
        )
        settled(page)
        assert frame.evaluate("() => window.__sameViewer === true"), "the viewer was rebuilt for the findings"
        assert (_state(frame)["calMin"], _state(frame)["calMax"]) == windowed, "the reader's window was lost"
        finding, method = _shown_in(page, finding_list), _shown_in(page, method_list)
        heat = next(layer for layer in _state(_viewer(page))["layers"] if layer["role"] == "heatmap")
        assert heat["caption"].startswith(f"{method} for {finding} ("), (finding, method, heat["caption"])
        # The panel's line names the same finding: the one a key press judges (one list, no second
        # list of the same selection to fall behind).
        expect(page.get_by_text(re.compile(rf"^Selected: .*{re.escape(finding)} ·"))).to_be_visible()
        expect(page.get_by_role("combobox", name=re.compile("^Selected finding"))).to_have_count(0)
        page.keyboard.press("u")
        expect(page.get_by_text(f"Saved: {finding} — unsure")).to_be_visible()
