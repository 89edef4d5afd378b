"""Database transactions for the pages, with failures translated into a StorageError the page
can show (what happened and what to do; the details go to the server log). The translation is
storage's own (``storage.db.session_scope``); this module only supplies the process's sessionmaker.

The sessionmaker itself is cached in ``ui.resources``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from storage.db import session_scope
from ui.resources import database


@contextmanager
def transaction() -> Iterator[Session]:
    """A database transaction whose failures reach the page as a StorageError it can show."""
    with session_scope(database()) as session:
        yield session
