"""Session-state keys used by more than one page, in one place."""

from __future__ import annotations

REVIEWER = "reviewer_name"  # plain session key: survives pages that do not draw the sidebar
REVIEWER_INPUT = "reviewer_name_input"
ALLOW_UNTRAINED = "allow_untrained"
RUN_IDS = "stored_run_ids"
CAM_METHOD_KEY = "cam_method"


def reviewer() -> str:
    """The identity stored with verdicts: the signed-in account, else the typed name (open mode)."""
    from ui.identity import current_reviewer

    who = current_reviewer()
    return who.identity if who else ""
