"""Pages run only through app.py, so sign-in and the sidebar can never be skipped.

Until app.py has called ``st.navigation`` once in a server process, Streamlit still honours its
older multipage mode: the first request for ``/cases`` on a freshly started server runs
``pages/cases.py`` by itself, without app.py's sign-in gate. Every page therefore checks that it
is running inside app.py's navigation and otherwise sends the browser to app.py, which from then
on routes every request in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

_local = threading.local()  # one script run per thread at a time


@contextmanager
def app_entry() -> Iterator[None]:
    _local.active = True
    try:
        yield
    finally:
        _local.active = False


def require_app_entry() -> None:
    if not getattr(_local, "active", False):
        st.switch_page("app.py")
