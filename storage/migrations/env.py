"""Alembic environment for the review database.

``storage.migrate`` hands over an open connection in ``config.attributes["connection"]`` (already
inside a transaction, so the version check and the upgrade happen under one lock). The
``alembic`` command line has none: it connects to ``sqlalchemy.url`` from the config, else to
``DATABASE_URL`` / the app's default, through ``storage.db.make_engine`` so SQLite gets the same
pragmas and ``BEGIN IMMEDIATE`` as the app, in ``storage.migrate.migration_transaction`` (foreign
keys off on SQLite while tables are rebuilt, checked before commit).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from storage.models import Base

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from core.settings import load_settings

    return load_settings().database_url


def _run(connection: Connection) -> None:
    # Batch mode turns ALTERs SQLite cannot do into copy-and-swap; on PostgreSQL it emits plain ALTERs.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=Base.metadata, render_as_batch=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from storage.db import make_engine
    from storage.migrate import migration_transaction

    engine = make_engine(_url())
    try:
        with migration_transaction(engine) as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
