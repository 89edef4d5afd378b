"""A real browser on the MRI/CT page's server-rendered scroller (the fallback when the browser has no
WebGL2): upload the MNI152 T1 and a grey-matter mask, scroll all three views, read the volume and
record a verdict that lands in the database."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import SAMPLES
from tests.e2e import verdict_rows
from tests.e2e.conftest import browser_page, open_page, uploader
from tests.e2e.test_browser import _shot, _sign
from ui.session import MASK_TASK, MASK_UPLOAD, volume_upload_key

pytestmark = pytest.mark.e2e
MRI = SAMPLES / "mri"


def _mask_file(folder: Path) -> Path:
    gm = nib.load(MRI / "mni152_gm_prob.nii.gz")
    path = folder / "grey_matter_mask.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(gm.dataobj) >= 128).astype(np.uint8), gm.affine), path)
    return path


def test_scroll_three_views_read_the_volume_and_agree(server, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, database_url = server
    mask = _mask_file(tmp_path)
    with browser_page(1500, 2200) as page:
        # A freshly started server's first request for a page URL must still pass through app.py
        # (sign-in gate, sidebar), never run the page file on its own.
        page.goto(f"{url}/volumes")
        expect(page.get_by_role("textbox", name="Reviewer name")).to_be_visible()
        _sign(page, "Dr Volume")
        open_page(page, "Review an MRI or CT")
        expect(page.get_by_text("Review an MRI or CT volume").first).to_be_visible()
        page.get_by_role("radiogroup", name="What to review").get_by_role("radio", name=MASK_TASK).click()
        expect(page.get_by_text("A volume: one NIfTI")).to_be_visible()
        uploader(page, volume_upload_key(MASK_TASK)).set_input_files(str(MRI / "mni152_t1.nii.gz"))
        # The server-rendered scroller: the fallback without WebGL2 (the browser viewer is test_viewer.py's).
        page.get_by_text("Server-rendered view").click()
        expect(page.get_by_text("Axial 95 of 189")).to_be_visible()
        expect(page.get_by_text("Label map: NIfTI on the same grid")).to_be_visible()
        uploader(page, MASK_UPLOAD).set_input_files(str(mask))
        expect(page.get_by_text("Volume per structure (uploaded mask)")).to_be_visible()
        images = page.locator("[data-testid='stImage']")
        expect(images.filter(has_text="Image with masks (uploaded mask)")).to_have_count(1)
        _shot(page, "20-volume-mask-axial")

        slice_slider = page.get_by_role("slider", name="Slice")
        slice_slider.focus()
        for _ in range(3):
            slice_slider.press("ArrowRight")
        expect(page.get_by_text("Axial 98 of 189")).to_be_visible()
        views = page.get_by_role("radiogroup", name="View")
        views.get_by_role("radio", name="Coronal").click()
        expect(page.get_by_text("Coronal 117 of 233")).to_be_visible()
        _shot(page, "21-volume-coronal")
        views.get_by_role("radio", name="Sagittal").click()
        expect(page.get_by_text("Sagittal 99 of 197")).to_be_visible()
        page.get_by_role("slider", name="Slice").focus()
        page.get_by_role("slider", name="Slice").press("ArrowLeft")
        expect(page.get_by_text("Sagittal 98 of 197")).to_be_visible()
        _shot(page, "22-volume-sagittal")

        row = verdict_rows.row(page, "volumes", 0, noun="structure")
        expect(row).to_contain_text("Label 1")
        verdict_rows.button(row, "agree").click()
        expect(page.get_by_text("Saved: Label 1 — agree")).to_be_visible()
        expect(verdict_rows.chosen(row)).to_have_text(re.compile("Agree$"))
        _shot(page, "23-volume-verdict")

    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = list(
            connection.execute(
                text(
                    "SELECT v.item, v.verdict, v.reviewer, r.model_id, r.kind FROM verdicts v "
                    "JOIN analysis_runs r ON r.id = v.run_id WHERE r.kind <> 'classification'"
                )
            )
        )
    engine.dispose()
    assert rows == [("Label 1", "agree", "Dr Volume", "uploaded-mask", "uploaded-mask")]
