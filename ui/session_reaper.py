"""Release what a browser session held once Streamlit forgets it.

Streamlit keeps a disconnected session for ``server.disconnectedSessionTTL`` seconds (120 by
default, 30 in this app's config) so a reconnecting tab can resume it; each kept session held about
4 MB here (30 sessions of the NIH sample, bench_sessions.py). When that time is up, or when more
than 128 sessions wait, its memory session storage drops the entry without shutting the session
down, and only when another session disconnects: the session's uploaded file stays in the upload
manager and its media references stay registered for the life of the process.

``install()`` makes that storage shut a session down when it drops it, and reaps expired
sessions every ``SESSION_REAP_EVERY_S`` seconds (30 by default) (the storage only reaps when another session
disconnects). It touches Streamlit internals, so it checks each one and, when the layout is not
what it expects, logs a warning and changes nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import streamlit as st

from core import native_memory
from core.settings import load_settings

log = logging.getLogger(__name__)


def _shut_down(session_info: Any) -> None:
    try:
        session_info.session.shutdown()
    except Exception:  # one session that cannot shut down must not stop the others
        log.warning("Could not shut down an expired session", exc_info=True)
    else:
        log.debug("Shut down an expired browser session: its uploads and media are released.")


def _return_free_memory() -> None:
    """Hand freed memory back to the OS. A session's arrays (its copy of the case's heatmaps, ~4 MB)
    come from glibc's heap once its mmap threshold has grown, and free() keeps such memory in the
    process; malloc_trim releases the free pages."""
    gc.collect()
    native_memory.return_free_memory()


def _reaping_cache_class(base: type) -> type:
    class ShuttingDownSessionCache(base):  # type: ignore[misc, valid-type]
        """Streamlit's TTL cache whose own removals (expiry, overflow) shut the session down."""

        def expire(self, at_time: float | None = None):  # type: ignore[no-untyped-def]
            removed = super().expire(at_time)
            for _key, session_info in removed:
                _shut_down(session_info)
            return removed

        def _evict_lru(self, reason):  # type: ignore[no-untyped-def]
            session_info = super()._evict_lru(reason)
            _shut_down(session_info)
            return session_info

    return ShuttingDownSessionCache


def install() -> bool:
    """Once per process (the caller caches it). True when the reaper is in place."""
    try:
        from streamlit.runtime import Runtime
        from streamlit.runtime.caching.ttl_cache import TTLCache
        from streamlit.runtime.memory_session_storage import MemorySessionStorage

        if not Runtime.exists():
            return False
        manager = Runtime.instance()._session_mgr
        storage = manager._session_storage
        cache = storage._cache
        lock = manager._storage_lock
    except (ImportError, AttributeError):
        log.warning("Streamlit's session storage is not laid out as expected; expired sessions are not reaped.")
        return False
    if not isinstance(storage, MemorySessionStorage) or type(cache) is not TTLCache:
        log.warning("Session storage is %s; expired sessions are not reaped by this app.", type(storage).__name__)
        return False
    every_s = load_settings().session_reap_every_s
    with lock:
        cache.__class__ = _reaping_cache_class(TTLCache)

    def reap() -> None:
        while True:
            time.sleep(every_s)
            with lock:
                released = cache.expire()
            if released:
                _return_free_memory()

    threading.Thread(target=reap, name="session-reaper", daemon=True).start()
    log.info("Expired browser sessions are shut down (uploads and media released) every %d s.", every_s)
    return True


@st.cache_resource(show_spinner=False)
def ensure_installed() -> bool:
    """Called on every run of app.py; installs once per server process."""
    return install()
