"""Pages run only inside app.py, so sign-in and the sidebar can never be skipped.

Streamlit still honours its older multipage mode whenever a ``pages/`` folder sits beside the
entry script: until app.py has called ``st.navigation`` once in a server process, a request for
``/cases`` runs ``pages/cases.py`` by itself, without app.py's sign-in gate (AppTest resets that
state before every run, so its reruns hit it every time). Every page therefore starts with
``require_app_entry()``: run by itself, it runs app.py instead, which checks sign-in, draws the
sidebar and runs this same page inside it; then the outer run stops.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

APP_SCRIPT = Path(__file__).resolve().parent.parent / "app.py"
_local = threading.local()  # a script run happens on one thread


@contextmanager
def app_entry() -> Iterator[None]:
    previous = getattr(_local, "active", False)
    _local.active = True
    try:
        yield
    finally:
        _local.active = previous


def require_app_entry() -> None:
    if getattr(_local, "active", False):
        return
    runpy.run_path(str(APP_SCRIPT), run_name="__main__")
    st.stop()
