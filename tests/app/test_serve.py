"""`python -m ui.serve` (what scripts/run-app starts): the pages' code and the libraries the models
load are imported as the server starts, so a first reader does not wait on a blank page for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
