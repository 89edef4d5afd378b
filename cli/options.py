"""Options the CLI's commands share."""

from __future__ import annotations

import argparse


def allow_untrained_option(parser: argparse.ArgumentParser, outputs: str) -> None:
    """``--allow-untrained``: run on untrained weights when none are installed, said in the output;
    ``outputs`` names what is then meaningless (scores, masks)."""
    parser.add_argument(
        "--allow-untrained",
        action="store_true",
        help=f"run with untrained weights when none are installed ({outputs} are meaningless)",
    )
