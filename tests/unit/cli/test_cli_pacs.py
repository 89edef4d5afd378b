"""The CLI takes a DICOMweb study or series URL wherever it takes a file: images retrieved from a
real Orthanc (WADO-RS) go through the same readers and models as local files, and a PACS that is
down, a wrong UID or a study of several series is said in one line."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pydicom
import pytest

from cli.main import main
from tests.conftest import SAMPLES, require_samples
from tests.support.orthanc_server import PASSWORD, USER

DCMQI = SAMPLES / "dicom" / "dcmqi"


def run(*argv: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.fixture
def filled(orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Orthanc holding the real SIIM chest radiograph and the real 3-slice dcmqi CT, sent over STOW-RS."""
    from pipelines.pacs import PacsEndpoint, send

    require_samples()
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PACS_USERNAME", USER)
    monkeypatch.setenv("PACS_PASSWORD", PASSWORD)
    cxr = pydicom.dcmread(SAMPLES / "cxr" / "siim_sample.dcm")
    ct = [pydicom.dcmread(p) for p in sorted((DCMQI / "ct-3slice").glob("*.dcm"))]
    assert send(PacsEndpoint(orthanc.dicomweb_url, USER, PASSWORD), [cxr, *ct]).count == 4
    return orthanc, cxr, ct


def test_a_radiograph_and_a_ct_series_are_read_from_the_pacs_as_from_files(filled, tmp_path: Path) -> None:
    orthanc, cxr, ct = filled
    root = orthanc.dicomweb_url
    code, [result] = run("analyze", f"{root}/studies/{cxr.StudyInstanceUID}", "--allow-untrained", "--json")
    assert code == 0, result
    assert len(result["findings"]) == 18 and result["model"]["trained"] is False
    code, [local] = run("analyze", str(SAMPLES / "cxr" / "siim_sample.dcm"), "--allow-untrained", "--json")
    assert [f["score"] for f in result["findings"]] == [f["score"] for f in local["findings"]]
    _the_ai_results_go_back_unreviewed_into_the_films_study(orthanc, cxr, tmp_path)

    series = f"{root}/studies/{ct[0].StudyInstanceUID}/series/{ct[0].SeriesInstanceUID}"
    liver = str(DCMQI / "seg" / "liver.dcm")
    # The loop: measured from the PACS, and the SEG written and sent back into the CT's study.
    seg_out = str(tmp_path / "liver-seg.dcm")
    code, [measured] = run("measure", series, liver, "--json", "--seg-out", seg_out, "--stow", root)
    assert code == 0, measured
    assert measured["sent"] == {"pacs": root, "objects": 1} and measured["seg_out"] == seg_out
    code, [from_files] = run("measure", str(DCMQI / "ct-3slice"), liver, "--json")
    assert measured["volumes_ml"] == from_files["volumes_ml"] and measured["shape"] == [512, 512, 3]

    # The study now holds two series, so a volume command asks for one of them, naming both.
    code, _ = run("export", "--case", "1", "--stow")  # nothing stored in the database here: said, not sent
    assert code == 2
    from pipelines.pacs import PacsEndpoint, series_of_study

    target = PacsEndpoint(root, USER, PASSWORD)
    ours = pydicom.dcmread(seg_out)
    assert ours.PatientID.startswith("pk-") and ours.PatientID != ct[0].PatientID  # the app keeps the hash
    assert sorted(s["modality"] for s in series_of_study(target, ct[0].StudyInstanceUID)) == ["CT", "SEG"]
    # ... and PACS files it with the CT, under the patient it already holds: one study, not two.
    studies = orthanc.get("/studies?expand")
    assert len(studies) == 2  # the radiograph's and the CT's
    [ct_study] = [st for st in studies if st["MainDicomTags"]["StudyInstanceUID"] == ct[0].StudyInstanceUID]
    assert len(ct_study["Series"]) == 2 and ct_study["PatientMainDicomTags"]["PatientID"] == ct[0].PatientID
    code, [again] = run("measure", series, liver, "--json", "--stow", root)  # sent twice: stored once
    assert code == 0 and again["sent"]["objects"] == 1
    assert orthanc.get(f"/studies/{ct_study['ID']}/instances").__len__() == 4  # 3 CT slices and one SEG
    # The study's SEG (ours) is never read as its volume: the study URL gives the CT.
    code, [whole_study] = run("measure", f"{root}/studies/{ct[0].StudyInstanceUID}", liver, "--json")
    assert code == 0 and whole_study["volumes_ml"] == from_files["volumes_ml"]
    # A second image series (a copy of the CT as another series): a volume command asks for one.
    from copy import deepcopy

    from pipelines.pacs import send

    copy = [deepcopy(d) for d in ct]
    for number, dataset in enumerate(copy):
        dataset.SeriesInstanceUID = "2.25.1234567890"
        dataset.SOPInstanceUID = f"2.25.1234567890{number}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    send(target, copy)
    code, [refused] = run("measure", f"{root}/studies/{ct[0].StudyInstanceUID}", liver, "--json")
    assert code == 1 and "holds 2 series" in refused["error"] and "/series/SERIES_UID" in refused["error"]


def _the_ai_results_go_back_unreviewed_into_the_films_study(orthanc, cxr, tmp_path: Path) -> None:
    """analyze --stow: the film's findings as an SR whose observer is the model, in the film's own
    study, saying it is not reviewed and (here) untrained; valid for dciodvfy; sent twice, kept once."""
    from pipelines.pacs import DicomWebResource, PacsEndpoint, retrieve, series_of_study
    from tests.support.dicom_validator import dciodvfy_errors

    root = orthanc.dicomweb_url
    study = f"{root}/studies/{cxr.StudyInstanceUID}"
    for _ in range(2):
        code, [result, sent] = run("analyze", study, "--allow-untrained", "--json", "--stow", root)
        assert code == 0 and sent == {"sent": {"pacs": root, "objects": 1}}, sent
    target = PacsEndpoint(root, USER, PASSWORD)
    listed = series_of_study(target, cxr.StudyInstanceUID)
    assert sorted(s["modality"] for s in listed) == ["CR", "SR"]
    [sr_series] = [s["series_uid"] for s in listed if s["modality"] == "SR"]
    [[(_name, data)]] = retrieve(DicomWebResource(target, cxr.StudyInstanceUID, sr_series), 10**8).values()
    path = tmp_path / "ai-results-sr.dcm"
    path.write_bytes(data)
    assert dciodvfy_errors(path) == []
    sr = pydicom.dcmread(path)
    assert sr.SeriesDescription == "AI results SR, not reviewed untrained: meaningless"
    assert sr.PatientID == cxr.PatientID  # filed under the patient the PACS holds the film under
    text = " ".join(str(element.value) for element in sr.iterall() if element.VR != "SQ")
    assert "Device" in text and "xrv-densenet121-res224-all" in text and "Reader verdict" not in text
    for finding in result["findings"]:
        assert finding["label"] in text


def test_a_wrong_uid_a_bad_url_and_a_pacs_that_is_down_are_said_in_one_line(filled, tmp_path: Path) -> None:
    orthanc, cxr, _ = filled
    code, [missing] = run("analyze", f"{orthanc.dicomweb_url}/studies/1.2.3.999", "--allow-untrained", "--json")
    assert code == 2 and "check the study and series UIDs" in missing["error"]
    code, [bad] = run("analyze", f"{orthanc.dicomweb_url}/instances/abc", "--allow-untrained", "--json")
    assert code == 2 and "is not a DICOMweb study or series URL" in bad["error"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/dicom-web"
    code, [down] = run("analyze", f"{closed}/studies/{cxr.StudyInstanceUID}", "--allow-untrained", "--json")
    assert code == 2 and "did not answer" in down["error"]
    # --stow to a PACS that is down: the SEG asked for is written first, and nothing is lost.
    seg_out = tmp_path / "kept.dcm"
    liver = str(DCMQI / "seg" / "liver.dcm")
    code, [unsent] = run(
        "measure", str(DCMQI / "ct-3slice"), liver, "--json", "--seg-out", str(seg_out), "--stow", closed
    )
    assert code == 1 and "did not answer" in unsent["error"] and seg_out.stat().st_size > 0
