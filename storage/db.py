"""Engine, sessionmaker and the one transaction scope. SQLite gets WAL, a busy timeout, ``BEGIN IMMEDIATE`` for every
transaction (writers queue instead of failing mid-transaction) and ``synchronous=FULL``.
The schema, with the triggers that make append-only tables refuse UPDATE and DELETE, comes from
the Alembic migrations in ``storage/migrations`` (see ``storage.migrate``). ``session_scope`` is
how every caller runs a transaction: database failures leave it as ``StorageError``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ReviewError, StorageError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000


def _sqlite_listeners(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file_pool() -> dict:
    """One pooled connection per process for a SQLite file.

    Every transaction here starts with BEGIN IMMEDIATE, so SQLite runs one at a time whatever the
    pool size. With more connections, the threads that lose the race wait in SQLite's busy handler,
    which sleeps in steps of up to 100 ms and leaves the lock idle after each commit (20 writer
    threads managed 55-75% of the single-writer rate here). With one, they queue in the pool and the
    next one starts as soon as the connection comes back. The pool wait has the busy timeout's
    limit; other processes still queue through the busy timeout."""
    return {"pool_size": 1, "max_overflow": 0, "pool_timeout": BUSY_TIMEOUT_MS / 1000}


SIDECARS = ("-wal", "-shm", "-journal")


def _private_sqlite_file(path: Path) -> None:
    """The database file, readable and writable by the app's user alone, as the kept images are: it
    holds notes and reviewers' e-mail addresses. SQLite gives its WAL and shared-memory files the
    database file's permissions; a file (or sidecar) left wider by an older version is narrowed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDECARS)):
        try:
            mode = file.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            log.warning("%s was readable by other users (mode %o); it is now 0600", file, mode)
            os.chmod(file, 0o600)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool = {}
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_file(Path(parsed.database).expanduser())
            pool = _sqlite_file_pool()
        engine = create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, **pool
        )
        _sqlite_listeners(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema (Alembic migrations, including the
    append-only triggers)."""
    # Imported here: Alembic is needed to migrate, not by processes that only read and write.
    from storage.migrate import upgrade_to_head

    upgrade_to_head(engine)


def open_database(url: str) -> sessionmaker[Session]:
    """Engine, schema at the newest migration, and the one sessionmaker for this process."""
    engine = make_engine(url)
    try:
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    log.info("Review database ready at %s", engine.url.render_as_string(hide_password=True))
    return sessionmaker(engine, expire_on_commit=False)


BUSY_MESSAGE = (
    "The review database is busy or unavailable, so nothing was saved. Try again in a moment; "
    "if it persists, tell IT (details are in the server log)."
)
REFUSED_MESSAGE = "The review database refused the change, so nothing was saved (details are in the server log)."


def _where(sessions: sessionmaker[Session]) -> str:
    bind = sessions.kw.get("bind")
    return bind.url.render_as_string(hide_password=True) if isinstance(bind, Engine) else "(unbound)"


@contextmanager
def session_scope(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back when it raises. A database
    failure leaves as ``StorageError`` with a message for the person at the screen (nothing was
    saved; wait, or tell IT), and the server log gets the database and the driver's own error for
    the operator. ``ReviewError``s raised inside the block (an invalid verdict...) pass unchanged."""
    try:
        with sessions.begin() as session:
            yield session
    except (OperationalError, PoolTimeout) as exc:  # locked, unreachable, or a SQLite file's writers queue too long
        log.exception("Review database at %s unavailable", _where(sessions))
        raise StorageError(BUSY_MESSAGE) from exc
    except SQLAlchemyError as exc:
        if isinstance(exc.__cause__, ReviewError):
            raise exc.__cause__ from exc
        log.exception("Review database at %s refused a change", _where(sessions))
        raise StorageError(REFUSED_MESSAGE) from exc
