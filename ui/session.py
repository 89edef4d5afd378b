"""Session-state keys used by more than one page, in one place (who the reviewer is: ``ui.identity``)."""

from __future__ import annotations

REVIEWER = "reviewer_name"  # plain session key: survives pages that do not draw the sidebar
REVIEWER_INPUT = "reviewer_name_input"
RUN_IDS = "stored_run_ids"
CAM_METHOD_KEY = "cam_method"
