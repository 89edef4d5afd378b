"""Session-state keys used by more than one page, in one place (who the reviewer is: ``ui.identity``)."""

from __future__ import annotations

REVIEWER = "reviewer_name"  # plain session key: survives pages that do not draw the sidebar
REVIEWER_INPUT = "reviewer_name_input"
RUN_IDS = "stored_run_ids"
CAM_METHOD_PREFERENCE = "cam_method_preference"  # the reader's last CAM method, for the next case


def cam_method_key(input_sha256: str) -> str:
    """The CAM method list of one case."""
    return f"cam_method::{input_sha256}"
