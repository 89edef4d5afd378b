"""Reader studies: a study (a set of one model's classification runs and the findings its readers
call), its cases, and each reader's reads of a case: the first with the AI hidden, the second with
it shown, or an adjudicator's reference. Cases and reads are append-only, by the same triggers as
0001's tables (the DDL written out, as there, so this revision keeps meaning what it meant); a
study's row changes once, when it is closed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

log = logging.getLogger(__name__)

APPEND_ONLY_TABLES = ("reader_study_cases", "study_reads")


def upgrade() -> None:
    op.create_table(
        "reader_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("findings_json", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "reader_study_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["reader_studies.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "run_id", name="uq_study_case"),
    )
    op.create_index("ix_reader_study_cases_study_id", "reader_study_cases", ["study_id"], unique=False)
    op.create_index("ix_reader_study_cases_run_id", "reader_study_cases", ["run_id"], unique=False)
    op.create_table(
        "study_reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("answers_json", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("phase IN ('unaided', 'aided', 'reference')", name="ck_study_read_phase"),
        sa.ForeignKeyConstraint(["study_id"], ["reader_studies.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "run_id", "reviewer", "phase", name="uq_study_read"),
    )
    op.create_index("ix_study_reads_study_id", "study_reads", ["study_id"], unique=False)
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
                )
    elif dialect == "postgresql":
        # refuse_change() comes from revision 0001.
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_change()"
            )
    else:
        log.warning(
            "No append-only triggers for %s: UPDATE and DELETE on %s are not refused.",
            dialect,
            ", ".join(APPEND_ONLY_TABLES),
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY_TABLES:
        if dialect == "sqlite":
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    for table in ("study_reads", "reader_study_cases", "reader_studies"):
        op.drop_table(table)
