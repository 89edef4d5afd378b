"""Engine and sessionmaker. SQLite gets WAL, a busy timeout, ``BEGIN IMMEDIATE`` for every
transaction (writers queue instead of failing mid-transaction) and ``synchronous=FULL``.
The schema, with the triggers that make append-only tables refuse UPDATE and DELETE, comes from
the Alembic migrations in ``storage/migrations`` (see ``storage.migrate``)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

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


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
