"""One table of runs of every kind, one table of verdicts.

``analysis_runs`` (the X-ray runs) becomes the one runs table: a ``kind`` column (classification,
segmentation, uploaded-mask), the columns only a classification has made nullable, and the label
map columns of ``segmentation_runs`` added. The table keeps its name so that every X-ray run keeps
its id and everything pointing at it (findings, verdicts, case notes, explanations, audit events)
stays as it was. Segmentation runs move in, numbered after the X-ray runs (new id = old id + the
highest X-ray run id); their structures and the audit events about them follow. Structure verdicts
move into ``verdicts`` (its ``finding_label`` column becomes ``item``), numbered after the X-ray
verdicts the same way, so their supersede chains keep their shape. CHECK constraints keep the enum
columns (kind, band, verdict) to their values, and the runs and findings are now append-only too.

On SQLite the tables are rebuilt (copy and swap) with foreign keys off, as SQLite requires;
``storage.migrate`` does that and checks every foreign key before the transaction commits.

Downgrading moves the segmentation runs and their verdicts back, with the ids they have now; it
refuses when a case note belongs to a segmentation run (0004 has no place for one).

As in 0001, the trigger DDL and the enum values are written out rather than imported, so this
revision keeps meaning what it meant when it was written.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

log = logging.getLogger(__name__)

APPEND_ONLY_BEFORE = (
    "verdicts",
    "case_notes",
    "region_explanations",
    "audit_events",
    "segmentation_runs",
    "run_structures",
    "structure_verdicts",
)
APPEND_ONLY_AFTER = (
    "analysis_runs",
    "run_findings",
    "run_structures",
    "verdicts",
    "case_notes",
    "region_explanations",
    "audit_events",
)
SEGMENTATION_COLUMNS = (
    ("label_map_sha256", sa.String(length=64)),
    ("params_json", sa.Text()),
    ("labels_json", sa.Text()),
    ("spacing_json", sa.Text()),
    ("shape_json", sa.Text()),
)
CLASSIFICATION_COLUMNS = (
    ("bands_version", sa.String(length=32)),
    ("thresholds_json", sa.Text()),
    ("cam_method", sa.String(length=32)),
)
RUN_KIND_CHECK = "kind IN ('classification', 'segmentation', 'uploaded-mask')"
KIND_COLUMNS_CHECK = (
    "(kind = 'classification' AND bands_version IS NOT NULL AND thresholds_json IS NOT NULL"
    " AND cam_method IS NOT NULL AND label_map_sha256 IS NULL)"
    " OR (kind <> 'classification' AND bands_version IS NULL AND label_map_sha256 IS NOT NULL"
    " AND params_json IS NOT NULL AND labels_json IS NOT NULL AND spacing_json IS NOT NULL"
    " AND shape_json IS NOT NULL)"
)
BAND_CHECK = "band IN ('negative', 'indeterminate', 'positive', 'critical')"
VERDICT_CHECK = "verdict IN ('agree', 'disagree', 'unsure')"
SEGMENTATION_EVENTS = ("segmentation_run", "structure_verdict_set", "structure_verdict_changed")
# Names for SQLite's unnamed foreign keys, so batch mode can drop one.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _dialect() -> str:
    return op.get_bind().dialect.name


def _scalar(sql: str, **params: object) -> int:
    return int(op.get_bind().execute(sa.text(sql), params).scalar() or 0)


def _drop_append_only_triggers(tables: tuple[str, ...]) -> None:
    for table in tables:
        if _dialect() == "sqlite":
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        elif _dialect() == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")


def _create_append_only_triggers(tables: tuple[str, ...]) -> None:
    dialect = _dialect()
    if dialect not in ("sqlite", "postgresql"):
        log.warning(
            "No append-only triggers for %s: UPDATE and DELETE on %s are not refused.", dialect, ", ".join(tables)
        )
        return
    for table in tables:
        if dialect == "sqlite":
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
                )
        else:  # refuse_change() comes from revision 0001.
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_change()"
            )


def _foreign_key_name(table: str, column: str) -> str:
    for fk in sa.inspect(op.get_bind()).get_foreign_keys(table):
        if fk["constrained_columns"] == [column]:
            return fk["name"] or f"fk_{table}_{column}_{fk['referred_table']}"
    raise RuntimeError(f"{table}.{column} has no foreign key to move.")


def _repoint(table: str, column: str, target: str, shift: int = 0) -> None:
    """Point ``table.column`` at ``target``'s ids, adding ``shift`` to every value on the way.
    Through negative values, so no row takes another's (run_id, name) while the update runs."""
    with op.batch_alter_table(table, naming_convention=NAMING) as batch:
        batch.drop_constraint(_foreign_key_name(table, column), type_="foreignkey")
    if shift:
        op.execute(f"UPDATE {table} SET {column} = -{column}")
        op.execute(sa.text(f"UPDATE {table} SET {column} = :shift - {column}").bindparams(shift=shift))
    with op.batch_alter_table(table) as batch:
        batch.create_foreign_key(f"fk_{table}_{column}_{target}", target, [column], ["id"])


def _restart_sequence(table: str) -> None:
    """PostgreSQL: rows were inserted with explicit ids, so the next id must come after them."""
    if _dialect() == "postgresql":
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
        )


EventRewrite = Callable[[str, int | None, dict], tuple[int | None, dict] | None]


def _rewrite_events(rewrite: EventRewrite) -> None:
    """Apply ``rewrite(kind, run_id, detail) -> (run_id, detail) | None`` to the audit events about
    segmentation runs (a handful of rows per run; JSON is rewritten the same way on both dialects)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, kind, run_id, detail_json FROM audit_events WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", expanding=True)
        ),
        {"kinds": list(SEGMENTATION_EVENTS)},
    ).all()
    updates = []
    for event_id, kind, run_id, detail_json in rows:
        changed = rewrite(kind, run_id, json.loads(detail_json))
        if changed is not None:
            new_run_id, detail = changed
            updates.append({"id": event_id, "run_id": new_run_id, "detail": json.dumps(detail, sort_keys=True)})
    if updates:
        bind.execute(sa.text("UPDATE audit_events SET run_id = :run_id, detail_json = :detail WHERE id = :id"), updates)


def upgrade() -> None:
    _drop_append_only_triggers(APPEND_ONLY_BEFORE)
    run_shift = _scalar("SELECT COALESCE(MAX(id), 0) FROM analysis_runs")
    verdict_shift = _scalar("SELECT COALESCE(MAX(id), 0) FROM verdicts")
    segmentation_runs = {
        row[0] for row in op.get_bind().execute(sa.text("SELECT id FROM segmentation_runs")).all()
    }

    # The runs table: a kind, the classification columns nullable, the label map columns.
    with op.batch_alter_table("analysis_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        for name, type_ in SEGMENTATION_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        for name, type_ in CLASSIFICATION_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=True)
    op.execute("UPDATE analysis_runs SET kind = 'classification'")
    op.execute(
        sa.text(
            "INSERT INTO analysis_runs (id, kind, case_id, input_sha256, model_id, weights_sha256, trained, "
            "device, timing_ms, created_at, label_map_sha256, params_json, labels_json, spacing_json, shape_json) "
            "SELECT id + :shift, CASE WHEN source = 'uploaded' THEN 'uploaded-mask' ELSE 'segmentation' END, "
            "case_id, input_sha256, model_id, weights_sha256, trained, device, timing_ms, created_at, "
            "label_map_sha256, params_json, labels_json, spacing_json, shape_json FROM segmentation_runs ORDER BY id"
        ).bindparams(shift=run_shift)
    )

    # Structures follow their runs.
    _repoint("run_structures", "run_id", "analysis_runs", shift=run_shift)

    # One verdicts table: structure verdicts move in, their chains shifted with them.
    with op.batch_alter_table("verdicts") as batch:
        batch.alter_column("finding_label", new_column_name="item", existing_type=sa.String(length=64))
        batch.create_check_constraint("ck_verdict_value", VERDICT_CHECK)
    op.execute(
        sa.text(
            "INSERT INTO verdicts (id, run_id, item, verdict, note, reviewer, cam_method, supersedes_id, created_at) "
            "SELECT id + :verdicts, run_id + :runs, structure, verdict, note, reviewer, NULL, supersedes_id + :verdicts, "
            "created_at FROM structure_verdicts ORDER BY id"
        ).bindparams(verdicts=verdict_shift, runs=run_shift)
    )

    # Audit events about segmentation runs point at the run itself now, and name the new entries.
    def to_one_table(kind: str, run_id: int | None, detail: dict) -> tuple[int | None, dict] | None:
        segmentation_run = detail.pop("segmentation_run", None)
        if segmentation_run not in segmentation_runs:
            return None
        if kind != "segmentation_run":
            for key in ("entry", "replaces"):
                if detail.get(key) is not None:
                    detail[key] += verdict_shift
        return segmentation_run + run_shift, detail

    _rewrite_events(to_one_table)

    op.drop_index("ix_structure_verdicts_run_id", table_name="structure_verdicts")
    op.drop_table("structure_verdicts")
    op.drop_index("ix_segmentation_runs_case_id", table_name="segmentation_runs")
    op.drop_table("segmentation_runs")

    with op.batch_alter_table("analysis_runs") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=16), nullable=False)
        batch.create_unique_constraint(
            "uq_segmentation_identity", ["case_id", "model_id", "weights_sha256", "label_map_sha256"]
        )
        batch.create_check_constraint("ck_run_kind", RUN_KIND_CHECK)
        batch.create_check_constraint("ck_run_kind_columns", KIND_COLUMNS_CHECK)
    with op.batch_alter_table("run_findings") as batch:
        batch.create_check_constraint("ck_run_finding_band", BAND_CHECK)

    _restart_sequence("analysis_runs")
    _restart_sequence("verdicts")
    _create_append_only_triggers(APPEND_ONLY_AFTER)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    notes = _scalar(
        "SELECT count(*) FROM case_notes n JOIN analysis_runs r ON r.id = n.run_id WHERE r.kind <> 'classification'"
    )
    if notes:
        raise RuntimeError(
            f"{notes} case note(s) belong to segmentation runs, which revision 0004 has no place for, so the "
            "database stays at 0005. Restore the backup taken before the upgrade to go back to an older version."
        )
    _drop_append_only_triggers(APPEND_ONLY_AFTER)

    # 0003's tables, as 0003 made them.
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
        # uq_segmentation_identity comes last: analysis_runs holds that name until then.
    )
    op.create_index("ix_segmentation_runs_case_id", "segmentation_runs", ["case_id"], unique=False)
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

    # The runs keep the ids they have now: 0004's tables number them separately.
    op.execute(
        "INSERT INTO segmentation_runs (id, case_id, input_sha256, model_id, weights_sha256, trained, source, "
        "label_map_sha256, params_json, labels_json, spacing_json, shape_json, device, timing_ms, created_at) "
        "SELECT id, case_id, input_sha256, model_id, weights_sha256, trained, "
        "CASE WHEN kind = 'uploaded-mask' THEN 'uploaded' ELSE 'model' END, label_map_sha256, params_json, "
        "labels_json, spacing_json, shape_json, device, timing_ms, created_at "
        "FROM analysis_runs WHERE kind <> 'classification' ORDER BY id"
    )
    _repoint("run_structures", "run_id", "segmentation_runs")
    op.execute(
        "INSERT INTO structure_verdicts (id, run_id, structure, verdict, note, reviewer, supersedes_id, created_at) "
        "SELECT v.id, v.run_id, v.item, v.verdict, v.note, v.reviewer, v.supersedes_id, v.created_at "
        "FROM verdicts v JOIN analysis_runs r ON r.id = v.run_id WHERE r.kind <> 'classification' ORDER BY v.id"
    )
    segmentation_runs = {
        row[0] for row in op.get_bind().execute(sa.text("SELECT id FROM segmentation_runs")).all()
    }

    def to_separate_tables(kind: str, run_id: int | None, detail: dict) -> tuple[int | None, dict] | None:
        if run_id not in segmentation_runs:
            return None
        return None, {**detail, "segmentation_run": run_id}

    _rewrite_events(to_separate_tables)
    op.execute(
        "DELETE FROM verdicts WHERE run_id IN (SELECT id FROM analysis_runs WHERE kind <> 'classification')"
    )
    op.execute("DELETE FROM analysis_runs WHERE kind <> 'classification'")

    with op.batch_alter_table("analysis_runs") as batch:
        batch.drop_constraint("ck_run_kind_columns", type_="check")
        batch.drop_constraint("ck_run_kind", type_="check")
        batch.drop_constraint("uq_segmentation_identity", type_="unique")
        batch.drop_column("kind")
        for name, _type in SEGMENTATION_COLUMNS:
            batch.drop_column(name)
        for name, type_ in CLASSIFICATION_COLUMNS:
            batch.alter_column(name, existing_type=type_, nullable=False)
    with op.batch_alter_table("segmentation_runs") as batch:
        batch.create_unique_constraint(
            "uq_segmentation_identity", ["case_id", "model_id", "weights_sha256", "label_map_sha256"]
        )
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_constraint("ck_verdict_value", type_="check")
        batch.alter_column("item", new_column_name="finding_label", existing_type=sa.String(length=64))
    with op.batch_alter_table("run_findings") as batch:
        batch.drop_constraint("ck_run_finding_band", type_="check")

    _restart_sequence("segmentation_runs")
    _restart_sequence("structure_verdicts")
    _create_append_only_triggers(APPEND_ONLY_BEFORE)
