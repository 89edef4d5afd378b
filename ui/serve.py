"""Run the app as ``streamlit run app.py`` does, with the pages' code imported while the server starts.

``streamlit run`` imports nothing of an app until its first browser session runs ``app.py``; here
that run imported torch, MONAI, SHAP and the rest and the first reader looked at a blank page for
5-8 s. ``python -m ui.serve [streamlit run options]`` imports what ``app.py`` and ``pages/`` import
and the libraries the models load lazily, in a background thread as the server starts (a first
request during it waits only for the rest).
The modules are the same objects the pages then use; nothing runs a model or touches storage.
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


def main(argv: Sequence[str]) -> None:
    from streamlit.web import cli

    threading.Thread(target=warm, name="warm-imports", daemon=True).start()
    cli.main(args=["run", str(APP), *argv], prog_name="streamlit")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
