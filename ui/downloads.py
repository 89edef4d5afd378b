"""Export buttons whose file is built when it is clicked, audited, and never lost to a rerun.

The file is built by a deferred download callable (nothing is computed on an ordinary rerun), and
the export is audited inside that same call, under the identity that drew the button. The button
itself does not rerun the page (``on_click="ignore"``): with a rerun, every download button on the
page registered a new file id, and a second export clicked right after the first still held the
old id, so the browser got no file ("Deferred file ... not found").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st
from sqlalchemy.orm import Session

from storage import audit
from ui import resources
from ui.identity import reviewer

log = logging.getLogger(__name__)


def export_button(
    label: str,
    build: Callable[[Session], bytes],
    *,
    file_name: str,
    mime: str,
    kind: str,
    case_id: int | None = None,
    run_id: int | None = None,
    key: str | None = None,
) -> None:
    """A download button for ``build(session)``; the export is recorded in the audit trail."""
    sessions = resources.database()  # bound now: the callable runs outside the script thread
    actor = reviewer() or None

    def data() -> bytes:
        with sessions.begin() as session:
            content = build(session)
            audit.record_event(session, "export_made", actor, case_id=case_id, run_id=run_id, export=kind)
        log.info("Export made: %s (case %s, run %s)", kind, case_id, run_id)
        return content

    st.download_button(label, data, file_name=file_name, mime=mime, on_click="ignore", key=key)
