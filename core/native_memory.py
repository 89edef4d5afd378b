"""The native heap (glibc's malloc) of the processes that run models (the app server, the API, the
workers): how many arenas it keeps, where a model's large buffers come from, and handing freed
pages back to the OS. Elsewhere than glibc all of it does nothing.

A forward pass allocates activation buffers of megabytes to hundreds of megabytes. glibc serves
any allocation over its mmap threshold (32 MB at the most, as it adapts) with a fresh mapping and
unmaps it when freed, so the kernel zero-filled every page of every such buffer again on each
pass: region SHAP of a radiograph (256 masked copies through the DenseNet) spent a quarter of its
CPU in the kernel (0.49 of 1.97 CPU-s a second) and took 17.2-18.0 s; served from the heap and
reused, 12.1-12.4 s (2026-12-07, this 2-core machine).

Streamlit runs each script run in a pool of worker threads, and glibc gives each thread that
allocates while another does an arena of its own (up to 8 per core). Torch's and NumPy's arrays of
a reader's run were freed into whichever arena that thread had, and each arena kept its own free
and fragmented pages: the server grew 1.33 MB for each reviewer session that came and went
(bench_sessions.py, 50 sessions, 2-core machine), and 0.08 MB with two arenas.

One arena, not two: an arena other than the main one grows in mapped heaps of at most 64 MB, so a
buffer near that size or over it is mapped for itself whatever the mmap threshold says, and
zero-filled again on each pass. The background jobs (region SHAP, segmentation) each run in a
thread of their own, which glibc handed that second arena: region SHAP in such a thread took 1.29
million page faults and 3 s of kernel time a run, against none in the main thread (12.1-13.4 s
against 10.9-11.3 s; with one arena 11.7-12.7 s and 0.3 s of kernel time, 2026-12-07). The GIL
already serialises the Python threads that would contend for the arena's lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameter numbers
ARENAS = 1
LARGE_BUFFERS = 512 * 1024 * 1024  # allocations up to this come from the heap, and its top is kept up to it


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


def keep_large_buffers(limit: int = LARGE_BUFFERS) -> bool:
    """Serve allocations up to ``limit`` bytes from the heap and keep up to ``limit`` of free heap
    top, so a model's buffers are reused from one pass to the next instead of being mapped and
    zero-filled anew. Freed memory is handed back by ``return_free_memory`` (the app's session
    reaper). True when glibc took it; ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in
    the environment are an operator's and win."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    libc = _libc()
    try:
        done = bool(
            libc is not None and libc.mallopt(M_MMAP_THRESHOLD, limit) and libc.mallopt(M_TRIM_THRESHOLD, limit)
        )
    except AttributeError:  # not glibc
        done = False
    if done:
        log.info("Native heap: buffers up to %d MB reused from the heap, not mapped anew.", limit // (1024 * 1024))
    return done


def tune_heap() -> None:
    """What a process that runs models sets at its start, before it starts threads."""
    limit_arenas()
    keep_large_buffers()


def return_free_memory() -> None:
    """Hand freed pages of the native heap back to the OS (``malloc_trim``)."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:
        pass
