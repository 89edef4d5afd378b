"""Exports of runs and verdicts (CSV, JSON) and a self-contained per-case HTML report.

Everything a reviewer typed is escaped for the format it goes into: HTML-escaped in the report
(a Jinja2 template, autoescaping on),
and in CSV a leading = + - @ is neutralised so a spreadsheet never runs it as a formula.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from storage.reporting import StructureVerdictFact, VerdictFact, entry_numbers
from storage.repository import ClassificationRunRecord, NoteRecord, VerdictRecord

DISCLAIMER = "Research and demonstration tool, not a cleared medical device."
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _facts_csv(facts: Sequence, fields: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for fact in facts:
        row = asdict(fact)
        row["created_at"] = fact.created_at.isoformat()
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue().encode("utf-8")


def verdicts_csv(facts: Sequence[VerdictFact]) -> bytes:
    return _facts_csv(facts, list(VerdictFact.__dataclass_fields__))


def structure_verdicts_csv(facts: Sequence[StructureVerdictFact]) -> bytes:
    """Current verdicts on segmented structures, with the volume and model each reader saw."""
    return _facts_csv(facts, list(StructureVerdictFact.__dataclass_fields__))


def _run_dict(
    run: ClassificationRunRecord,
    verdicts: Sequence[VerdictRecord],
    notes: Sequence[NoteRecord],
    names: Mapping[str, str],
) -> dict:
    # Entries numbered per reviewer within the run (storage.reporting.entry_numbers).
    numbers = entry_numbers((v.verdict_id, v.reviewer) for v in verdicts)
    note_numbers = entry_numbers((n.note_id, n.reviewer) for n in notes)
    return {
        "run_id": run.run_id,
        "case_id": run.case_id,
        "input_sha256": run.facts.input_sha256,
        "modality": run.facts.modality,
        "patient_key": run.facts.patient_key,
        "model": {"id": run.model_id, "weights_sha256": run.weights_sha256, "trained": run.trained},
        "bands_version": run.bands_version,
        "thresholds": run.thresholds,
        "device": run.device,
        "analysed_at": run.created_at.isoformat(),
        "findings": [{"label": f.label, "score": f.score, "band": f.band.value} for f in run.findings],
        "verdicts": [
            {
                "entry": numbers[v.verdict_id],
                "finding": v.item,
                "verdict": v.verdict.value,
                "reader_label": v.reader_label,
                "note": v.note,
                "reviewer": v.reviewer,
                "reviewer_name": names.get(v.reviewer, v.reviewer),
                "heatmap_method": v.cam_method,
                "replaces_entry": numbers.get(v.supersedes_id) if v.supersedes_id else None,
                "at": v.created_at.isoformat(),
            }
            for v in verdicts
        ],
        "case_notes": [
            {
                "entry": note_numbers[n.note_id],
                "note": n.note,
                "reviewer": n.reviewer,
                "reviewer_name": names.get(n.reviewer, n.reviewer),
                "replaces_entry": note_numbers.get(n.supersedes_id) if n.supersedes_id else None,
                "at": n.created_at.isoformat(),
            }
            for n in notes
        ],
    }


def runs_json(
    runs: Sequence[tuple[ClassificationRunRecord, Sequence[VerdictRecord], Sequence[NoteRecord]]],
    names: Mapping[str, str] | None = None,
    *,
    blinded_to: str | None = None,
) -> bytes:
    """Runs with their verdict and note history; ``blinded_to`` says the history holds only that
    reviewer's entries (a reader's export)."""
    document = {
        "exported_at": datetime.now(UTC).isoformat(),
        "disclaimer": DISCLAIMER,
        "verdicts_of": "everyone" if blinded_to is None else blinded_to,
        "runs": [_run_dict(run, verdicts, notes, names or {}) for run, verdicts, notes in runs],
    }
    return json.dumps(document, indent=2).encode("utf-8")


@functools.cache
def _templates() -> jinja2.Environment:
    """The report templates, autoescaped: whatever a reviewer typed is text, never markup."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _figure(data: bytes | None, caption: str, mime: str) -> dict[str, str] | None:
    if not data:
        return None
    return {"caption": caption, "mime": mime, "base64": base64.b64encode(data).decode()}


def case_report_html(
    run: ClassificationRunRecord,
    verdicts: Sequence[VerdictRecord],
    notes: Sequence[NoteRecord],
    *,
    image_png: bytes | None = None,
    heatmap_jpeg: bytes | None = None,
    heatmap_caption: str = "",
    names: Mapping[str, str] | None = None,
    blinded: bool = False,
) -> bytes:
    """A single HTML file a reviewer can open or attach: image, heatmap, findings, verdicts
    (``templates/case_report.html``). ``blinded``: the verdicts given are one reader's own, and
    the report says so."""
    shown = names or {}

    def who(identity: str) -> str:
        return shown.get(identity, identity)

    current: dict[tuple[str, str], VerdictRecord] = {}
    for v in verdicts:
        current[(v.reviewer, v.item)] = v
    findings = [
        {
            "label": f.label,
            "score": f"{f.score:.3f}" + ("" if run.trained else " (untrained)"),
            "band": f.band.value,
            "verdicts": [
                f"{who(v.reviewer)}: {v.verdict.value}"
                + (f", it is {v.reader_label}" if v.reader_label else "")
                + (f" ({v.note})" if v.note else "")
                for (_, label), v in sorted(current.items())
                if label == f.label
            ],
        }
        for f in run.ranked()
    ]
    history = [
        {
            "time": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "who": who(v.reviewer),
            "item": v.item,
            "verdict": v.verdict.value + (f": it is {v.reader_label}" if v.reader_label else ""),
            "note": v.note,
        }
        for v in verdicts
    ]
    figures = [
        f
        for f in (
            _figure(image_png, "The whole image", "image/png"),
            _figure(heatmap_jpeg, heatmap_caption, "image/jpeg"),
        )
        if f is not None
    ]
    page = (
        _templates()
        .get_template("case_report.html")
        .render(
            run=run,
            disclaimer=DISCLAIMER,
            blinded=blinded,
            figures=figures,
            findings=findings,
            case_notes=[{"who": who(n.reviewer), "text": n.note} for n in notes[-5:]],
            history=history,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        )
    )
    return page.encode("utf-8")
