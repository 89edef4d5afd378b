"""Verdicts: the reader's own class when they disagree with a classifier of exclusive classes.

"Disagree: it is a meningioma" is what a reader means when a brain tumour model says glioma; the
class they name is stored with the verdict, so the AI-versus-reader confusion matrix can be built.
Nullable: findings of independent labels (chest X-ray) and structures have none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("reader_label", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verdicts") as batch:
        batch.drop_column("reader_label")
