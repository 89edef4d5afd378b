"""The reader's own DICOM SR of a case (TID 1500: the AI's results and their verdicts), to download
or to send to the department's PACS (with the case's DICOM SEGs) where one is configured."""

from __future__ import annotations

import logging

import streamlit as st

from core.errors import ReviewError
from core.review_rules import reviewed_structures
from core.settings import load_settings
from inference.dicom_out.common import part10_bytes
from inference.models.loader import LoadedModel
from pipelines.dicom_export import export_case, send_reader_results
from storage import audit, repository
from storage.db import session_scope
from ui import database, models, resources
from ui.downloads import export_button
from ui.identity import reviewer
from ui.session import dicom_sr_key, pacs_result_key, pacs_send_key

log = logging.getLogger(__name__)


def reader_sr_button(case_id: int, run_id: int, scope: str, *, masks: bool = False) -> None:
    """A download of this reader's SR of the case, once they have given a verdict on the run, and
    where a PACS is configured, a button sending it there (with the case's SEGs: ``masks``)."""
    who = reviewer()
    if not who:
        return
    with database.transaction() as session:
        judged = bool(repository.current_verdicts(session, run_id, who))
    if not judged:
        st.caption("Your verdicts can be downloaded as a DICOM SR (for PACS) once you have given one.")
        return
    store = resources.image_store()

    def build(session) -> bytes:
        [sr] = export_case(session, store, case_id, reader=who).srs.values()
        return part10_bytes(sr)

    if load_settings().pacs_url:
        st.button(
            "Send my verdicts (SR) and the masks (SEG) to PACS" if masks else "Send my verdicts (SR) to PACS",
            key=pacs_send_key(scope, run_id),
            on_click=_send_to_pacs,
            args=(case_id, who, scope, run_id),
        )
        said = st.session_state.get(pacs_result_key(scope, run_id))
        if said:
            (st.success if said[0] else st.error)(said[1])
    export_button(
        "Download my verdicts as DICOM SR",
        build,
        file_name=f"case-{case_id}-sr.dcm",
        mime="application/dicom",
        kind="dicom_sr",
        case_id=case_id,
        run_id=run_id,
        key=dicom_sr_key(scope, run_id),
    )


def _send_to_pacs(case_id: int, who: str, scope: str, run_id: int) -> None:
    """STOW-RS of this reader's SR, the case's kept SEGs and its pictures; the outcome is shown
    under the button."""
    try:
        said = (
            True,
            send_reader_results(
                database.transaction, resources.image_store(), load_settings(), case_id, who, run_id, loaded=_in_memory
            ),
        )
    except ReviewError as exc:
        said = (False, str(exc))
    st.session_state[pacs_result_key(scope, run_id)] = said


def send_when_complete(run_id: int, who: str) -> str | None:
    """With automatic sending configured (PACS_AUTO_SEND, or ``auto_send`` in the secrets' [pacs]),
    once ``who`` has judged every item of the run under review: their SR, the case's SEGs and its
    pictures go to the PACS in the background (the page does not wait for the PACS), sent again
    after each later change. Returns what the reader is told, or None when nothing is sent. A
    failure is logged and audited; the case page's button sends by hand."""
    settings = load_settings()
    if not (settings.pacs_auto_send and settings.pacs_url):
        return None
    with database.transaction() as session:
        run = repository.get_run(session, run_id)
        judged = {v.item for v in repository.current_verdicts(session, run_id, who)}
    if run is None or not _complete(run, judged):
        return None
    sessions, store = resources.database(), resources.image_store()  # bound here: the send runs in another thread
    model = _in_memory(run.model_id) if isinstance(run, repository.ClassificationRunRecord) else None

    def send_in_background() -> None:
        try:
            send_reader_results(
                lambda: session_scope(sessions),
                store,
                settings,
                run.case_id,
                who,
                run_id,
                "automatically",
                loaded=lambda model_id: model if model is not None and model.spec.model_id == model_id else None,
            )
        except ReviewError as exc:
            log.warning("Case %d: the automatic send to PACS failed: %s", run.case_id, exc)
            with session_scope(sessions) as session:
                audit.record_event(
                    session, "pacs_send_failed", who, case_id=run.case_id, run_id=run_id, reason=str(exc)
                )

    resources.pacs_sender().submit(send_in_background)
    return "Every item judged: your SR is being sent to PACS."


def _in_memory(model_id: str) -> LoadedModel | None:
    """The classifier this process keeps loaded for ``model_id``, if any: its heatmaps for the
    pictures without loading it a second time."""
    state = models.classifier_of_run(model_id)
    return state if isinstance(state, LoadedModel) else None


def _complete(run: repository.RunRecord, judged: set[str]) -> bool:
    if isinstance(run, repository.SegmentationRunRecord):
        return {m.name for m in reviewed_structures(run.structures)} <= judged
    return set(run.items) <= judged
