"""The case page's "Send ... to PACS" against a real Orthanc: the reader's SR lands in the case's
study once; a PACS that is down is said under the button and nothing is lost (sending again works)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.app.conftest import new_app, texts
from tests.app.test_other_pages import analysed_case
from ui.session import pacs_send_key

SEND = "Send my verdicts (SR) to PACS"


@pytest.fixture
def pacs(orthanc, monkeypatch: pytest.MonkeyPatch):
    from tests.support import orthanc_server

    monkeypatch.setenv("PACS_USERNAME", orthanc_server.USER)
    monkeypatch.setenv("PACS_PASSWORD", orthanc_server.PASSWORD)
    return orthanc


def _closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/dicom-web"


def test_a_reader_sends_their_sr_to_pacs_and_a_pacs_that_is_down_is_said(
    untrained_env, samples: Path, pacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysed_case(samples)
    at = new_app()
    at.switch_page("pages/cases.py").run()
    assert not [b for b in at.button if b.label == SEND], "no PACS configured: no button"

    monkeypatch.setenv("PACS_DICOMWEB_URL", _closed_url())
    at.run()
    at.button(key=pacs_send_key("cases", 1)).click().run()
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error if "PACS" in e.value]
    assert "did not answer" in error and "send them again when the PACS is back" in error

    monkeypatch.setenv("PACS_DICOMWEB_URL", pacs.dicomweb_url)
    at.button(key=pacs_send_key("cases", 1)).click().run()
    # The SR, and the Grad-CAM of each of the top six positive or critical findings as pictures.
    assert "Sent to PACS: 7 object(s) (your SR and 6 picture(s))." in texts(at)
    at.button(key=pacs_send_key("cases", 1)).click().run()  # again: stored once
    assert pacs.get("/statistics")["CountInstances"] == 7
    tags = [pacs.get(f"/instances/{i}/simplified-tags") for i in pacs.get("/instances")]
    [sr] = [t for t in tags if t["Modality"] == "SR"]
    assert sr["SeriesDescription"].endswith("untrained: meaningless") and "Dr Test" in sr["SeriesDescription"]
    pictures = [t for t in tags if t["Modality"] != "SR"]
    assert len(pictures) == 6 and all(t["ImageComments"].startswith("Grad-CAM for ") for t in pictures)
    assert all(t["SeriesDescription"].endswith("untrained: meaningless") for t in pictures)
    at.button(key=pacs_send_key("cases", 1)).click().run()  # what left is in the audit trail
    from sqlalchemy import text

    from core.settings import load_settings
    from storage.db import open_database

    with open_database(load_settings().database_url).begin() as session:
        sent = session.execute(text("SELECT detail_json FROM audit_events WHERE kind = 'export_made'")).scalars().all()
    assert sum("DICOM sent to PACS (by hand): 7" in (detail or "") for detail in sent) == 3


@pytest.fixture
def filled(pacs, monkeypatch: pytest.MonkeyPatch):
    """The PACS configured and holding the real SIIM radiograph and the dcmqi 3-slice CT."""
    import pydicom

    from pipelines.pacs import PacsEndpoint, send
    from tests.conftest import SAMPLES, require_samples
    from tests.support.orthanc_server import PASSWORD, USER

    require_samples()
    cxr = pydicom.dcmread(SAMPLES / "cxr" / "siim_sample.dcm")
    ct = [pydicom.dcmread(p) for p in sorted((SAMPLES / "dicom" / "dcmqi" / "ct-3slice").glob("*.dcm"))]
    send(PacsEndpoint(pacs.dicomweb_url, USER, PASSWORD), [cxr, *ct])
    monkeypatch.setenv("PACS_DICOMWEB_URL", pacs.dicomweb_url)
    return pacs, cxr, ct


def test_the_pacs_page_lists_the_studies_by_keyed_patient_never_by_name(untrained_env, filled) -> None:
    _, cxr, ct = filled
    at = new_app()
    at.switch_page("pages/pacs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["modalities"]) == ["CR", "CT"] and list(table["images"].astype(int)) in ([1, 3], [3, 1])
    assert all(key.startswith("pk-") for key in table["patient key"])
    shown = texts(at) + table.to_string()
    for identifier in (str(cxr.PatientName), cxr.PatientID, str(ct[0].PatientName), ct[0].PatientID):
        assert identifier not in shown
    at.selectbox(key="pacs::modality").set_value("CT").run()
    assert list(at.dataframe[0].value["modalities"]) == ["CT"]


def test_a_ct_opened_from_pacs_is_read_on_the_mri_ct_page_as_an_upload_would_be(untrained_env, filled) -> None:
    from pipelines.pacs import DicomWebResource, PacsEndpoint, find_studies, retrieve
    from tests.support.orthanc_server import PASSWORD, USER
    from ui.session import PACS_OPENED, VOLUME_TASK
    from ui.widgets.pacs_studies import CT_TASK, OpenedStudy, RetrievedFile

    pacs, _, ct = filled
    target = PacsEndpoint(pacs.dicomweb_url, USER, PASSWORD)
    [row] = find_studies(target, b"key", modality="CT")
    [files] = retrieve(DicomWebResource(target, row.study_uid), max_bytes=10**8).values()
    at = new_app()
    at.session_state[PACS_OPENED] = OpenedStudy("volume", tuple(RetrievedFile(n, d, n) for n, d in files), row)
    at.session_state[VOLUME_TASK] = CT_TASK
    at.switch_page("pages/volumes.py").run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "Opened from PACS" in said and "CT" in said and "512 x 512 x 3" in said.replace("×", "x")


def test_what_is_opened_of_a_study_its_radiograph_its_volume_never_its_reports() -> None:
    from core.errors import ReviewError
    from pipelines.pacs import StudyRow
    from tests.conftest import SAMPLES, require_samples
    from ui.widgets.pacs_studies import opening

    require_samples()
    dicom = SAMPLES / "dicom"
    ct = [(p.name, p.read_bytes()) for p in sorted((dicom / "dcmqi" / "ct-3slice").glob("*.dcm"))]
    seg = [("seg.dcm", (dicom / "dcmqi" / "seg" / "liver.dcm").read_bytes())]
    sr = [("sr.dcm", (dicom / "dcmqi" / "sr-example" / "sr.dcm").read_bytes())]

    def row(*modalities: str) -> StudyRow:
        return StudyRow("1.2.3", "2024-01-01", "", modalities, 2, 4, "pk-1")

    # A CT study with the SEG sent back into it: the CT's three slices, never the SEG.
    volume = opening(row("CT", "SEG"), {"seg-series": seg, "ct-series": ct})
    assert volume.kind == "volume" and [f.name for f in volume.files] == [name for name, _ in ct]
    film = [("cr.dcm", (SAMPLES / "cxr" / "siim_sample.dcm").read_bytes())]
    assert opening(row("CR", "SR"), {"sr-series": sr, "cr-series": film}).files[0].name == "cr.dcm"
    # A heatmap picture this app sent back into the film's study is an image, but never the film.
    import numpy as np

    from inference.dicom_out.common import part10_bytes
    from inference.dicom_out.sc import secondary_capture

    picture = secondary_capture(
        np.zeros((8, 8, 3), np.uint8),
        study_uid="1.2.3",
        patient_key="pk-1",
        description="AI heatmaps",
        identity=("run-1", "a" * 64),
        instance_number=1,
    )
    ours = [("sc.dcm", part10_bytes(picture))]
    assert opening(row("CR", "OT", "SR"), {"sc-series": ours, "cr-series": film}).files[0].name == "cr.dcm"
    with pytest.raises(ReviewError, match="holds no images"):
        opening(row("SR"), {"sr-series": sr})


def test_with_automatic_sending_a_finished_review_goes_to_pacs_by_itself(
    untrained_env, pacs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PACS_AUTO_SEND: nothing is sent while the review is unfinished; the verdict that finishes it
    sends the reader's SR, the SEG and the mask's picture in the background, the page saying so."""
    from tests.app.conftest import click_verdict
    from tests.app.test_volume_page import _grey_matter_mask, _open_mask_task, _upload_t1_and_mask
    from tests.conftest import require_samples
    from ui import resources

    require_samples()
    monkeypatch.setenv("PACS_DICOMWEB_URL", pacs.dicomweb_url)
    monkeypatch.setenv("PACS_AUTO_SEND", "1")
    at = _upload_t1_and_mask(_open_mask_task(new_app()), _grey_matter_mask())
    assert not at.exception, at.exception
    assert pacs.get("/statistics")["CountInstances"] == 0
    click_verdict(at, "Label 1", "agree", noun="structure")
    assert "Saved: Label 1 — agree. Every item judged: your SR is being sent to PACS." in texts(at)
    resources.pacs_sender().submit(lambda: None).result(timeout=120)  # queued after the send: it has finished
    tags = [pacs.get(f"/instances/{i}/simplified-tags") for i in pacs.get("/instances")]
    assert sorted(t["Modality"] for t in tags if t["Modality"] in ("SEG", "SR")) == ["SEG", "SR"]
    [picture] = [t for t in tags if t["Modality"] not in ("SEG", "SR")]
    assert picture["ImageComments"].startswith("Label 1: ")
    assert len(pacs.get("/studies")) == 1  # the volume's stand-in study, with its SEG, SR and picture
