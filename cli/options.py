"""Options the CLI's commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from core.errors import ReviewError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


def allow_untrained_option(parser: argparse.ArgumentParser, outputs: str) -> None:
    """``--allow-untrained``: run on untrained weights when none are installed, said in the output;
    ``outputs`` names what is then meaningless (scores, masks)."""
    parser.add_argument(
        "--allow-untrained",
        action="store_true",
        help=f"run with untrained weights when none are installed ({outputs} are meaningless)",
    )


def input_source(text: str):
    """An input as given: a local path, or a DICOMweb URL kept whole (``Path`` would fold its ``//``)."""
    from pathlib import Path

    from pipelines.pacs import is_dicomweb_url

    return text if is_dicomweb_url(text) else Path(text)


@contextmanager
def local_inputs(sources: list, *, one_series: bool) -> Iterator[list]:
    """Each source as a local path while the command runs: a DICOMweb study or series URL is
    retrieved (WADO-RS) into a temporary folder, removed afterwards. ``one_series``: a URL gives
    the folder of its one series (a volume); otherwise the file of each instance (radiographs).
    Reports, SEGs and this app's own results sent back earlier are not images to read: left out.

    Raises:
        ReviewError: a URL names no study or series, none of its series is an image, or
            (``one_series``) a study of several image series.
    """
    import tempfile
    from pathlib import Path

    from core.settings import load_settings
    from pipelines.pacs import image_series, resource, retrieve

    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="review-pacs-") as scratch:
        paths: list = []
        for index, source in enumerate(sources):
            if isinstance(source, Path):
                paths.append(source)
                continue
            where = resource(source, settings)
            series = image_series(retrieve(where, max_bytes=settings.max_volume_upload_mb * 1_000_000))
            if not series:
                raise ReviewError(f"{source} holds no images (only reports, segmentations or this app's own results).")
            if one_series and len(series) > 1:
                listed = ", ".join(f"{uid} ({len(files)} instances)" for uid, files in series.items())
                raise ReviewError(
                    f"{source} holds {len(series)} series ({listed}); give one: {source.rstrip('/')}/series/SERIES_UID"
                )
            for uid, files in series.items():
                folder = Path(scratch) / f"{index}-{uid}"
                folder.mkdir()
                for name, data in files:
                    (folder / name).write_bytes(data)
                paths.extend([folder] if one_series else sorted(folder.iterdir()))
        yield paths


def stored_runs_options(parser: argparse.ArgumentParser, model_help: str) -> None:
    """The options of a command over the stored runs (DATABASE_URL): one model's, and whether runs
    on untrained weights count."""
    parser.add_argument("--model", help=model_help)
    parser.add_argument(
        "--include-untrained",
        action="store_true",
        help="include runs on untrained weights (their scores are meaningless)",
    )


def from_database(read: Callable[[Session], T]) -> T:
    """``read`` in one transaction on the database at DATABASE_URL, closed afterwards."""
    from core.settings import load_settings
    from storage.db import open_database

    sessions = open_database(load_settings().database_url)
    try:
        with sessions.begin() as session:
            return read(session)
    finally:
        sessions.kw["bind"].dispose()
