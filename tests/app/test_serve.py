"""`python -m ui.serve` (what scripts/run-app starts): the pages' code and the libraries the models
load are imported as the server starts, so a first reader does not wait on a blank page for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from ui import serve


def test_the_modules_warmed_are_what_app_and_the_pages_import() -> None:
    modules = serve.page_imports()
    assert {"ui.widgets.sidebar", "ui.identity", "ui.results", "ui.widgets.volume_viewer"} <= set(modules)
    assert all(
        m.split(".")[0] in {"core", "inference", "xai", "storage", "pipelines", "analytics", "ui", "cli"}
        for m in modules
    )


def test_warming_imports_them_and_the_model_libraries_in_a_fresh_process(tmp_path: Path) -> None:
    """... and loads the classifier into the cache the review page reads, where no download is
    needed (labelled untrained weights allowed, as on a demo server)."""
    check = (
        "import sys\n"
        "from ui import serve\n"
        "assert 'torchxrayvision' not in sys.modules\n"
        "serve.warm()\n"
        "missing = [m for m in (*serve.page_imports(), *serve.LIBRARIES) if m not in sys.modules]\n"
        "print('missing', missing)\n"
        "from ui import models, resources\n"
        "def no_second_load(*args, **kwargs): raise AssertionError('loaded twice')\n"
        "resources.load_model = no_second_load\n"
        "print('cached', type(models.loaded(models.classifier_spec())).__name__)\n"
    )
    env = {
        **os.environ,
        "ALLOW_UNTRAINED_WEIGHTS": "1",
        "MODEL_WEIGHTS_DIR": str(tmp_path / "weights"),
        "REVIEW_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "missing []" in done.stdout
    assert "cached LoadedModel" in done.stdout, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Could not" not in done.stderr
    assert "ScriptRunContext" not in done.stderr


def test_without_weights_or_leave_to_run_untrained_nothing_is_loaded_ahead(tmp_path: Path, monkeypatch) -> None:
    """The page downloads the weights with a progress bar, or says why it cannot run: the server
    does not try either behind the reader's back."""
    monkeypatch.setenv("ALLOW_UNTRAINED_WEIGHTS", "0")
    monkeypatch.setenv("MODEL_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("REVIEW_DATA_DIR", str(tmp_path / "data"))
    from ui import models

    def no_load(spec):
        raise AssertionError(f"{spec.model_id} was loaded")

    monkeypatch.setattr(models, "loaded", no_load)
    assert serve.warm_classifier() is False


def _without_malloc_settings(script: str, *args: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter whose environment sets none of glibc's MALLOC_* tunables
    (an operator's setting would win over the process's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )


_ARENAS = """
import ctypes, ctypes.util, sys, threading
import numpy as np
if sys.argv[1] == "limited":
    from core.native_memory import limit_arenas
    assert limit_arenas()
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()  # all at once: each thread that finds the arenas busy is given one of its own
    for _ in range(200):
        kept = [np.ones(50_000) for _ in range(8)]
        del kept
threads = [threading.Thread(target=allocate) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_stats()
"""


@pytest.mark.parametrize("mode", ["limited", "default"])
def test_the_server_keeps_one_malloc_arena_however_many_threads_allocate(mode: str) -> None:
    """Reviewer sessions run in a pool of threads; each arena glibc gives a thread kept its own freed
    pages, and the server grew with each session that came and went (bench_sessions.py). The server
    limits the arenas to one at its start (ui.serve), before its threads exist."""
    done = _without_malloc_settings(_ARENAS, mode)
    assert done.returncode == 0, done.stderr
    arenas = done.stderr.count("Arena ")
    if mode == "limited":
        assert arenas == 1, done.stderr
    else:
        assert arenas > 2, "glibc gave these threads no arenas of their own: the limit proves nothing here"


_BUFFERS = """
import ctypes, ctypes.util, sys, threading
import numpy as np
if sys.argv[1] == "tuned":
    from core.native_memory import tune_heap
    tune_heap()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
mapped = []
def one_pass():  # a model's activation buffer, freed after each pass
    buffer = np.ones(64 * 1024 * 1024 // 8)
    mapped.append(libc.mallinfo2().hblkhd)  # bytes in blocks mapped for themselves, not in the heap
    del buffer
for _ in range(3):
    if sys.argv[2] == "thread":  # as a background job runs: in a thread of its own
        worker = threading.Thread(target=one_pass)
        worker.start()
        worker.join()
    else:
        one_pass()
print(max(mapped))
"""


@pytest.mark.parametrize("mode", ["tuned", "default"])
@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_models_large_buffers_come_from_the_heap_not_fresh_mappings(mode: str, where: str) -> None:
    """Each forward pass frees and allocates buffers of tens of megabytes: glibc mapped each anew,
    and the kernel zero-filled every page again (a quarter of region SHAP's CPU, 17-18 s against
    12 s). The processes that run models keep such buffers in the heap (``tune_heap``), in the
    main thread and in the threads the background jobs run in (a second arena mapped them anew)."""
    done = _without_malloc_settings(_BUFFERS, mode, where)
    assert done.returncode == 0, done.stderr
    mapped = int(done.stdout.split()[-1])
    if mode == "tuned":
        assert mapped < 64 * 1024 * 1024, mapped  # the buffer in the heap, reused pass after pass
    else:
        assert mapped >= 64 * 1024 * 1024, mapped  # glibc's default: a mapping of its own each time
