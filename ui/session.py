"""Session-state and widget keys, in one place: the widgets build them here and the tests drive the
widgets by the same functions (who the reviewer is: ``ui.identity``)."""

from __future__ import annotations

from collections.abc import Callable

REVIEWER = "reviewer_name"  # plain session key: survives pages that do not draw the sidebar
REVIEWER_INPUT = "reviewer_name_input"
RUN_IDS = "stored_run_ids"
CAM_METHOD_PREFERENCE = "cam_method_preference"  # the reader's last CAM method, for the next case
REVIEW_MODEL_KEY = "review::model"  # the chest X-ray page's model, where a site registered several
TTA_KEY = "review::tta"  # the chest X-ray page's test-time augmentation switch


def cam_method_key(input_sha256: str) -> str:
    """The CAM method list of one case."""
    return f"cam_method::{input_sha256}"


# --- Widget keys that the pages build and the tests drive: built here alone, never as literals. ---


def selected_key(scope: str, noun: str, run_id: int) -> str:
    """The verdict panel's selected item (``noun``: finding or structure)."""
    return f"{scope}::{noun}::selected::{run_id}"


def verdict_key(scope: str, noun: str, run_id: int, item: str, verdict: str) -> str:
    """One verdict button of one item."""
    return f"{scope}::{noun}::{run_id}::{item}::{verdict}"


def reader_label_key(scope: str, run_id: int, item: str, label: str) -> str:
    """The "It is: <label>" button after a Disagree on ``item`` (exclusive classes)."""
    return f"{scope}::reader_label::{run_id}::{item}::{label}"


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


def dicom_seg_key(scope: str, run_id: int) -> str:
    """The "Download the masks as DICOM SEG" button of a segmentation run."""
    return f"{scope}::dicom_seg::{run_id}"


def dicom_sr_key(scope: str, run_id: int) -> str:
    """The "Download my verdicts as DICOM SR" button of a case."""
    return f"{scope}::dicom_sr::{run_id}"


def case_report_key(scope: str, run_id: int) -> str:
    """The "Download case report (HTML)" button of a segmentation run."""
    return f"{scope}::case_report::{run_id}"


def pacs_send_key(scope: str, run_id: int) -> str:
    """The "Send ... to PACS" button of a case."""
    return f"{scope}::pacs_send::{run_id}"


def pacs_result_key(scope: str, run_id: int) -> str:
    """What the PACS said to the last send: (ok, message)."""
    return f"{scope}::pacs_result::{run_id}"


def case_note_key(scope: str, run_id: int, reviewer: str) -> str:
    return f"{scope}::case_note::{run_id}::{reviewer}"


def case_note_save_key(scope: str, run_id: int) -> str:
    return f"{scope}::save_case_note::{run_id}"


def radiograph_answer_key(input_sha256: str, kind: str = "") -> str:
    """The reader's answer to "is this a frontal chest radiograph?" (or, with ``kind``, another
    kind of image a model reads) for one PNG or JPEG."""
    return f"review::what_it_is::{kind + '::' if kind else ''}{input_sha256}"


def radiograph_button_key(input_sha256: str, answer: str, kind: str = "") -> str:
    """The yes or no button of that question."""
    return f"{radiograph_answer_key(input_sha256, kind)}::{answer}"


def _prefixed(prefix: str) -> Callable[[object], str]:
    """A key per value of one thing (a run, a case, a model): ``prefix::value``."""

    def key(value: object) -> str:
        return f"{prefix}::{value}"

    return key


start_shap_key: Callable[[int], str] = _prefixed("start_shap")  # by run id
compare_cams_key: Callable[[str], str] = _prefixed("compare_cams")  # by the input's sha256
prior_key: Callable[[int], str] = _prefixed("prior")  # the case page's prior switch of a radiograph run
prior_volume_key: Callable[[int], str] = _prefixed("prior_volume")  # ... of a segmentation run
audit_key: Callable[[int], str] = _prefixed("audit")  # by case id
volume_upload_key: Callable[[str], str] = _prefixed("volume_upload")  # the MRI/CT page's uploader per task
PACS_OPENED = "pacs::opened"  # the study opened from PACS for review (ui.widgets.pacs_studies.OpenedStudy)
PACS_TO_PAGE = "pacs::to_page"  # the page that reviews it, switched to once it is retrieved
PACS_ERROR = "pacs::error"  # what the PACS said when the study could not be retrieved
PACS_TABLE = "pacs::studies"  # the PACS studies table (its row selection)
VOLUME_TASK = "volume_task"  # the MRI/CT page's "What to review"
CT_TASK = "Whole-body CT structures"  # the MRI/CT page's mode for a CT through the whole-body network
MASK_TASK = "A mask from another tool"  # the MRI/CT page's mode for a label map made elsewhere
MASK_UPLOAD = "mask_upload"  # ... that label map
LEGEND_UPLOAD = "legend_upload"  # ... and its legend
SLICE_UPLOAD = "slice_upload"  # ... the brain MRI slice to classify
channel_key: Callable[[str], str] = _prefixed("channel")  # which upload is MRI channel t1, t1c, t2 or flair
segment_key: Callable[[str], str] = _prefixed("segment")  # by model id
untrained_key: Callable[[str], str] = _prefixed("untrained")  # runs a model on labelled untrained weights
slice_key: Callable[[str], str] = _prefixed("vv::slice")  # the server-rendered scroller's slice per plane


VIEW_KEY = "vv::view"  # the server-rendered scroller's plane
NEXT_SLICE_KEY = "vv::next"
PREVIOUS_SLICE_KEY = "vv::prev"


# A band proposal from the analytics page's site calibration, for the Settings page's band editor to
# start from: {"source": what it was fitted on, "findings": {finding: {low, high, critical}}}.
BANDS_PROPOSAL = "bands_proposal"

# --- The reader-study page ---
STUDY_MODE = "study::mode"  # read / set up / results
STUDY_CHOSEN = "study::chosen"  # the study being read or summarised
STUDY_NAME = "study::name"  # the set-up form's fields
STUDY_MODEL = "study::model"
STUDY_CASES = "study::cases"
STUDY_CREATE = "study::create"


def study_call_key(study_id: int, run_id: int, phase: str, finding: str) -> str:
    """A reader's call on one finding of one case in one phase of a study."""
    return f"study::call::{study_id}::{run_id}::{phase}::{finding}"


def study_submit_key(study_id: int, run_id: int, phase: str) -> str:
    return f"study::submit::{study_id}::{run_id}::{phase}"


def study_started_key(study_id: int, run_id: int, phase: str, reviewer: str) -> str:
    """When this reader was first shown this case in this phase (the start of the read's time)."""
    return f"study::started::{study_id}::{run_id}::{phase}::{reviewer}"


def study_close_key(study_id: int) -> str:
    return f"study::close::{study_id}"


def study_heatmap_key(study_id: int, run_id: int) -> str:
    """Which finding's heatmap the reader sees once the AI is shown."""
    return f"study::heatmap::{study_id}::{run_id}"


def study_form_key(study_id: int, run_id: int, phase: str) -> str:
    return f"study::form::{study_id}::{run_id}::{phase}"


def study_adjudicate_case_key(study_id: int) -> str:
    return f"study::adjudicate_case::{study_id}"


def study_findings_key(model_id: str) -> str:
    """The set-up form's findings, per model (each model has its own)."""
    return f"study::findings::{model_id}"


def study_viewer_key(run_id: int) -> str:
    return f"study::viewer::{run_id}"


def similar_toggle_key(scope: str, run_id: int) -> str:
    """The "similar reviewed cases" switch under a case."""
    return f"{scope}::similar::{run_id}"


def similar_table_key(scope: str, run_id: int) -> str:
    return f"{scope}::similar_table::{run_id}"


def anomaly_toggle_key(scope: str, run_id: int) -> str:
    """The "anomaly map against this site's normals" switch under a case."""
    return f"{scope}::anomaly::{run_id}"
