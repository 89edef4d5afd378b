"""A rerun asked for by a fragment of a page the reader has left becomes a rerun of the page shown.

What a reader saw (a browser test, 2026-12-06, and a three-file app that does the same): the review
page's viewer sits in a fragment, and asks for pixels on its own (a component value, not a click).
When it asked just after the reader clicked "Case review", Streamlit queued that fragment rerun
behind the case page's full run, as it queues every fragment rerun that arrives during a full run,
and then ran it on the case page, where the fragment does not exist. Streamlit logs "Couldn't find
fragment with id ...", runs nothing, reports a finished fragment run, and the browser clears what
that run did not redraw: the whole case page went blank under the disclaimer and stayed blank.

``install()`` wraps Streamlit's script runner (1.67, pinned in requirements.txt): a rerun that
names only fragments this session no longer has runs in full the page the last run showed, at
its address (the request names the page it came from: run as asked, it took the reader back
there). A timer's rerun (``run_every``) is left to Streamlit, which stops the timers of
fragments that are gone. The layout it relies on is checked; where it is not
what it expects it logs a warning and changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)
_lock = threading.Lock()
_FIELDS = {
    "fragment_id_queue",
    "is_auto_rerun",
    "is_fragment_scoped_rerun",
    "page_script_hash",
    "page_name",
    "query_string",
}
_installed = False


def _for_fragments_that_exist(rerun_data: Any, storage: Any, ctx: Any) -> Any:
    """``rerun_data``, or, when none of its fragments exist, a full rerun of the page the last run
    showed, at its address: the request came from the page the reader left, and names it."""
    queue = rerun_data.fragment_id_queue
    if not queue or rerun_data.is_auto_rerun or any(storage.contains(f) for f in queue):
        return rerun_data
    log.info("A rerun for %d fragment(s) of a page no longer shown runs the page shown in full.", len(queue))
    return dataclasses.replace(
        rerun_data,
        fragment_id_queue=[],
        is_fragment_scoped_rerun=False,
        page_script_hash=ctx.page_script_hash,
        page_name="",
        query_string=ctx.query_string,
    )


def install() -> bool:
    """Wrap ``ScriptRunner._run_script`` once per process; False when Streamlit's layout differs."""
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            from streamlit.runtime.scriptrunner.script_runner import ScriptRunner
            from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
        except ImportError:
            log.warning("Streamlit's script runner has moved: stale fragment reruns are not redirected.")
            return False
        fields = {f.name for f in dataclasses.fields(RerunData)}
        run_script = getattr(ScriptRunner, "_run_script", None)
        if run_script is None or not hasattr(ScriptRunner, "_get_script_run_ctx") or not _FIELDS <= fields:
            log.warning("Streamlit's rerun requests have changed: stale fragment reruns are not redirected.")
            return False

        @functools.wraps(run_script)
        def _run_script(self: Any, rerun_data: Any) -> None:
            storage = getattr(self, "_fragment_storage", None)
            if storage is not None:
                rerun_data = _for_fragments_that_exist(rerun_data, storage, self._get_script_run_ctx())
            run_script(self, rerun_data)

        ScriptRunner._run_script = _run_script  # type: ignore[method-assign]
        _installed = True
        return True
