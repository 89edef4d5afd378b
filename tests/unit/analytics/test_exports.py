from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from analytics import exports
from core.types import CaseFacts, Finding
from core.vocabulary import Band, RunKind, Verdict
from storage.reporting import VerdictFact
from storage.repository import ClassificationRunRecord, NoteRecord, VerdictRecord

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"


def run(trained: bool = False) -> ClassificationRunRecord:
    return ClassificationRunRecord(
        run_id=7,
        case_id=3,
        kind=RunKind.CLASSIFICATION,
        facts=CaseFacts("a" * 64, "dicom", "CR", "PA", "CHEST", "pk-0123"),
        model_id="xrv-densenet121-res224-all",
        weights_sha256="b" * 64,
        trained=trained,
        bands_version="v1",
        thresholds={"Effusion": {"low": 0.35, "high": 0.5, "critical": 0.8}},
        cam_method="Grad-CAM",
        device="cpu",
        timing_ms=90.0,
        created_at=NOW,
        findings=(Finding("Effusion", 0.83, Band.CRITICAL),),
    )


def verdict(note: str = XSS, reviewer: str = "Dr <b>X</b>") -> VerdictRecord:
    return VerdictRecord(1, 7, "Effusion", Verdict.DISAGREE, note, reviewer, "Grad-CAM", None, NOW)


def test_html_report_escapes_everything_typed_and_labels_untrained() -> None:
    page = exports.case_report_html(
        run(), [verdict()], [NoteRecord(1, 7, XSS, "Dr A", None, NOW)], pictures=[exports.Picture(b"\x89PNGfake", "x")]
    ).decode()
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<b>X</b>" not in page
    assert "UNTRAINED WEIGHTS" in page and "0.830 (untrained)" in page
    assert "not a cleared medical device" in page and "data:image/png;base64," in page
    assert "b" * 64 in page and "v1" in page


def test_csv_neutralises_formulas_and_keeps_every_field() -> None:
    fact = VerdictFact(
        1,
        7,
        3,
        "Effusion",
        0.83,
        Band.CRITICAL,
        "m",
        "w",
        True,
        "v1",
        "Dr A",
        Verdict.AGREE,
        '=HYPERLINK("http://evil")',
        NOW,
    )
    rows = list(csv.DictReader(io.StringIO(exports.verdicts_csv([fact]).decode())))
    assert rows[0]["note"].startswith("'=") and rows[0]["trained"] == "True" and rows[0]["bands_version"] == "v1"
    assert (rows[0]["band"], rows[0]["verdict"]) == ("critical", "agree"), "the enums' values, as stored"


def test_json_export_has_runs_findings_and_the_full_history() -> None:
    document = json.loads(exports.runs_json([(run(trained=True), [verdict("ok", "Dr A")], [])]))
    (entry,) = document["runs"]
    assert entry["model"] == {"id": "xrv-densenet121-res224-all", "weights_sha256": "b" * 64, "trained": True}
    assert entry["findings"] == [{"label": "Effusion", "score": 0.83, "band": "critical"}]
    assert entry["verdicts"][0]["verdict"] == "disagree" and entry["patient_key"] == "pk-0123"
    assert "disclaimer" in document


def test_json_export_numbers_each_readers_entries_from_one() -> None:
    """A reader's export holds their own entries only; numbered by database id, its gaps told how
    much the others had written (ids 3 and 9 here: five entries by others in between)."""
    first = VerdictRecord(3, 7, "Effusion", Verdict.DISAGREE, "", "Dr A", "Grad-CAM", None, NOW)
    changed = VerdictRecord(9, 7, "Effusion", Verdict.AGREE, "", "Dr A", "Grad-CAM", 3, NOW)
    note = NoteRecord(12, 7, "seen", "Dr A", None, NOW)
    document = json.loads(exports.runs_json([(run(), [first, changed], [note])], blinded_to="Dr A"))
    (entry,) = document["runs"]
    assert [(v["entry"], v["replaces_entry"]) for v in entry["verdicts"]] == [(1, None), (2, 1)]
    assert [n["entry"] for n in entry["case_notes"]] == [1]


def test_a_segmentation_exports_its_structures_volumes_and_verdict_history(tmp_path) -> None:
    """Every run kind is in the JSON export and has a case report: a segmentation's structures with
    their volumes and slices, each reader's verdicts and their history, typed text escaped, and the
    untrained masks called meaningless."""
    from storage import repository
    from storage.db import open_database
    from tests.unit.storage.test_segmentation_storage import FACTS as VOLUME
    from tests.unit.storage.test_segmentation_storage import segmentation

    sessions = open_database(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    with sessions.begin() as s:
        stored = repository.store_segmentation(s, VOLUME, segmentation(), actor="Dr A")
        repository.record_verdict(s, stored.run_id, "Tumour", Verdict.DISAGREE, "Dr A", XSS)
        repository.record_verdict(s, stored.run_id, "Tumour", Verdict.AGREE, "Dr A", "on second look")
        repository.record_verdict(s, stored.run_id, "Liver", Verdict.UNSURE, "Dr B", "")
    with sessions.begin() as s:
        run = repository.get_run(s, stored.run_id)
        history = repository.verdict_history(s, stored.run_id)
    sessions.kw["bind"].dispose()

    document = json.loads(exports.runs_json([(run, history, [])], {"Dr B": "Dr Beta"}))
    (entry,) = document["runs"]
    assert entry["kind"] == "segmentation" and entry["modality"] == "CT" and entry["patient_key"] == "pk-seg"
    assert entry["model"] == {"id": "seg-test-unet", "weights_sha256": "c" * 64, "trained": False}
    assert entry["shape"] == [6, 5, 4] and entry["spacing_mm"] == [2.0, 2.0, 3.0]
    liver, tumour, both = entry["structures"]
    assert (liver["name"], liver["label_values"], liver["voxels"], liver["axial_slices"]) == ("Liver", [1], 26, [0, 2])
    assert liver["volume_ml"] == pytest.approx(26 * 12 / 1000)  # 2 x 2 x 3 mm voxels
    assert (tumour["voxels"], both["label_values"]) == (1, [1, 2])
    assert [(v["entry"], v["structure"], v["verdict"], v["replaces_entry"]) for v in entry["verdicts"]] == [
        (1, "Tumour", "disagree", None),
        (2, "Tumour", "agree", 1),
        (1, "Liver", "unsure", None),
    ]
    assert entry["verdicts"][2]["reviewer_name"] == "Dr Beta" and "heatmap_method" not in entry["verdicts"][0]

    page = exports.case_report_html(
        run, history, [], pictures=[exports.Picture(b"\x89PNGfake", "Tumour: 0.01 mL, axial slice 2 of 4")]
    ).decode()
    assert (
        "Case 1: segmentation report" in page and "UNTRAINED WEIGHTS: these masks and volumes are meaningless" in page
    )
    assert "<th>structure</th><th>volume (mL)</th><th>longest axial diameter (mm)</th><th>axial slices</th>" in page
    assert "<td>Liver</td><td>0.31</td>" in page and "<td>1–3</td>" in page  # slices counted from 1, as shown
    assert "Dr A: agree (on second look)" in page and "Dr B: unsure" in page
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page  # kept in the history, escaped
    assert "data:image/png;base64," in page and "Tumour: 0.01 mL, axial slice 2 of 4" in page
    assert "label map sha256 " + run.label_map_sha256 in page and "6 x 5 x 4 voxels of 2 x 2 x 3 mm" in page
