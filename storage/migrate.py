"""Bring a database to the newest schema with Alembic, from code: no alembic.ini and no particular
working directory needed.

The version check and the upgrade run in one transaction (``migration_transaction``). On SQLite
that transaction starts with ``BEGIN IMMEDIATE`` (see ``storage.db``) and runs with foreign keys
off, checked before commit; on PostgreSQL it takes an advisory lock; so two processes starting at
once do not both try to create the tables. A database made by ``create_all`` before
migrations existed has tables but no version: it is stamped at the revision whose tables it has
(0001 before the audit trail, 0002 with it), and upgraded from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FIRST_TABLES = frozenset({"cases", "analysis_runs", "run_findings", "verdicts", "case_notes", "region_explanations"})
# What create_all (plus the append-only triggers) made before migrations, by the revision that
# makes the same; newest first. Only revisions from before migrations belong here.
PRE_MIGRATION_SCHEMAS = (
    ("0002", _FIRST_TABLES | {"audit_events"}),
    ("0001", _FIRST_TABLES),
)
KNOWN_TABLES = frozenset().union(*(tables for _, tables in PRE_MIGRATION_SCHEMAS))
VERSION_TABLE = "alembic_version"
# Any fixed 64-bit number; it only has to be the same in every process migrating this database.
PG_MIGRATION_LOCK = 0x5245_5649_4557_4442


class SchemaError(RuntimeError):
    """The database holds tables of this app that no migration can account for."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at ``storage/migrations`` (and at ``url`` when given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _stamp_if_made_before_migrations(connection: Connection, config: Config) -> None:
    present = set(inspect(connection).get_table_names())
    if VERSION_TABLE in present:
        return
    ours = present & KNOWN_TABLES
    if not ours:
        return
    for revision, tables in PRE_MIGRATION_SCHEMAS:
        if ours == tables:
            log.info("Review database predates migrations; recording it as revision %s", revision)
            command.stamp(config, revision)
            return
    raise SchemaError(
        f"The review database has the tables {', '.join(sorted(ours))} but no migration version, which "
        "no version of this app made. Point DATABASE_URL at an empty database or a copy made by the app."
    )


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # On the driver's connection: SQLite ignores this pragma inside a transaction, and SQLAlchemy
    # would begin one (BEGIN IMMEDIATE, see storage.db) before running it.
    connection.connection.dbapi_connection.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")  # type: ignore[union-attr]


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction for a migration. PostgreSQL: under the advisory lock. SQLite: with foreign
    keys off, which is how SQLite wants a table rebuilt (a migration that changes a table other
    tables point at copies it and swaps the copy in); every foreign key is checked before the
    transaction commits, and the connection gets foreign keys back afterwards."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, False)
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise SchemaError(
                            f"Migrating the review database would leave {len(broken)} row(s) pointing at rows that "
                            f"do not exist (first: {tuple(broken[0])}), so nothing was changed. Keep this database "
                            "as it is and report this, with the server log, to whoever maintains the app."
                        )
        finally:
            if sqlite and not connection.invalidated:
                _sqlite_foreign_keys(connection, True)


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration the database lacks; nothing happens when it is already at head."""
    config = alembic_config()
    with migration_transaction(engine) as connection:
        config.attributes["connection"] = connection
        _stamp_if_made_before_migrations(connection, config)
        command.upgrade(config, "head")
