"""`python -m ui.serve` (what scripts/run-app starts): the pages' code and the libraries the models
load are imported as the server starts, so a first reader does not wait on a blank page for them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT
from ui import serve


def test_the_modules_warmed_are_what_app_and_the_pages_import() -> None:
    modules = serve.page_imports()
    assert {"ui.widgets.sidebar", "ui.identity", "ui.results", "ui.widgets.volume_viewer"} <= set(modules)
    assert all(
        m.split(".")[0] in {"core", "inference", "xai", "storage", "pipelines", "analytics", "ui", "cli"}
        for m in modules
    )


def test_warming_imports_them_and_the_model_libraries_in_a_fresh_process() -> None:
    check = (
        "import sys\n"
        "from ui import serve\n"
        "assert 'torchxrayvision' not in sys.modules\n"
        "serve.warm()\n"
        "missing = [m for m in (*serve.page_imports(), *serve.LIBRARIES) if m not in sys.modules]\n"
        "print('missing', missing)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "missing []" in done.stdout
    assert "Traceback" not in done.stderr and "Could not import" not in done.stderr
