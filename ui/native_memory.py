"""The server process's native heap (glibc's malloc): how many arenas it keeps, and handing freed
pages back to the OS. Elsewhere than glibc both do nothing.

Streamlit runs each script run in a pool of worker threads, and glibc gives each thread that
allocates while another does an arena of its own (up to 8 per core). Torch's and NumPy's arrays of
a reader's run were freed into whichever arena that thread had, and each arena kept its own free
and fragmented pages: the server grew 1.33 MB for each reviewer session that came and went
(bench_sessions.py, 50 sessions, 2-core machine), and 0.08 MB with two arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_arenas(count: int = ARENAS) -> bool:
    """At most ``count`` malloc arenas from now on (call it before the server starts its threads:
    arenas made before stay). True when glibc took it. ``MALLOC_ARENA_MAX`` in the environment,
    read by glibc at start, is left to win: an operator's setting is theirs."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _libc()
    try:
        done = bool(libc is not None and libc.mallopt(M_ARENA_MAX, count))
    except AttributeError:  # not glibc
        done = False
    if done:
        log.info("Native heap: at most %d malloc arenas (memory per session stays flat).", count)
    return done


def return_free_memory() -> None:
    """Hand freed pages of the native heap back to the OS (``malloc_trim``)."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:
        pass
