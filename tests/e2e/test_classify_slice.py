"""A brain MRI slice classified in a real browser with the shipped trained model: the prediction,
the card a click away, Grad-CAM over the slice in the browser viewer (no untrained banner), and
"Disagree: it is a meningioma" stored from the panel for the one meningioma it reads as a glioma."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES
from tests.e2e import verdict_rows
from tests.e2e.conftest import browser_page, open_page, settled, uploader
from tests.e2e.test_browser import _shot, _sign
from tests.e2e.test_viewer import _state, _viewer
from ui.session import SLICE_UPLOAD

pytestmark = pytest.mark.e2e


MENINGIOMAS = SAMPLES / "mri_tumour" / "test" / "meningioma"  # the first is read as a glioma


def test_a_brain_slice_shows_its_prediction_card_heatmap_and_takes_the_readers_own_class(shared_server) -> None:
    from playwright.sync_api import expect

    from ui.widgets.radiograph_check import BRAIN_MRI_SLICE

    url, _ = shared_server
    with browser_page(1500, 2400) as page:
        page.goto(url)
        _sign(page, "Dr Slice")
        open_page(page, "Review an MRI or CT")
        page.get_by_role("radiogroup", name="What to review").get_by_role(
            "radio", name="Classify a brain MRI slice"
        ).click()
        expect(page.get_by_text("One brain MRI slice")).to_be_visible()
        misread = sorted(MENINGIOMAS.glob("*.jpg"))[0]  # here, not at import: without the samples the test says so
        uploader(page, SLICE_UPLOAD).set_input_files(str(misread))
        page.get_by_role("button", name=BRAIN_MRI_SLICE.yes_label).click()
        expect(page.get_by_text("AI prediction: Glioma")).to_be_visible()
        expect(page.get_by_text("4 classes ·")).to_be_visible()
        expect(page.get_by_text("test accuracy 0.99 on 160 slices it never saw")).to_be_visible()
        # The slice unmarked on the left, its Grad-CAM on the right, at the same size.
        original, heatmap = _viewer(page, 0), _viewer(page, 1)
        state = _state(heatmap)
        assert [layer["role"] for layer in state["layers"]] == ["image", "outline", "heatmap"]
        assert [layer["role"] for layer in _state(original)["layers"]] == ["image"]
        assert not state["banner"], state["banner"]  # trained weights: no "meaningless" banner
        assert _state(original)["picture"] == state["picture"], "the two pictures differ in size or place"
        heat = next(layer for layer in state["layers"] if layer["role"] == "heatmap")
        assert state["colorbars"] == [heat["colormap"]] and _state(original)["colorbars"] == []
        _shot(page, "30-classify-brain-slice")
        page.get_by_text("Model card: what it was trained on").click()
        expect(page.get_by_text("Confusion matrix on the test split")).to_be_visible()
        _shot(page, "31-classify-model-card")

        rows = verdict_rows.rows(page, "review")
        expect(rows).to_have_count(4)
        first = rows.first
        assert verdict_rows.item_name(first) == "Glioma"  # the AI's answer comes first
        verdict_rows.button(first, "disagree").click()
        expect(first.get_by_text("It is:")).to_be_visible()
        first.get_by_role("button", name="Meningioma").click()
        expect(page.get_by_text("Saved: Glioma — disagree: it is Meningioma.")).to_be_visible()
        expect(first.locator("[data-testid='stBaseButton-primary']").filter(visible=True)).to_have_count(2)
        settled(page)
        _shot(page, "32-classify-disagree-it-is")


def test_a_click_on_a_volumes_slice_strip_moves_the_viewer_and_shows_that_slices_heatmap(shared_server) -> None:
    """A NIfTI through the tumour model: the per-slice strip under the viewer; a click on one slice
    of it moves the viewer's crosshair there and shows that slice beside its Grad-CAM."""
    import re

    from playwright.sync_api import expect

    url, _ = shared_server
    with browser_page(1500, 2600) as page:
        page.goto(f"{url}/volumes")
        _sign(page, "Dr Strip")
        page.get_by_role("radiogroup", name="What to review").get_by_role(
            "radio", name="Classify a brain MRI slice"
        ).click()
        expect(page.get_by_text("One brain MRI slice")).to_be_visible()
        uploader(page, SLICE_UPLOAD).set_input_files(str(SAMPLES / "mri" / "mni152_t1.nii.gz"))
        heading = page.get_by_text(re.compile(r" on axial slice \d+ \(the slice driving its volume score\): "))
        expect(heading).to_be_visible()
        frame = _viewer(page)
        before = _state(frame)["voxel"]
        settled(page)
        points = page.locator("[data-testid='stPlotlyChart'] .scatterlayer .trace").first.locator("path.point")
        expect(points.first).to_be_attached()
        target = points.nth(20)
        target.click(force=True)
        picked = page.get_by_text(re.compile(r" on axial slice \d+: "))
        expect(picked).to_be_visible()
        index = int(re.search(r"slice (\d+)", picked.inner_text()).group(1))
        expect(page.get_by_text(f"Axial slice {index} as the model read it")).to_be_visible()
        frame.wait_for_function(
            "before => JSON.stringify(window.reviewViewer.state().voxel) !== before", arg=str(before)
        )
        assert index in _state(frame)["voxel"], (index, _state(frame)["voxel"])
        settled(page)
        _shot(page, "33-classify-volume-strip-click")
