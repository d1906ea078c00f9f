"""Per-door liveness policy: whether liveness is required, and what an undetermined burst does.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Existing doors get the secure defaults (required, deny when undetermined) through server defaults,
so an upgrade never leaves a door more permissive than a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a CHECK constraint to an existing table in place.
    with op.batch_alter_table("doors") as batch:
        batch.add_column(
            sa.Column("liveness_required", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("liveness_undetermined", sa.String(length=8), server_default="deny", nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_doors_liveness_undetermined"), "liveness_undetermined IN ('deny', 'grant')"
        )


def downgrade() -> None:
    with op.batch_alter_table("doors") as batch:
        batch.drop_constraint(op.f("ck_doors_liveness_undetermined"), type_="check")
        batch.drop_column("liveness_undetermined")
        batch.drop_column("liveness_required")
