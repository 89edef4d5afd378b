"""Run the app as ``streamlit run app.py`` does, with the pages' code imported while the server starts.

``streamlit run`` imports nothing of an app until its first browser session runs ``app.py``; here
that run imported torch, MONAI, SHAP and the rest and the first reader looked at a blank page for
5-8 s. ``python -m ui.serve [streamlit run options]`` imports what ``app.py`` and ``pages/`` import
and the libraries the models load lazily, in a background thread as the server starts (a first
request during it waits only for the rest).
The modules are the same objects the pages then use. Then the chest X-ray classifier is loaded into
the process-wide model cache and run once on a blank input, where it needs no download (its
weights are installed, or labelled untrained weights are allowed): the first case of the day no
longer waits 3-5 s for the model. Nothing touches storage.
"""

from __future__ import annotations

import ast
import importlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[1]
APP = PROJECT / "app.py"
_OURS = ("core", "inference", "xai", "storage", "pipelines", "analytics", "ui", "cli")
# What the models import only when first loaded, which every first page does for its sidebar
# (torch with torchxrayvision took 2.6 s, MONAI 1.4 s on a 2-core machine). The explanations'
# libraries (SHAP, grad-cam) are left to their first use: importing them here too made a request
# that came at once wait longer, not shorter.
LIBRARIES = ("torch", "torchvision", "torchxrayvision", "monai.networks.nets")


def page_imports() -> list[str]:
    """This app's modules that ``app.py`` and the pages import, read from their source."""
    names: set[str] = set()
    for script in [APP, *sorted((PROJECT / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                # `from ui import results`: the module is ui.results
                folder = PROJECT.joinpath(*node.module.split("."))
                names.update(
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if (folder / f"{alias.name}.py").is_file() or (folder / alias.name / "__init__.py").is_file()
                )
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return sorted(n for n in names if n.split(".")[0] in _OURS)


def warm() -> None:
    started = time.perf_counter()
    for name in (*page_imports(), *LIBRARIES):
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import will raise it where the reader sees it
            log.warning("Could not import %s ahead of the first request", name, exc_info=True)
    log.info("The pages' code is imported (%.1f s): a first request draws at once.", time.perf_counter() - started)
    try:
        warm_classifier()
    except Exception:  # the page loads the model itself and says what is wrong, where the reader sees it
        log.warning("Could not load the chest X-ray model ahead of the first case", exc_info=True)


def warm_classifier() -> bool:
    """Load the chest X-ray classifier into ``st.cache_resource`` (the same entry the review page
    then finds) and run it once, unless that would mean downloading weights (the page does that,
    with a progress bar). True when it is loaded."""
    import numpy as np

    from core.settings import load_settings
    from inference.models.loader import LoadedModel
    from inference.models.weights import find_weights_file
    from pipelines.forward import forward_with_features
    from ui import models

    started = time.perf_counter()
    spec = models.classifier_spec()
    if find_weights_file(spec, load_settings()) is None and not models.untrained_allowed(spec):
        return False
    # Outside a page's run Streamlit warns that there is no ScriptRunContext (for the spinner it
    # cannot draw): expected here, so that one logger is quiet for this call alone.
    context_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = context_log.level
    context_log.setLevel(logging.ERROR)
    try:
        loaded = models.loaded(spec)
    finally:
        context_log.setLevel(level)
    if not isinstance(loaded, LoadedModel):
        return False
    size = spec.input_size
    forward_with_features(loaded, np.zeros((1, 1, size, size), dtype=np.float32))
    log.info("%s is loaded and has run once (%.1f s).", spec.model_id, time.perf_counter() - started)
    return True


def main(argv: Sequence[str]) -> None:
    from streamlit.web import cli

    from core.native_memory import tune_heap

    tune_heap()  # before any thread of the server allocates
    threading.Thread(target=warm, name="warm-imports", daemon=True).start()
    cli.main(args=["run", str(APP), *argv], prog_name="streamlit")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
