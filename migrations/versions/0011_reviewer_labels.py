"""Reviewer labels on access events (training data).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

- ``event_labels``: at most one label per access event, set by an auditor or admin: the decision
  was ``correct``, the face was another enrolled person (``wrong_person``, naming them in
  ``true_person_id``), a ``stranger`` (nobody enrolled), or a ``spoof`` (a presentation attack).
  A new label replaces the old one (``updated_at``); every change is an admin action in the audit
  chain. No foreign keys to people or keys: a deleted person or revoked key leaves the label.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_labels",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("true_person_id", sa.Integer(), nullable=True),
        sa.Column("reviewer_key_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "label IN ('correct', 'wrong_person', 'stranger', 'spoof')", name=op.f("ck_event_labels_label")
        ),
        sa.CheckConstraint(
            "(label = 'wrong_person') = (true_person_id IS NOT NULL)",
            name=op.f("ck_event_labels_true_person"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["access_events.id"],
            name=op.f("fk_event_labels_event_id_access_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_labels")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_labels_event_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_event_labels_label"), "event_labels", ["label"])


def downgrade() -> None:
    op.drop_index(op.f("ix_event_labels_label"), table_name="event_labels")
    op.drop_table("event_labels")
