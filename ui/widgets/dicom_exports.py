"""The reader's own DICOM SR of a case (TID 1500: the AI's results and their verdicts), to download
or to send to the department's PACS (with the case's DICOM SEGs) where one is configured."""

from __future__ import annotations

import streamlit as st

from core.errors import ReviewError
from core.settings import load_settings
from inference.dicom_out.common import part10_bytes
from pipelines.dicom_export import export_case
from pipelines.pacs import endpoint, send
from storage import audit, repository
from ui import database, resources
from ui.downloads import export_button
from ui.identity import reviewer
from ui.session import dicom_sr_key, pacs_result_key, pacs_send_key


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
    """STOW-RS of this reader's SR and the case's kept SEGs; the outcome is shown under the button."""
    settings = load_settings()
    store = resources.image_store()
    try:
        target = endpoint(settings)
        with database.transaction() as session:
            exported = export_case(session, store, case_id, reader=who)
        sent = send(target, [*exported.srs.values(), *exported.segs.values()])
        with database.transaction() as session:
            audit.record_event(
                session, "export_made", who, case_id=case_id, run_id=run_id, export=f"DICOM sent to PACS: {sent.count}"
            )
        said = (True, f"Sent to PACS: {sent.count} object(s) (your SR" + (" and the SEG)." if exported.segs else ")."))
    except ReviewError as exc:
        said = (False, str(exc))
    st.session_state[pacs_result_key(scope, run_id)] = said
