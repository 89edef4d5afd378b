"""``calibrate``: site calibration from the stored verdicts, per finding, as the analytics page shows it.

    python -m inference calibrate [--model ID] [--target-sensitivity 0.9] [--include-untrained] [--json]

Reads DATABASE_URL. Nothing is changed: the proposed thresholds are for an admin to review and
save as a new bands version.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TextIO

from cli.options import from_database, stored_runs_options
from core.errors import ReviewError


def add_commands(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="per finding: calibration against the readers' verdicts and proposed band thresholds"
    )
    stored_runs_options(calibrate, "one model's findings (default: every model with verdicts)")
    calibrate.add_argument(
        "--target-sensitivity",
        type=float,
        default=0.9,
        help="the share of present cases the high threshold keeps at or above it (default 0.9)",
    )
    calibrate.add_argument("--json", action="store_true", help="one JSON object per line per finding")


def calibrate_command(args: argparse.Namespace, out: TextIO) -> int:
    from analytics.calibration import calibrate
    from storage import reporting

    if not 0.5 <= args.target_sensitivity < 1.0:
        raise ReviewError(f"--target-sensitivity must be at least 0.5 and below 1, got {args.target_sensitivity}.")
    facts = from_database(
        lambda session: reporting.current_verdict_facts(
            session, model_id=args.model, include_untrained=args.include_untrained
        )
    )
    results = calibrate(facts, target_sensitivity=args.target_sensitivity)
    if not results:
        raise ReviewError(
            "No verdict gives a reader label yet (an Agree or Disagree on a negative, positive or critical band)"
            + ("" if args.include_untrained else "; runs on untrained weights are left out unless --include-untrained")
            + "."
        )
    for result in results:
        if args.json:
            out.write(json.dumps(dataclasses.asdict(result)) + "\n")
            continue
        out.write(f"{result.model_id} · {result.finding}: {result.cases} case(s), {result.present} present")
        if result.why_not:
            out.write(f" — {result.why_not}\n")
            continue
        out.write(
            f"\n  ECE {result.ece:.3f}; after temperature {result.temperature:.2f}: {result.ece_temperature:.3f}; "
            f"after isotonic: {result.ece_isotonic:.3f} (cross-fitted)\n"
        )
        if result.adjusted:
            out.write(f"  note: {result.adjusted}\n")
        for name in ("low", "high", "critical"):
            t = getattr(result, name)
            out.write(
                f"  proposed {name:<8} {t.value:.4f}  (95 % interval {t.interval[0]:.4f}–{t.interval[1]:.4f}, {t.cases} cases)\n"
            )
    return 0
