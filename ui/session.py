"""Session-state and widget keys, in one place: the widgets build them here and the tests drive the
widgets by the same functions (who the reviewer is: ``ui.identity``)."""

from __future__ import annotations

REVIEWER = "reviewer_name"  # plain session key: survives pages that do not draw the sidebar
REVIEWER_INPUT = "reviewer_name_input"
RUN_IDS = "stored_run_ids"
CAM_METHOD_PREFERENCE = "cam_method_preference"  # the reader's last CAM method, for the next case


def cam_method_key(input_sha256: str) -> str:
    """The CAM method list of one case."""
    return f"cam_method::{input_sha256}"


# --- Widget keys that the pages build and the tests drive: built here alone, never as literals. ---


def explain_key(scope: str, run_id: int) -> str:
    """The list beside the image that chooses the finding being judged (``scope``: the page)."""
    return f"{scope}::explain::{run_id}"


def selected_key(scope: str, noun: str, run_id: int) -> str:
    """The verdict panel's selected item (``noun``: finding or structure)."""
    return f"{scope}::{noun}::selected::{run_id}"


def verdict_key(scope: str, noun: str, run_id: int, item: str, verdict: str) -> str:
    """One verdict button of one item."""
    return f"{scope}::{noun}::{run_id}::{item}::{verdict}"


def parse_verdict_key(key: str) -> tuple[str, str, int, str, str] | None:
    """(scope, noun, run id, item, verdict) of a key ``verdict_key`` built; None for any other key."""
    parts = key.split("::")
    if len(parts) < 5 or parts[-1] not in ("agree", "disagree", "unsure") or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2]), "::".join(parts[3:-1]), parts[-1]


def keyboard_key(scope: str, noun: str, run_id: int, action: str) -> str:
    """A button of the bar above the panel: a verdict (agree, disagree, unsure) for the selected
    item, or a move (previous, next)."""
    return f"{scope}::keys::{noun}::{run_id}::{action}"


def verdict_row_key(scope: str, noun: str, index: int) -> str:
    """The container of one item's row (the browser sees it as the class ``st-key-<key>``)."""
    return f"{scope}-{noun}-verdict-{index}"


def note_text_key(scope: str, noun: str, run_id: int, reviewer: str) -> str:
    """The note box on the selected item, per reviewer (a new reviewer starts with an empty box)."""
    return f"{scope}::{noun}_note_text::{run_id}::{reviewer}"


def note_save_key(scope: str, noun: str, run_id: int) -> str:
    return f"{scope}::{noun}_note_save::{run_id}"


def case_note_key(scope: str, run_id: int, reviewer: str) -> str:
    return f"{scope}::case_note::{run_id}::{reviewer}"


def case_note_save_key(scope: str, run_id: int) -> str:
    return f"{scope}::save_case_note::{run_id}"


def radiograph_answer_key(input_sha256: str) -> str:
    """The reader's answer to "is this a frontal chest radiograph?" for one PNG or JPEG."""
    return f"review::what_it_is::{input_sha256}"


def radiograph_button_key(input_sha256: str, answer: str) -> str:
    """The yes or no button of that question."""
    return f"{radiograph_answer_key(input_sha256)}::{answer}"


def start_shap_key(run_id: int) -> str:
    return f"start_shap::{run_id}"


def compare_cams_key(input_sha256: str) -> str:
    return f"compare_cams::{input_sha256}"


def prior_key(run_id: int) -> str:
    """The case page's "compare with a prior" switch of a radiograph."""
    return f"prior::{run_id}"


def prior_volume_key(run_id: int) -> str:
    """The case page's "compare with a prior" switch of a segmentation."""
    return f"prior_volume::{run_id}"


def audit_key(case_id: int) -> str:
    return f"audit::{case_id}"


def volume_upload_key(task: str) -> str:
    """The MRI/CT page's uploader for one task ("What to review")."""
    return f"volume_upload::{task}"


def channel_key(channel: str) -> str:
    """Which uploaded file is the MRI channel ``channel`` (t1, t1c, t2, flair)."""
    return f"channel::{channel}"


def segment_key(model_id: str) -> str:
    return f"segment::{model_id}"


def untrained_key(model_id: str) -> str:
    """The button that runs ``model_id`` on labelled untrained weights."""
    return f"untrained::{model_id}"


VIEW_KEY = "vv::view"  # the server-rendered scroller's plane
NEXT_SLICE_KEY = "vv::next"
PREVIOUS_SLICE_KEY = "vv::prev"


def slice_key(view: str) -> str:
    """The server-rendered scroller's slice in ``view`` (Axial, Coronal, Sagittal)."""
    return f"vv::slice::{view}"
