"""The reader's own DICOM SR of a case (TID 1500: the AI's results and their verdicts), for PACS."""

from __future__ import annotations

import streamlit as st

from inference.dicom_out.common import part10_bytes
from pipelines.dicom_export import export_case
from storage import repository
from ui import database, resources
from ui.downloads import export_button
from ui.identity import reviewer
from ui.session import dicom_sr_key


def reader_sr_button(case_id: int, run_id: int, scope: str) -> None:
    """A download of this reader's SR of the case, once they have given a verdict on the run."""
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
