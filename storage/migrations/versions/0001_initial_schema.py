"""Initial schema: cases, runs, findings, append-only verdicts, case notes and region explanations.

This is exactly what ``Base.metadata.create_all`` plus the append-only triggers made before
migrations existed, so a database created that way is stamped at this revision, not rebuilt.
The trigger DDL is written out here rather than imported: a revision must keep meaning what it
meant when it was written.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

log = logging.getLogger(__name__)

APPEND_ONLY_TABLES = ("verdicts", "case_notes", "region_explanations")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_format", sa.String(length=16), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("view_position", sa.String(length=16), nullable=True),
        sa.Column("body_part", sa.String(length=32), nullable=True),
        sa.Column("patient_key", sa.String(length=40), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cases_input_sha256", "cases", ["input_sha256"], unique=True)
    op.create_index("ix_cases_patient_key", "cases", ["patient_key"], unique=False)

    op.create_table(
        "analysis_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("trained", sa.Boolean(), nullable=False),
        sa.Column("bands_version", sa.String(length=32), nullable=False),
        sa.Column("thresholds_json", sa.Text(), nullable=False),
        sa.Column("cam_method", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("timing_ms", sa.Float(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "model_id", "weights_sha256", "bands_version", name="uq_run_identity"),
    )
    op.create_index("ix_analysis_runs_case_id", "analysis_runs", ["case_id"], unique=False)

    op.create_table(
        "run_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "label", name="uq_run_finding"),
    )
    op.create_index("ix_run_findings_run_id", "run_findings", ["run_id"], unique=False)

    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("finding_label", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("cam_method", sa.String(length=32), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.ForeignKeyConstraint(["supersedes_id"], ["verdicts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("supersedes_id"),
    )
    op.create_index("ix_verdicts_run_id", "verdicts", ["run_id"], unique=False)

    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.ForeignKeyConstraint(["supersedes_id"], ["case_notes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("supersedes_id"),
    )
    op.create_index("ix_case_notes_run_id", "case_notes", ["run_id"], unique=False)

    op.create_table(
        "region_explanations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("regions_source", sa.String(length=80), nullable=False),
        sa.Column("masking", sa.Text(), nullable=False),
        sa.Column("region_names_json", sa.Text(), nullable=False),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("base_values_json", sa.Text(), nullable=False),
        sa.Column("scores_json", sa.Text(), nullable=False),
        sa.Column("evaluations", sa.Integer(), nullable=False),
        sa.Column("max_err", sa.Float(), nullable=False),
        sa.Column("timing_ms", sa.Float(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["run_id"], ["analysis_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "method", "regions_source", name="uq_run_explanation"),
    )
    op.create_index("ix_region_explanations_run_id", "region_explanations", ["run_id"], unique=False)

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
        op.execute(
            "CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_change()"
            )
    else:
        log.warning("No append-only triggers for %s: UPDATE and DELETE on %s are not refused.", dialect,
                    ", ".join(APPEND_ONLY_TABLES))


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    elif dialect == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS refuse_change()")


def downgrade() -> None:
    _drop_append_only_triggers()
    for table in ("region_explanations", "case_notes", "verdicts", "run_findings", "analysis_runs", "cases"):
        op.drop_table(table)
