"""Database transactions for the pages, with failures translated into a StorageError the page
can show (what happened and what to do; the details go to the server log).

The sessionmaker itself is cached in ``ui.resources``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from core.errors import ReviewError, StorageError
from ui.resources import database

log = logging.getLogger(__name__)


@contextmanager
def transaction() -> Iterator[Session]:
    """A database transaction whose failures reach the page as a StorageError it can show."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    try:
        with database().begin() as session:
            yield session
    except (OperationalError, PoolTimeout) as exc:  # a SQLite file's writers queue for its one pooled connection
        log.exception("Database unavailable")
        raise StorageError(
            "The review database is busy or unavailable, so nothing was saved. Try again in a moment; "
            "if it persists, tell IT (details are in the server log)."
        ) from exc
    except SQLAlchemyError as exc:
        if isinstance(exc.__cause__, ReviewError) or isinstance(exc, ReviewError):
            raise
        log.exception("Database error")
        raise StorageError(
            "The review database refused the change, so nothing was saved (details are in the server log)."
        ) from exc
