"""Revoked badges: a lost or withdrawn badge number is refused at claim doors with its own reason.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

A badge is revoked by its number, not by its holder: the number stays refused (reason
``revoked_claim``) even after the person gets a new badge, and a person whose badge is revoked is
still recognised at identify doors. The table holds badge numbers and who revoked them, nothing
biometric.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_badges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("badge", sa.String(length=200), nullable=False),
        # The holder when it was revoked (no foreign key: the person may be deleted later).
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by_key_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revoked_badges")),
        sa.UniqueConstraint("badge", name=op.f("uq_revoked_badges_badge")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("revoked_badges")
