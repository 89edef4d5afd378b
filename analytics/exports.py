"""Exports of runs and verdicts (CSV, JSON) and a self-contained per-case HTML report.

Everything a reviewer typed is escaped for the format it goes into: HTML-escaped in the report,
and in CSV a leading = + - @ is neutralised so a spreadsheet never runs it as a formula.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime

from storage.reporting import StructureVerdictFact, VerdictFact
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
                "entry": v.verdict_id,
                "finding": v.item,
                "verdict": v.verdict.value,
                "note": v.note,
                "reviewer": v.reviewer,
                "reviewer_name": names.get(v.reviewer, v.reviewer),
                "heatmap_method": v.cam_method,
                "replaces_entry": v.supersedes_id,
                "at": v.created_at.isoformat(),
            }
            for v in verdicts
        ],
        "case_notes": [
            {
                "entry": n.note_id,
                "note": n.note,
                "reviewer": n.reviewer,
                "reviewer_name": names.get(n.reviewer, n.reviewer),
                "replaces_entry": n.supersedes_id,
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


def _img(png: bytes | None, alt: str, mime: str = "image/png") -> str:
    if not png:
        return ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(png).decode()}"><figcaption>{html.escape(alt)}</figcaption></figure>'


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
    """A single HTML file a reviewer can open or attach: image, heatmap, findings, verdicts.
    ``blinded``: the verdicts given are one reader's own, and the report says so."""
    e = html.escape
    shown = names or {}

    def who(identity: str) -> str:
        return shown.get(identity, identity)

    current: dict[tuple[str, str], VerdictRecord] = {}
    for v in verdicts:
        current[(v.reviewer, v.item)] = v
    rows = "".join(
        f"<tr><td>{e(f.label)}</td><td>{f.score:.3f}{'' if run.trained else ' (untrained)'}</td><td>{e(f.band.value)}</td>"
        f"<td>{'; '.join(e(f'{who(v.reviewer)}: {v.verdict.value}' + (f' ({v.note})' if v.note else '')) for (r, label), v in sorted(current.items()) if label == f.label)}</td></tr>"
        for f in run.ranked()
    )
    history = "".join(
        f"<tr><td>{e(v.created_at.strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{e(who(v.reviewer))}</td><td>{e(v.item)}</td>"
        f"<td>{e(v.verdict.value)}</td><td>{e(v.note)}</td></tr>"
        for v in verdicts
    )
    case_notes = "".join(f"<p><b>{e(who(n.reviewer))}</b>: {e(n.note)}</p>" for n in notes[-5:])
    scope = (
        (
            "<p>Only your own verdicts and notes are in this report (independent reads); the lead's "
            "report holds every reader's.</p>"
        )
        if blinded
        else ""
    )
    warning = (
        ""
        if run.trained
        else "<p class='warn'>UNTRAINED WEIGHTS: scores are meaningless, for interface testing only.</p>"
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Case {run.case_id} report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px}}
figure{{display:inline-block;margin:0 1em 1em 0}}img{{width:22em}}.warn{{color:#b00020;font-weight:bold}}</style></head><body>
<h1>Case {run.case_id}: AI review report</h1><p>{e(DISCLAIMER)}</p>{warning}{scope}
<p>Run {run.run_id} · analysed {e(run.created_at.strftime("%Y-%m-%d %H:%M"))} UTC · model {e(run.model_id)} · weights sha256 {e(run.weights_sha256)}
· bands version {e(run.bands_version)} · modality {e(run.facts.modality)}</p>
{_img(image_png, "The whole image")}{_img(heatmap_jpeg, heatmap_caption, "image/jpeg")}
<h2>Findings and current verdicts</h2><table><tr><th>finding</th><th>score</th><th>band</th><th>verdicts</th></tr>{rows}</table>
<h2>Case notes</h2>{case_notes or "<p>none</p>"}
<h2>Verdict history</h2><table><tr><th>time (UTC)</th><th>reviewer</th><th>finding</th><th>verdict</th><th>note</th></tr>{history}</table>
<p>Generated {e(datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))} UTC.</p></body></html>"""
    return body.encode("utf-8")
