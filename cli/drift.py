"""``drift``: the analytics page's drift check from the command line, for a scheduled job that
alerts someone: the exit status is 3 when any week after the reference drifted.

    python -m inference drift [--model ID] [--reference-weeks 4] [--include-untrained] [--json]

Reads DATABASE_URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TextIO

from cli.options import from_database, stored_runs_options
from core.errors import ReviewError

DRIFTED = 3  # the exit status when something drifted (2 is an error, as for every command)


def add_commands(commands) -> None:
    drift = commands.add_parser(
        "drift", help="week by week: the scores and inputs against the first weeks (exit status 3 when drifted)"
    )
    stored_runs_options(drift, "one model's runs (default: every model)")
    drift.add_argument(
        "--reference-weeks", type=int, default=4, help="the first weeks that are the reference (default 4)"
    )
    drift.add_argument("--json", action="store_true", help="one JSON object per line per week and series")


def drift_command(args: argparse.Namespace, out: TextIO) -> int:
    from analytics.drift import input_drift, score_drift
    from storage import reporting

    if args.reference_weeks < 1:
        raise ReviewError(f"--reference-weeks must be at least 1, got {args.reference_weeks}.")
    scores, profiles = from_database(
        lambda session: (
            reporting.classification_scores(session, model_id=args.model),
            reporting.input_profiles(session, model_id=args.model),
        )
    )
    scores = [r for r in scores if args.include_untrained or r.trained]
    profiles = [r for r in profiles if args.include_untrained or r.trained]
    weeks = score_drift(scores, args.reference_weeks) + input_drift(profiles, args.reference_weeks)
    if not weeks:
        raise ReviewError(
            "No classification run to compare yet"
            + ("" if args.include_untrained else " (runs on untrained weights are left out unless --include-untrained)")
            + "."
        )
    for week in weeks:
        if args.json:
            row = dataclasses.asdict(week) | {"week": week.week.isoformat()}
            out.write(json.dumps({k: (None if v != v else v) for k, v in row.items()}) + "\n")  # NaN is not JSON
        elif week.alert:
            out.write(f"DRIFT {week.week} {week.model_id} {week.finding}: {week.why} ({week.cases} runs)\n")
    drifted = [w for w in weeks if w.alert]
    if not args.json:
        judged = sum(w.psi is not None for w in weeks)
        out.write(f"{len(drifted)} drifted of {judged} week(s) judged after the reference weeks.\n")
    return DRIFTED if drifted else 0
