"""Segmentation: runs of a 3D segmentation, their measured structures, and append-only verdicts on
each structure. Runs and structures are immutable after insert, verdicts append-only, all three
by the same triggers as 0001's tables. The X-ray tables are untouched.

As in 0001, the trigger DDL is written out rather than imported, so this revision keeps meaning
what it meant when it was written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-21
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

log = logging.getLogger(__name__)

APPEND_ONLY_TABLES = ("segmentation_runs", "run_structures", "structure_verdicts")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "segmentation_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("trained", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("label_map_sha256", sa.String(length=64), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("spacing_json", sa.Text(), nullable=False),
        sa.Column("shape_json", sa.Text(), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("timing_ms", sa.Float(), nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "model_id", "weights_sha256", "label_map_sha256",
                            name="uq_segmentation_identity"),
    )
    op.create_index("ix_segmentation_runs_case_id", "segmentation_runs", ["case_id"], unique=False)

    op.create_table(
        "run_structures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("voxels", sa.Integer(), nullable=False),
        sa.Column("volume_ml", sa.Float(), nullable=False),
        sa.Column("axial_first", sa.Integer(), nullable=True),
        sa.Column("axial_last", sa.Integer(), nullable=True),
        sa.Column("max_axial_extent_mm", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["segmentation_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "name", name="uq_run_structure"),
    )
    op.create_index("ix_run_structures_run_id", "run_structures", ["run_id"], unique=False)

    op.create_table(
        "structure_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("structure", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(length=80), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["run_id"], ["segmentation_runs.id"]),
        sa.ForeignKeyConstraint(["supersedes_id"], ["structure_verdicts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("supersedes_id"),
    )
    op.create_index("ix_structure_verdicts_run_id", "structure_verdicts", ["run_id"], unique=False)

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
        log.warning("No append-only triggers for %s: UPDATE and DELETE on %s are not refused.", dialect,
                    ", ".join(APPEND_ONLY_TABLES))


def _drop_append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    elif dialect == "postgresql":
        # refuse_change() stays: 0001's and 0002's triggers still use it.
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")


def downgrade() -> None:
    _drop_append_only_triggers()
    for table in ("structure_verdicts", "run_structures", "segmentation_runs"):
        op.drop_table(table)
