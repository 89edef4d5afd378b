"""The Alembic migrations make exactly the schema of storage/models.py, triggers included, on
SQLite and PostgreSQL; upgrading twice is harmless and databases made before migrations are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from storage.db import open_database
from storage.migrate import SchemaError, alembic_config
from storage.models import APPEND_ONLY_TABLES, Base
from tests.conftest import PROJECT

HEAD = "0008"
# The append-only tables create_all made before migrations existed, with and without the audit trail.
LEGACY_APPEND_ONLY = ("verdicts", "case_notes", "region_explanations", "audit_events")
BEFORE_AUDIT = LEGACY_APPEND_ONLY[:-1]


def schema_of(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}
    finally:
        engine.dispose()


def differences_from_models(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def version_and_triggers(url: str) -> tuple[list[str], set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            versions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
            if connection.dialect.name == "sqlite":
                query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            else:
                query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            return versions, set(connection.execute(text(query)).scalars())
    finally:
        engine.dispose()


def expected_triggers(dialect: str) -> set[str]:
    if dialect == "sqlite":
        return {f"{t}_no_{a}" for t in APPEND_ONLY_TABLES for a in ("update", "delete")}
    return {f"{t}_append_only" for t in APPEND_ONLY_TABLES}


def test_upgrade_head_on_an_empty_database_makes_the_models_schema_and_twice_is_harmless(database_url) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    schema = schema_of(database_url)
    assert set(schema) == set(Base.metadata.tables) | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        assert schema[name] == [c.name for c in table.columns], name
    assert differences_from_models(database_url) == []
    versions, triggers = version_and_triggers(database_url)
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert versions == [HEAD] and triggers == expected_triggers(dialect)

    sessions = open_database(database_url)  # the app's path, on a database already at head
    try:
        with sessions.begin() as s:
            s.execute(
                text(
                    "INSERT INTO cases (input_sha256, source_format, modality, created_at) "
                    "VALUES ('a', 'png', 'CR', CURRENT_TIMESTAMP)"
                )
            )
    finally:
        sessions.kw["bind"].dispose()
    command.upgrade(config, "head")
    assert schema_of(database_url) == schema
    assert version_and_triggers(database_url) == (versions, triggers)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM cases")).scalar() == 1
    engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(database_url) -> None:
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(schema_of(database_url)) == {"alembic_version"}
    command.upgrade(config, "head")
    assert differences_from_models(database_url) == []


def test_open_database_migrates_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sessions = open_database(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    sessions.kw["bind"].dispose()
    assert version_and_triggers(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")[0] == [HEAD]


def test_the_alembic_command_line_uses_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(PROJECT / "alembic.ini"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert version_and_triggers(url)[0] == [HEAD]


def legacy_triggers(dialect: str, tables: tuple[str, ...]) -> list[str]:
    """The append-only DDL that storage.db ran before migrations existed."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {t}_no_{a.lower()} BEFORE {a} ON {t} BEGIN SELECT RAISE(ABORT, '{t} are append-only'); END"
            for t in tables
            for a in ("UPDATE", "DELETE")
        ]
    return [
        "CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
    ] + [
        f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION refuse_change()"
        for t in tables
    ]


@pytest.mark.parametrize("with_audit_trail", [True, False], ids=["with-audit", "before-audit"])
def test_a_database_made_before_migrations_is_stamped_kept_and_upgraded(database_url, with_audit_trail) -> None:
    """create_all and the old trigger DDL, as storage.db did before migrations, with and without
    the audit_events table: the data stays, and the database ends at head with every trigger.
    Today's models are not that schema any more; revisions 0001 and 0002 make exactly what
    create_all made then, so the tables come from them (without the trigger DDL and the version)."""
    command.upgrade(alembic_config(database_url), "0002" if with_audit_trail else "0001")
    engine = create_engine(database_url)
    dialect = engine.dialect.name
    tables = LEGACY_APPEND_ONLY if with_audit_trail else BEFORE_AUDIT
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        for table in tables:
            if dialect == "sqlite":
                for action in ("update", "delete"):
                    connection.execute(text(f"DROP TRIGGER {table}_no_{action}"))
            else:
                connection.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
        if dialect == "postgresql":
            connection.execute(text("DROP FUNCTION refuse_change()"))
        for statement in legacy_triggers(dialect, tables):
            connection.execute(text(statement))
        connection.execute(
            text(
                "INSERT INTO cases (input_sha256, source_format, modality, created_at) "
                "VALUES ('a', 'png', 'CR', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    sessions = open_database(database_url)
    sessions.kw["bind"].dispose()
    versions, triggers = version_and_triggers(database_url)
    assert versions == [HEAD] and triggers == expected_triggers(engine.dialect.name)
    assert differences_from_models(database_url) == []
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM cases")).scalar() == 1
    engine.dispose()


def test_a_database_with_only_some_of_the_tables_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.sqlite3'}"
    engine = create_engine(url)
    Base.metadata.tables["cases"].create(engine)
    engine.dispose()
    with pytest.raises(SchemaError, match="tables cases but no migration version"):
        open_database(url)
