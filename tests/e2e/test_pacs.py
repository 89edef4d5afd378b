"""PACS -> AI -> reader -> PACS in a real browser against a real Orthanc: a new reader lists the
PACS's studies (by keyed patient, never by name), opens a radiograph, gives a verdict, sends their
SR back, and finds it in the same Orthanc study, filed under the patient PACS holds."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.conftest import SAMPLES, require_samples
from tests.e2e import verdict_rows
from tests.e2e.conftest import browser_page, open_page, settled, shown_run, streamlit_app
from tests.e2e.test_browser import _shot, _sign

pytestmark = pytest.mark.e2e


def test_a_reader_opens_a_pacs_study_reviews_it_and_sends_the_sr_back(orthanc, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from pipelines.pacs import PacsEndpoint, send, series_of_study
    from tests.support.orthanc_server import PASSWORD, USER

    require_samples()
    film = pydicom.dcmread(SAMPLES / "cxr" / "siim_sample.dcm")
    target = PacsEndpoint(orthanc.dicomweb_url, USER, PASSWORD)
    send(target, [film])
    env = {"PACS_DICOMWEB_URL": orthanc.dicomweb_url, "PACS_USERNAME": USER, "PACS_PASSWORD": PASSWORD}
    with streamlit_app(tmp_path, extra_env=env) as (url, _), browser_page(1920, 1080) as page:
        page.goto(url)
        _sign(page, "Dr Pacs")
        open_page(page, "PACS")
        table = page.locator("[data-testid='stDataFrame']").first
        expect(table).to_be_visible()
        settled(page)
        _shot(page, "40-pacs-studies")
        box = table.bounding_box()
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the only study's selection box
        page.get_by_role("button", name="Open this study for review").click()
        expect(page.get_by_text("Opened from PACS:")).to_be_visible()
        shown_run(page)
        row = verdict_rows.row(page, "review", 0)
        item = verdict_rows.item_name(row)
        verdict_rows.button(row, "agree").click()
        expect(page.get_by_text(f"Saved: {item} — agree")).to_be_visible()
        _shot(page, "41-pacs-study-reviewed")

        open_page(page, "Case review")  # the only case: this study's
        expect(page.get_by_role("heading", name="Case 1", exact=True)).to_be_visible()
        send_button = page.get_by_role("button", name="Send my verdicts (SR) to PACS")
        expect(send_button).to_be_visible()
        settled(page)
        send_button.click()
        # The SR, and the Grad-CAM of the top six positive or critical findings as pictures.
        expect(page.get_by_text("Sent to PACS: 7 object(s) (your SR and 6 picture(s)).")).to_be_visible()
        _shot(page, "42-sent-to-pacs")

    listed = series_of_study(target, film.StudyInstanceUID)
    assert sorted(s["modality"] for s in listed) == ["CR", "OT", "SR"]
    [study] = orthanc.get("/studies?expand")  # one study: the SR and pictures are filed with their film
    assert study["PatientMainDicomTags"]["PatientID"] == film.PatientID
    [sr_series] = [s for s in study["Series"] if orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] == "SR"]
    [instance] = orthanc.get(f"/series/{sr_series}/instances")
    tags = orthanc.get(f"/instances/{instance['ID']}/simplified-tags")
    assert "Dr Pacs" in tags["SeriesDescription"] and tags["SeriesDescription"].endswith("untrained: meaningless")


def test_a_reader_segments_a_ct_opened_from_pacs_and_sends_the_sr_and_seg_back(orthanc, tmp_path: Path) -> None:
    """The loop for a volume: the dcmqi CT opened from Orthanc, segmented by the (untrained,
    labelled) whole-body network, a structure judged, and the reader's SR with the SEG sent back:
    Orthanc's study then holds the CT, the SEG on the CT's own series and frame of reference, and
    the SR, under the patient it already held."""
    import io
    import re

    from playwright.sync_api import expect

    from pipelines.pacs import DicomWebResource, PacsEndpoint, retrieve, send, series_of_study
    from tests.support.orthanc_server import PASSWORD, USER

    require_samples()
    ct = [pydicom.dcmread(p) for p in sorted((SAMPLES / "dicom" / "dcmqi" / "ct-3slice").glob("*.dcm"))]
    target = PacsEndpoint(orthanc.dicomweb_url, USER, PASSWORD)
    send(target, ct)
    env = {"PACS_DICOMWEB_URL": orthanc.dicomweb_url, "PACS_USERNAME": USER, "PACS_PASSWORD": PASSWORD}
    with streamlit_app(tmp_path, extra_env=env) as (url, _), browser_page(1920, 1080) as page:
        page.goto(url)
        _sign(page, "Dr Volume")
        open_page(page, "PACS")
        table = page.locator("[data-testid='stDataFrame']").first
        expect(table).to_be_visible()
        settled(page)
        box = table.bounding_box()
        page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the only study's selection box
        page.get_by_role("button", name="Open this study for review").click()
        expect(page.get_by_text("Opened from PACS:")).to_be_visible()
        page.get_by_role("button", name=re.compile(r"^Segment with ")).click()
        expect(page.get_by_text(re.compile(r"Segmentation run #\d+"))).to_be_visible(timeout=240_000)
        settled(page)
        row = verdict_rows.row(page, "volumes", 0, noun="structure")
        item = verdict_rows.item_name(row)
        verdict_rows.button(row, "disagree").click()
        expect(page.get_by_text(f"Saved: {item} — disagree")).to_be_visible()

        open_page(page, "Case review")  # the only case: this study's segmentation
        send_button = page.get_by_role("button", name="Send my verdicts (SR) and the masks (SEG) to PACS")
        expect(send_button).to_be_visible()
        settled(page)
        send_button.click()
        # The SR, the SEG and each judged-for structure's mask on its middle slice as a picture.
        expect(
            page.get_by_text(re.compile(r"Sent to PACS: \d+ object\(s\) \(your SR, the SEG and \d+ picture\(s\)\)\."))
        ).to_be_visible()
        _shot(page, "43-ct-sent-to-pacs")

    study_uid = ct[0].StudyInstanceUID
    listed = series_of_study(target, study_uid)
    assert sorted(s["modality"] for s in listed) == ["CT", "OT", "SEG", "SR"]
    [study] = orthanc.get("/studies?expand")  # one study: the SEG, SR and pictures are filed with their CT
    assert study["PatientMainDicomTags"]["PatientID"] == ct[0].PatientID
    kept = [
        pydicom.dcmread(io.BytesIO(data))
        for series in listed
        if series["modality"] in ("SEG", "SR")
        for files in retrieve(DicomWebResource(target, study_uid, series["series_uid"]), max_bytes=10**9).values()
        for _name, data in files
    ]
    [seg] = [d for d in kept if d.Modality == "SEG"]
    [sr] = [d for d in kept if d.Modality == "SR"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    assert seg.SeriesDescription.endswith("untrained: meaningless")
    said = " ".join(str(element.value) for element in sr.iterall() if element.VR != "SQ")
    assert "Dr Volume" in sr.SeriesDescription and item in said and "disagree" in said
