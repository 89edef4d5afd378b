"""The ``export`` command: a stored case as DICOM objects for PACS, from DATABASE_URL and the image store.

    python -m inference export --case ID --sr FILE.dcm|DIR/ [--seg FILE.dcm] [--sc DIR] [--reader NAME] [--stow [URL]]
        [--json]

``--sr`` writes the reader's SR (TID 1500): to FILE.dcm when the case has one reader (or --reader
names one), or one file per reader into an existing folder. ``--seg`` writes the DICOM SEG of the
case's newest segmentation run whose volume is kept. ``--sc`` writes secondary captures (each
structure's mask on its middle axial slice, each positive finding's heatmap) into a folder, for
viewers that show neither SEG nor SR. ``--stow`` sends every reader's SR, every kept
segmentation's SEG and (with ``--sc``) the captures to the PACS (STOW-RS) at URL, or at
PACS_DICOMWEB_URL; files asked for are written first, so a PACS that is down loses nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TextIO

from core.errors import ReviewError
from core.settings import load_settings


def add_commands(commands) -> None:
    export = commands.add_parser("export", help="a stored case as DICOM SR (per reader) and SEG, for PACS")
    export.add_argument("--case", type=int, required=True, help="the case number (as on the worklist)")
    export.add_argument("--sr", type=Path, help="the reader's SR: a .dcm file, or a folder for one SR per reader")
    export.add_argument("--seg", type=Path, help="the DICOM SEG of the case's newest kept segmentation")
    export.add_argument("--sc", type=Path, help="a folder for secondary captures: masks and heatmaps as pictures")
    export.add_argument("--reader", help="only this reader's SR (their name or identity key)")
    export.add_argument(
        "--stow",
        nargs="?",
        const="",
        metavar="URL",
        help="send the SRs and SEGs to the PACS over DICOMweb (STOW-RS): this URL, or PACS_DICOMWEB_URL",
    )
    export.add_argument("--json", action="store_true", help="one JSON object on one line")


def export_command(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.dicom_export import export_case
    from storage.db import open_database
    from storage.image_store import ImageStore

    if args.sr is None and args.seg is None and args.sc is None and args.stow is None:
        raise ReviewError(
            "Say what to export: --sr FILE.dcm (or a folder), --seg FILE.dcm, --sc DIR and/or --stow [URL]."
        )
    settings = load_settings()
    store = ImageStore(settings.image_store_dir, settings.image_retention_days) if settings.image_store else None
    written: list[str] = []
    with open_database(settings.database_url).begin() as session:
        exported = export_case(
            session, store, args.case, args.reader, pictures=settings if args.sc is not None else None
        )
    if args.sr is not None:
        if not exported.srs:
            raise ReviewError(
                f"Nobody has given a verdict on case {args.case} yet, so there is no reader report (SR) to write."
            )
        if args.sr.is_dir():
            targets = {name: args.sr / f"case{args.case}-sr-{_slug(name)}.dcm" for name in exported.srs}
        elif len(exported.srs) == 1:
            targets = {name: args.sr for name in exported.srs}
        else:
            raise ReviewError(
                f"Case {args.case} has verdicts from {len(exported.srs)} readers ({', '.join(exported.srs)}): "
                "give --reader NAME, or an existing folder for --sr to write one SR per reader."
            )
        for name, path in targets.items():
            _write(path, exported.srs[name])
            written.append(str(path))
    if args.seg is not None:
        if not exported.segs:
            raise ReviewError(
                f"Case {args.case} has no segmentation whose volume is kept, so there is no DICOM SEG to write."
            )
        _write(args.seg, exported.segs[max(exported.segs)])
        written.append(str(args.seg))
    if args.sc is not None:
        if not exported.captures:
            raise ReviewError(
                f"Case {args.case} has no picture to export: its image or volume is not kept, or nothing is "
                "positive and no structure has voxels."
            )
        for number, capture in enumerate(exported.captures, start=1):
            path = args.sc / f"case{args.case}-sc-{number:03d}.dcm"
            _write(path, capture)
            written.append(str(path))
    # What left the database is in the audit trail, as the app's downloads are; files first, so a
    # PACS that is down loses nothing that was asked for.
    _audit(settings, args.case, [f"DICOM via CLI: {Path(path).name}" for path in written])
    result: dict = {"case": args.case, "readers": list(exported.srs), "written": written}
    if args.stow is not None:
        from pipelines.pacs import endpoint, send

        target = endpoint(settings, args.stow or None)
        datasets = [*exported.srs.values(), *exported.segs.values(), *exported.captures]
        if not datasets:
            raise ReviewError(
                f"Case {args.case} has nothing to send yet: no reader's verdict and no kept segmentation."
            )
        sent = send(target, datasets)
        _audit(settings, args.case, [f"DICOM sent to PACS {target.url}: {sent.count} object(s)"])
        result["sent"] = {"pacs": target.url, "objects": sent.count}
    if args.json:
        out.write(json.dumps(result) + "\n")
    else:
        said = [f"written {path}" for path in written]
        if "sent" in result:
            said.append(f"{result['sent']['objects']} object(s) sent to {result['sent']['pacs']}")
        out.write(f"case {args.case}: " + ", ".join(said) + "\n")
    return 0


def _audit(settings, case_id: int, exports: list[str]) -> None:
    from storage import audit
    from storage.db import open_database

    if exports:
        with open_database(settings.database_url).begin() as session:
            for export in exports:
                audit.record_event(session, "export_made", None, case_id=case_id, export=export)


def _write(path: Path, dataset) -> None:
    from inference.masks.write import write_replacing

    write_replacing(path, lambda partial: dataset.save_as(partial, enforce_file_format=True), ".dcm")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "reader"
