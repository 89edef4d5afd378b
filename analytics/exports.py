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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from analytics.reader_study import study_calls
from core.types import Finding
from core.vocabulary import RunKind, StudyPhase
from storage.reporting import StructureVerdictFact, VerdictFact, entry_numbers
from storage.repository import ClassificationRunRecord, NoteRecord, RunRecord, SegmentationRunRecord, VerdictRecord
from storage.studies import StudyReadRecord

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


def _kind_fields(run: RunRecord) -> dict:
    """What a run of its kind showed the reader: findings with their bands, or structures with
    their volumes and the label map they were measured on."""
    if isinstance(run, ClassificationRunRecord):
        return {
            "bands_version": run.bands_version,
            "thresholds": run.thresholds,
            "findings": [{"label": f.label, "score": f.score, "band": f.band.value} for f in run.findings],
        }
    if isinstance(run, SegmentationRunRecord):
        return {
            "label_map_sha256": run.label_map_sha256,
            "shape": list(run.shape),
            "spacing_mm": list(run.spacing),
            "params": run.params,
            "structures": [
                {
                    "name": s.name,
                    "label_values": list(s.values),
                    "voxels": s.voxels,
                    "volume_ml": s.volume_ml,
                    "longest_axial_diameter_mm": s.max_axial_extent_mm,
                    "axial_slices": [s.axial_first, s.axial_last] if s.axial_first is not None else None,
                }
                for s in run.structures
            ],
        }
    raise TypeError(f"no export for a run of kind {run.kind.value}")


def _run_dict(
    run: RunRecord,
    verdicts: Sequence[VerdictRecord],
    notes: Sequence[NoteRecord],
    names: Mapping[str, str],
) -> dict:
    # Entries numbered per reviewer within the run (storage.reporting.entry_numbers).
    numbers = entry_numbers((v.verdict_id, v.reviewer) for v in verdicts)
    note_numbers = entry_numbers((n.note_id, n.reviewer) for n in notes)
    item = "finding" if run.kind is RunKind.CLASSIFICATION else "structure"
    return {
        "run_id": run.run_id,
        "case_id": run.case_id,
        "kind": run.kind.value,
        "input_sha256": run.facts.input_sha256,
        "modality": run.facts.modality,
        "patient_key": run.facts.patient_key,
        "model": {"id": run.model_id, "weights_sha256": run.weights_sha256, "trained": run.trained},
        "device": run.device,
        "analysed_at": run.created_at.isoformat(),
        **_kind_fields(run),
        "verdicts": [
            {
                "entry": numbers[v.verdict_id],
                item: v.item,
                "verdict": v.verdict.value,
                **({"reader_label": v.reader_label, "heatmap_method": v.cam_method} if item == "finding" else {}),
                "note": v.note,
                "reviewer": v.reviewer,
                "reviewer_name": names.get(v.reviewer, v.reviewer),
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
    runs: Sequence[tuple[RunRecord, Sequence[VerdictRecord], Sequence[NoteRecord]]],
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


@dataclass(frozen=True)
class Picture:
    """A picture the report carries: its bytes, what it shows, and its type."""

    data: bytes
    caption: str
    mime: str = "image/png"


def _item_rows(run: RunRecord, current: Mapping[tuple[str, str], VerdictRecord], who) -> tuple[list[str], list[dict]]:
    """The report's table: the run's findings (score, band) or structures (volume, diameter,
    slices), each with the current verdicts on it. Returns (column names, rows)."""

    def verdicts_on(item: str) -> list[str]:
        return [
            f"{who(v.reviewer)}: {v.verdict.value}"
            + (f", it is {v.reader_label}" if v.reader_label else "")
            + (f" ({v.note})" if v.note else "")
            for (_, name), v in sorted(current.items())
            if name == item
        ]

    if isinstance(run, ClassificationRunRecord):
        untrained = "" if run.trained else " (untrained)"
        return ["finding", "score", "band"], [
            {"cells": [f.label, f"{f.score:.3f}{untrained}", f.band.value], "verdicts": verdicts_on(f.label)}
            for f in run.ranked()
        ]
    if isinstance(run, SegmentationRunRecord):
        return ["structure", "volume (mL)", "longest axial diameter (mm)", "axial slices"], [
            {
                "cells": [
                    s.name,
                    f"{s.volume_ml:.2f}",
                    f"{s.max_axial_extent_mm:.1f}",
                    f"{s.axial_first + 1}–{s.axial_last + 1}"
                    if s.axial_first is not None and s.axial_last is not None
                    else "absent",
                ],
                "verdicts": verdicts_on(s.name),
            }
            for s in run.structures
        ]
    raise TypeError(f"no report for a run of kind {run.kind.value}")


def _details(run: RunRecord) -> list[str]:
    """The line under the title: what produced the run, and with what."""
    details = [f"Run {run.run_id}", f"analysed {run.created_at:%Y-%m-%d %H:%M} UTC"]
    if run.kind is RunKind.UPLOADED_MASK:
        details.append(f"masks uploaded from another tool (file sha256 {run.weights_sha256})")
    else:
        details += [f"model {run.model_id}", f"weights sha256 {run.weights_sha256}"]
    if isinstance(run, ClassificationRunRecord):
        details.append(f"bands version {run.bands_version}")
    if isinstance(run, SegmentationRunRecord):
        details += [
            " x ".join(str(n) for n in run.shape) + " voxels of " + " x ".join(f"{v:g}" for v in run.spacing) + " mm",
            f"label map sha256 {run.label_map_sha256}",
        ]
    return [*details, f"modality {run.facts.modality}"]


def case_report_html(
    run: RunRecord,
    verdicts: Sequence[VerdictRecord],
    notes: Sequence[NoteRecord],
    *,
    pictures: Sequence[Picture] = (),
    names: Mapping[str, str] | None = None,
    blinded: bool = False,
) -> bytes:
    """A single HTML file a reviewer can open or attach (``templates/case_report.html``): the
    pictures, the findings with their scores and bands or the structures with their volumes,
    the current verdicts, notes and the verdict history. ``blinded``: the verdicts given are one
    reader's own, and the report says so."""
    shown = names or {}

    def who(identity: str) -> str:
        return shown.get(identity, identity)

    current: dict[tuple[str, str], VerdictRecord] = {}
    for v in verdicts:
        current[(v.reviewer, v.item)] = v
    columns, rows = _item_rows(run, current, who)
    segmentation = isinstance(run, SegmentationRunRecord)
    if run.trained:
        warning = None
    elif segmentation:
        warning = "UNTRAINED WEIGHTS: these masks and volumes are meaningless, for interface testing only."
    else:
        warning = "UNTRAINED WEIGHTS: scores are meaningless, for interface testing only."
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
    page = (
        _templates()
        .get_template("case_report.html")
        .render(
            run=run,
            what="segmentation" if segmentation else "AI review",
            details=_details(run),
            disclaimer=DISCLAIMER,
            untrained_warning=warning,
            blinded=blinded,
            figures=[
                {"caption": p.caption, "mime": p.mime, "base64": base64.b64encode(p.data).decode()} for p in pictures
            ],
            item_noun="structure" if segmentation else "finding",
            columns=columns,
            rows=rows,
            case_notes=[{"who": who(n.reviewer), "text": n.note} for n in notes[-5:]],
            history=history,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        )
    )
    return page.encode("utf-8")


def study_calls_csv(
    reads: Sequence[StudyReadRecord],
    ai: Mapping[int, Sequence[Finding]],
    findings: Sequence[str],
    normal_labels: Sequence[str] = (),
) -> bytes:
    """A reader study's calls, one row per reader, case and finding: both reads, the reference, the
    AI's call and each read's seconds, for a statistician's own analysis."""
    seconds = {(r.reviewer, r.run_id, r.phase): r.seconds for r in reads}
    calls, _ = study_calls(reads, ai, findings, normal_labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "reader",
            "run",
            "finding",
            "without_ai",
            "with_ai",
            "reference",
            "ai_call",
            "seconds_without_ai",
            "seconds_with_ai",
        ]
    )
    for c in calls:
        writer.writerow(
            [
                _cell(c.reader),
                c.run_id,
                _cell(c.finding),
                c.unaided.value,
                c.aided.value,
                c.reference.value if c.reference else "",
                c.ai.value if c.ai else "",
                f"{seconds[(c.reader, c.run_id, StudyPhase.UNAIDED)]:.1f}",
                f"{seconds[(c.reader, c.run_id, StudyPhase.AIDED)]:.1f}",
            ]
        )
    return buffer.getvalue().encode("utf-8")
