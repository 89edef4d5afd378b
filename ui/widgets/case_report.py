"""The "Download case report (HTML)" button of a stored run of any kind: the report is built when
it is clicked, with the verdicts and notes this viewer may see (their own, or everyone's for the
lead and in open mode), and audited with its case and run."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from analytics import exports
from storage import repository
from ui.downloads import export_button
from ui.identity import visible_reviewer
from ui.session import case_report_key


def case_report_button(
    run: repository.RunRecord, pictures: Callable[[], Sequence[exports.Picture]], scope: str, file_name: str
) -> None:
    """``pictures``: what the report shows of the image (called only when the button is clicked)."""
    only = visible_reviewer()

    def report(session) -> bytes:
        return exports.case_report_html(
            run,
            repository.verdict_history(session, run.run_id, reviewer=only),
            repository.case_note_history(session, run.run_id, reviewer=only),
            pictures=pictures(),
            names=repository.reviewer_names(session),
            blinded=only is not None,
        )

    export_button(
        "Download case report (HTML)",
        report,
        file_name=file_name,
        mime="text/html",
        kind="case report (HTML)",
        case_id=run.case_id,
        run_id=run.run_id,
        key=case_report_key(scope, run.run_id),
    )
