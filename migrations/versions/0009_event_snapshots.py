"""Access event snapshots (best face crop, optional full frame).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

- ``event_snapshots``: one row per access event that kept a picture (the event's id), the face crop
  and, for doors that ask, the whole frame (JPEG). ``created_at`` is the event's time: retention
  purges by it. Snapshots are not in the audit chain (they are deleted by design); the event rows
  they belong to are never deleted with them.
- ``doors.snapshot_full_frame``: whether the door's events keep the whole frame; existing doors
  get the private default (off).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_snapshots",
        sa.Column("event_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("face_jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("frame_jpeg", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["access_events.id"],
            name=op.f("fk_event_snapshots_event_id_access_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_snapshots")),
    )
    op.create_index(op.f("ix_event_snapshots_created_at"), "event_snapshots", ["created_at"])
    # In place (no batch rebuild of doors: events' foreign keys point at its rows).
    op.add_column(
        "doors", sa.Column("snapshot_full_frame", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("doors", "snapshot_full_frame")
    op.drop_index(op.f("ix_event_snapshots_created_at"), table_name="event_snapshots")
    op.drop_table("event_snapshots")
