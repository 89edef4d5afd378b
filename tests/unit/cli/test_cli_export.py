"""`python -m inference export --case ID --sr ... --seg ...`: a stored case as DICOM for PACS. Each
reader's SR (TID 1500) passes dciodvfy, reads back with every verdict, note and time in it, names
the reader as the observer, references the SEG's segments, and carries only the keyed patient hash."""

from __future__ import annotations

import io
import json
import socket
from datetime import datetime
from pathlib import Path

import pydicom
import pytest

from cli.main import main
from core.types import CaseFacts, Finding, ModelIdentity, Prediction
from core.vocabulary import Band, Verdict
from tests.conftest import SAMPLES, require_samples
from tests.support.dicom_validator import dciodvfy_errors

DCMQI = SAMPLES / "dicom" / "dcmqi"
KEY = b"export-test-key-0123456789"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def run(*argv: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def _sessions():
    from core.settings import load_settings
    from storage.db import open_database

    return open_database(load_settings().database_url)


def _stored_ct_case() -> tuple[int, object]:
    """The real dcmqi CT (3 slices) with its real 5-segment SEG uploaded for review, kept in the
    store as the MRI/CT page keeps it; two readers' verdicts."""
    from core.settings import load_settings
    from inference.masks.load import load_label_map
    from inference.volume.case import case_facts, uploaded_segmentation
    from inference.volume.dicom import load_dicom_series
    from pipelines.kept_volumes import store_segmentation_run
    from storage import repository
    from storage.db import session_scope
    from storage.image_store import ImageStore

    require_samples()
    files = [(p.name, p.read_bytes()) for p in sorted((DCMQI / "ct-3slice").glob("*.dcm"))]
    volume = load_dicom_series(files, max_bytes=10**8, max_voxels=10**8, hash_key=KEY)
    mask = DCMQI / "seg" / "partial_overlaps.dcm"
    label_map = load_label_map([(mask.name, mask.read_bytes())], volume, max_bytes=10**8, max_voxels=10**8)
    segmentation = uploaded_segmentation(label_map, volume)
    settings = load_settings()
    sessions = _sessions()
    store = ImageStore(settings.image_store_dir, settings.image_retention_days)
    run_id = store_segmentation_run(
        lambda: session_scope(sessions), store, volume, case_facts(volume), segmentation, actor="Dr Ada"
    )
    with session_scope(sessions) as session:
        repository.record_verdict(
            session, run_id, "GREEN", Verdict.AGREE, "Dr Ada", note="Clear margin on all 3 slices"
        )
        repository.record_verdict(session, run_id, "ORANGE", Verdict.DISAGREE, "Dr Ada", note="Leaks into fat")
        repository.record_verdict(session, run_id, "PURPLE", Verdict.UNSURE, "Dr Bo")
        case_id = repository.get_run(session, run_id).case_id
    return case_id, volume


def _items(dataset) -> list:
    """Every content item of an SR, depth first."""
    found = []
    for item in dataset.get("ContentSequence") or []:
        found.append(item)
        found.extend(_items(item))
    return found


def _groups(sr) -> dict[str, dict[str, object]]:
    """Each measurement group by its finding / structure: {concept name: value} of its items."""
    groups = {}
    for item in _items(sr):
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeMeaning == "Measurement Group":
            said: dict[str, object] = {}
            for child in _items(item):
                name = child.ConceptNameCodeSequence[0].CodeMeaning
                if child.ValueType == "CODE":
                    said[name] = child.ConceptCodeSequence[0].CodeMeaning
                    if "ObservationDateTime" in child:
                        said[f"{name} at"] = child.ObservationDateTime
                elif child.ValueType == "TEXT":
                    said[name] = child.TextValue
                elif child.ValueType == "NUM":
                    said[name] = float(child.MeasuredValueSequence[0].NumericValue)
                elif child.ValueType == "IMAGE":
                    said[name] = (
                        child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
                        int(child.ReferencedSOPSequence[0].ReferencedSegmentNumber),
                    )
            groups[str(said["Finding"])] = said
    return groups


def test_each_readers_sr_and_the_seg_of_a_real_ct_case(site: Path) -> None:
    case_id, volume = _stored_ct_case()
    folder = site / "out"
    folder.mkdir()
    code, [result] = run(
        "export", "--case", str(case_id), "--sr", str(folder), "--seg", str(site / "seg.dcm"), "--json"
    )
    assert code == 0, result
    assert result["readers"] == ["Dr Ada", "Dr Bo"] and len(result["written"]) == 3

    seg = pydicom.dcmread(site / "seg.dcm")
    assert dciodvfy_errors(site / "seg.dcm") == []
    segment_of = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    ada_path = folder / f"case{case_id}-sr-dr-ada.dcm"
    assert dciodvfy_errors(ada_path) == []
    ada = pydicom.dcmread(ada_path)
    assert ada.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ada.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    # Filed with the CT's study, for the keyed patient only.
    assert ada.StudyInstanceUID == seg.StudyInstanceUID == volume.dicom_source.study_instance_uid
    assert ada.PatientID == volume.patient_key and b"JANCT" not in ada_path.read_bytes()
    observers = [i for i in _items(ada) if i.ConceptNameCodeSequence[0].CodeMeaning == "Person Observer Name"]
    assert [str(i.PersonName) for i in observers] == ["Dr Ada^"]

    groups = _groups(ada)
    assert set(groups) == set(segment_of)  # every structure of the run, judged or not
    green, orange, purple = groups["GREEN"], groups["ORANGE"], groups["PURPLE"]
    assert green["Reader verdict"] == "agree" and green["Comment"] == "Clear margin on all 3 slices"
    assert str(green["Reader verdict at"]).startswith(datetime.now().strftime("%Y"))
    assert orange["Reader verdict"] == "disagree" and orange["Comment"] == "Leaks into fat"
    assert "Reader verdict" not in purple  # Dr Bo's verdict is in Dr Bo's report, not Dr Ada's
    # Each structure is one segment of the SEG written with it, and carries its volume.
    assert green["Referenced Segment"] == (seg.SOPInstanceUID, segment_of["GREEN"])
    with _sessions().begin() as session:
        from storage import repository

        [run_record] = repository.runs_for_case(session, case_id)
    assert green["Volume"] == pytest.approx(run_record.structure("GREEN").volume_ml, abs=1e-4)
    assert "Model weights" not in green  # an uploaded mask is nobody's untrained output

    # highdicom reads it back as a TID 1500 report: five volumetric groups, each on its segment.
    import highdicom as hd

    report = hd.sr.srread(ada_path)
    volumetric = report.content.get_volumetric_roi_measurement_groups()
    assert len(volumetric) == 5
    assert {g.referenced_segment.referenced_sop_instance_uid for g in volumetric} == {seg.SOPInstanceUID}

    bo = pydicom.dcmread(folder / f"case{case_id}-sr-dr-bo.dcm")
    assert _groups(bo)["PURPLE"]["Reader verdict"] == "unsure" and "Reader verdict" not in _groups(bo)["GREEN"]

    # Pictures for viewers that show neither: each structure's mask on its middle axial slice.
    code, [pictures] = run("export", "--case", str(case_id), "--sc", str(site / "sc"), "--json")
    assert code == 0, pictures
    captures = sorted((site / "sc").iterdir())
    assert len(captures) == 5 and dciodvfy_errors(captures[0]) == []
    first = pydicom.dcmread(captures[0])
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and first.StudyInstanceUID == seg.StudyInstanceUID
    assert first.PatientID == volume.patient_key and first.pixel_array.shape[2] == 3
    assert {pydicom.dcmread(c).ImageComments.split(":")[0] for c in captures} == set(segment_of)

    # One file for two readers is refused with what to do; --reader picks one.
    code, [refused] = run("export", "--case", str(case_id), "--sr", str(site / "one.dcm"), "--json")
    assert code == 2 and "Dr Ada, Dr Bo" in refused["error"] and "--reader" in refused["error"]
    code, [one] = run("export", "--case", str(case_id), "--sr", str(site / "one.dcm"), "--reader", "Dr Bo", "--json")
    assert code == 0 and one["written"] == [str(site / "one.dcm")]
    assert pydicom.dcmread(site / "one.dcm").SOPInstanceUID == bo.SOPInstanceUID  # same content, same object
    with _sessions().begin() as session:
        from sqlalchemy import text

        exports = session.execute(text("SELECT kind, case_id FROM audit_events WHERE kind = 'export_made'")).all()
    assert len(exports) == 9 and {case for _, case in exports} == {case_id}  # 3 files, 5 pictures, then 1


def test_a_chest_x_ray_case_reports_scores_bands_and_the_untrained_label(site: Path) -> None:
    from storage import repository

    prediction = Prediction(
        findings=(
            Finding("Effusion", 0.91, Band.CRITICAL),
            Finding("Pneumothorax", 0.55, Band.POSITIVE),
            Finding("Mass", 0.12, Band.NEGATIVE),
        ),
        model=ModelIdentity("xrv-densenet121-res224-all", "a" * 64, False, "cpu"),
        bands_version="site-2026-11",
        thresholds={
            label: {"low": 0.3, "high": 0.5, "critical": 0.8} for label in ("Effusion", "Pneumothorax", "Mass")
        },
        timing_ms=12.0,
    )
    with _sessions().begin() as session:
        stored = repository.store_analysis(
            session, CaseFacts("c" * 64, "png", "image", patient_key="pk-0011"), prediction, "Grad-CAM"
        )
        repository.record_verdict(session, stored.run_id, "Effusion", Verdict.AGREE, "Dr Ada", note="Large, right")
        case_id = stored.case_id
    code, [result] = run("export", "--case", str(case_id), "--sr", str(site / "cxr-sr.dcm"), "--json")
    assert code == 0, result
    path = site / "cxr-sr.dcm"
    assert dciodvfy_errors(path) == []
    sr = pydicom.dcmread(path)
    assert sr.SeriesDescription.endswith("untrained: meaningless") and sr.PatientID == "pk-0011"
    groups = _groups(sr)
    effusion = groups["Effusion"]
    assert effusion["AI score"] == pytest.approx(0.91) and effusion["Threshold band"] == "critical"
    assert effusion["Model weights"] == "Untrained (meaningless)"
    assert effusion["Reader verdict"] == "agree" and effusion["Comment"] == "Large, right"
    assert groups["Mass"]["Threshold band"] == "negative" and "Reader verdict" not in groups["Mass"]
    algorithm = [i for i in _items(sr) if i.ConceptNameCodeSequence[0].CodeMeaning == "Algorithm Parameters"]
    assert {i.TextValue for i in algorithm} >= {"trained=no (untrained: meaningless)", "bands=site-2026-11"}


def test_a_case_nobody_judged_or_that_does_not_exist_says_so_and_writes_nothing(site: Path) -> None:
    from storage import repository

    code, [missing] = run("export", "--case", "41", "--sr", str(site / "x.dcm"), "--json")
    assert code == 2 and "There is no case 41" in missing["error"]
    prediction = Prediction(
        (Finding("Mass", 0.12, Band.NEGATIVE),),
        ModelIdentity("xrv-densenet121-res224-all", "a" * 64, True, "cpu"),
        "v1",
        {"Mass": {"low": 0.3, "high": 0.5, "critical": 0.8}},
        1.0,
    )
    with _sessions().begin() as session:
        case_id = repository.store_analysis(
            session, CaseFacts("d" * 64, "png", "image"), prediction, "Grad-CAM"
        ).case_id
    code, [unread] = run("export", "--case", str(case_id), "--sr", str(site / "x.dcm"), "--json")
    assert code == 2 and f"Nobody has given a verdict on case {case_id} yet" in unread["error"]
    code, [no_seg] = run("export", "--case", str(case_id), "--seg", str(site / "x.dcm"), "--json")
    assert code == 2 and "no segmentation whose volume is kept" in no_seg["error"]
    assert not (site / "x.dcm").exists()


def test_the_case_goes_to_a_real_pacs_once_and_a_pacs_that_is_down_loses_nothing(
    site: Path, orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    pacs = orthanc
    from pipelines.pacs import PacsEndpoint, series_of_study
    from tests.support.orthanc_server import PASSWORD, USER

    case_id, volume = _stored_ct_case()
    folder = site / "out"
    folder.mkdir()
    monkeypatch.setenv("PACS_USERNAME", USER)

    # Down: the files asked for are written, nothing is sent, and the message says what to do.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/dicom-web"
    code, [down] = run(
        "export",
        "--case",
        str(case_id),
        "--sr",
        str(folder),
        "--seg",
        str(site / "seg.dcm"),
        "--stow",
        closed,
        "--json",
    )
    assert code == 2 and "did not answer" in down["error"] and "send them again when the PACS is back" in down["error"]
    assert sorted(p.name for p in folder.iterdir()) == [f"case{case_id}-sr-dr-ada.dcm", f"case{case_id}-sr-dr-bo.dcm"]
    assert (site / "seg.dcm").is_file()

    # Wrong password: refused, with what to check.
    monkeypatch.setenv("PACS_DICOMWEB_URL", pacs.dicomweb_url)
    monkeypatch.setenv("PACS_PASSWORD", "not-the-password")
    code, [refused] = run("export", "--case", str(case_id), "--stow", "--json")
    assert (
        code == 2 and "refused the credentials (HTTP 401)" in refused["error"] and "PACS_PASSWORD" in refused["error"]
    )
    assert pacs.get("/statistics")["CountInstances"] == 0

    # Back, with the right password: both readers' SRs and the SEG, in the CT's own study.
    monkeypatch.setenv("PACS_PASSWORD", PASSWORD)
    code, [sent] = run("export", "--case", str(case_id), "--stow", "--json")
    assert code == 0, sent
    assert sent["sent"] == {"pacs": pacs.dicomweb_url, "objects": 3}
    study = volume.dicom_source.study_instance_uid
    listed = series_of_study(PacsEndpoint(pacs.dicomweb_url, USER, PASSWORD), study)
    assert sorted(s["modality"] for s in listed) == ["SEG", "SR", "SR"]
    assert any(s["description"].startswith(f"AI review SR case {case_id} by Dr Ada") for s in listed)
    [orthanc_study] = pacs.get("/studies?expand")
    assert orthanc_study["MainDicomTags"]["StudyInstanceUID"] == study
    assert orthanc_study["PatientMainDicomTags"]["PatientID"] == volume.patient_key  # the keyed hash only
    # Sending again stores nothing twice: the objects' UIDs derive from what they hold.
    code, _ = run("export", "--case", str(case_id), "--stow", "--json")
    assert code == 0 and pacs.get("/statistics")["CountInstances"] == 3


def test_a_radiographs_heatmaps_go_as_pictures_labelled_untrained(site: Path) -> None:
    """The real SIIM film analysed and kept as the review page does; each positive or critical
    finding's Grad-CAM over the whole film becomes a secondary capture in the film's own study."""
    from core.deid import load_or_create_key
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.models.loader import load_model
    from inference.models.registry import CXR_DENSENET
    from pipelines.analyze import analyze
    from storage import repository
    from storage.image_store import ImageStore

    require_samples()
    settings = load_settings()
    film = SAMPLES / "cxr" / "siim_sample.dcm"
    image = load_image(
        film.read_bytes(),
        film.name,
        max_bytes=10**8,
        max_pixels=10**8,
        hash_key=load_or_create_key(settings.patient_key_file),
    )
    loaded = load_model(CXR_DENSENET, settings, allow_untrained=True)
    analysis = analyze(loaded, image, load_band_config(settings.bands_file))
    ImageStore(settings.image_store_dir, settings.image_retention_days).put_image(image)
    with _sessions().begin() as session:
        case_id = repository.store_analysis(session, image.facts, analysis.prediction, "Grad-CAM").case_id
    code, [result] = run("export", "--case", str(case_id), "--sc", str(site / "sc"), "--json")
    assert code == 0, result
    positive = [f for f in analysis.prediction.findings if f.band.value in ("positive", "critical")]
    captures = sorted((site / "sc").iterdir())
    assert positive and len(captures) == min(len(positive), 6)  # the top-ranked six at most
    assert dciodvfy_errors(captures[0]) == []
    picture = pydicom.dcmread(captures[0])
    assert picture.StudyInstanceUID == pydicom.dcmread(film).StudyInstanceUID  # filed with the film
    assert picture.SeriesDescription.endswith("untrained: meaningless") and "Grad-CAM for" in picture.ImageComments
    assert list(picture.PatientOrientation) == ["L", "F"]
