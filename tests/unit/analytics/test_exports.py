from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

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
        run(), [verdict()], [NoteRecord(1, 7, XSS, "Dr A", None, NOW)], image_png=b"\x89PNGfake"
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
