"""Verdicts clicked as fast as the page confirms them: every click is stored exactly once, nothing
that was not clicked is stored, and each item ends at the verdict clicked last (X-ray findings and
MRI structures, in a real browser against `streamlit run`)."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import NIH_PNG, SAMPLES
from tests.e2e import verdict_rows
from tests.e2e.conftest import browser_page, open_page, settled, upload_radiograph, uploader, wait_for_text
from tests.e2e.test_browser import _shot, _sign
from ui.session import MASK_TASK, MASK_UPLOAD, volume_upload_key

pytestmark = pytest.mark.e2e
ROUNDS = ("agree", "disagree", "unsure", "disagree", "agree")  # all three, and back again
ITEMS = 10


def _click_as_fast_as_confirmed(page, scope: str, noun: str) -> list[tuple[str, str]]:
    from playwright.sync_api import expect

    rows = [verdict_rows.row(page, scope, i, noun) for i in range(ITEMS)]
    names = [verdict_rows.item_name(r) for r in rows]
    clicked = []
    for verdict in ROUNDS:
        for row, name in zip(rows, names):
            verdict_rows.button(row, verdict).click()
            clicked.append((name, verdict))
            # The next click comes as soon as the page confirms this one.
            wait_for_text(page, f"Saved: {name} — {verdict}.")
    settled(page)  # what the reader sees once the page has finished redrawing
    for row in rows:
        expect(verdict_rows.chosen(row)).to_have_count(1)
        expect(verdict_rows.chosen(row)).to_have_text(re.compile(f"{verdict_rows.VERDICT_NAMES[ROUNDS[-1]]}$"))
    return clicked


def _rows(database_url: str, sql: str) -> list:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(sql))]
    finally:
        engine.dispose()


def test_fast_clicks_on_findings_store_exactly_what_was_clicked(shared_server) -> None:
    from playwright.sync_api import expect

    url, database_url = shared_server
    with browser_page() as page:
        page.goto(url)
        _sign(page, "Dr Quick")
        upload_radiograph(page, str(NIH_PNG))
        expect(page.get_by_text("18 findings ·")).to_be_visible()
        clicked = _click_as_fast_as_confirmed(page, "review", "finding")
        _shot(page, "11-fast-clicks-findings")

    stored = _rows(
        database_url,
        "SELECT v.item, v.verdict FROM verdicts v JOIN analysis_runs r ON r.id = v.run_id "
        "WHERE v.reviewer = 'Dr Quick' AND r.kind = 'classification' ORDER BY v.id",
    )
    assert stored == clicked, "one stored row per click, in click order, and nothing else"
    assert dict(stored) == {name: ROUNDS[-1] for name, _ in clicked}
    events = _rows(
        database_url,
        "SELECT count(*) FROM audit_events WHERE actor = 'Dr Quick' AND kind IN ('verdict_set', 'verdict_changed')",
    )
    assert events == [(len(clicked),)]


def _ten_label_mask(folder: Path) -> Path:
    """Ten structures on the MNI152 grid: the grey-matter probability map cut into ten bands."""
    gm = nib.load(SAMPLES / "mri" / "mni152_gm_prob.nii.gz")
    probability = np.asarray(gm.dataobj).astype(np.float32)
    labels = np.where(probability > 0, 1 + np.minimum(9, probability * 10 // (probability.max() + 1)), 0)
    path = folder / "ten_bands.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), gm.affine), path)
    assert len(np.unique(labels)) == ITEMS + 1
    return path


def test_fast_clicks_on_structures_store_exactly_what_was_clicked(shared_server, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    url, database_url = shared_server
    mask = _ten_label_mask(tmp_path)
    with browser_page() as page:
        page.goto(f"{url}/volumes")
        _sign(page, "Dr Quick")
        open_page(page, "Review an MRI or CT")
        expect(page.get_by_text("Review an MRI or CT volume").first).to_be_visible()
        page.get_by_role("radiogroup", name="What to review").get_by_role("radio", name=MASK_TASK).click()
        expect(page.get_by_text("A volume: one NIfTI")).to_be_visible()
        uploader(page, volume_upload_key(MASK_TASK)).set_input_files(str(SAMPLES / "mri" / "mni152_t1.nii.gz"))
        expect(page.get_by_text("Label map: NIfTI on the same grid")).to_be_visible()
        uploader(page, MASK_UPLOAD).set_input_files(str(mask))
        expect(verdict_rows.rows(page, "volumes", "structure")).to_have_count(ITEMS)
        clicked = _click_as_fast_as_confirmed(page, "volumes", "structure")
        _shot(page, "24-fast-clicks-structures")

    stored = _rows(
        database_url,
        "SELECT v.item, v.verdict FROM verdicts v JOIN analysis_runs r ON r.id = v.run_id "
        "WHERE v.reviewer = 'Dr Quick' AND r.kind <> 'classification' ORDER BY v.id",
    )
    assert stored == clicked, "one stored row per click, in click order, and nothing else"
    assert dict(stored) == {name: ROUNDS[-1] for name, _ in clicked}
