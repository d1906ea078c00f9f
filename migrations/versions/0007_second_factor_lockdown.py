"""PIN second factor (hashes, lockouts) and site lockdown.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

- ``doors.pin_required``, ``people.pin_required``: a PIN is needed at that door (from everyone) or
  from that person (at every door); both false after the upgrade, so nothing changes until an admin
  turns them on. ``people.pin_hash``: the person's PIN as a salted scrypt hash (app/access/pin.py).
- ``pin_failures``: wrong PINs per person and door, and the lockout they caused (goes with its
  person or door).
- ``lockdowns``: every site lockdown, the one in force has ``active`` = 1 (unique: at most one).
- ``access_events.lockdown_id`` (the lockdown in force at the decision) and
  ``access_events.pin_check`` (what the PIN check found); NULL for older events.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Plain ADD COLUMNs, in place on both backends: no table is recreated, so rows that other
    # tables' foreign keys point at (doors, people) stay where they are.
    for table in ("doors", "people"):
        required = sa.Column("pin_required", sa.Boolean(), server_default=sa.false(), nullable=False)
        op.add_column(table, required)
    op.add_column("people", sa.Column("pin_hash", sa.String(length=200), nullable=True))
    op.add_column("access_events", sa.Column("lockdown_id", sa.BigInteger(), nullable=True))
    op.add_column("access_events", sa.Column("pin_check", sa.String(length=16), nullable=True))
    op.create_table(
        "pin_failures",
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("door_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_pin_failures_person_id_people"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["door_id"], ["doors.id"], name=op.f("fk_pin_failures_door_id_doors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_id", "door_id", name=op.f("pk_pin_failures")),
    )
    op.create_table(
        "lockdowns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("active", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("allowed_group_ids", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by_key_id", sa.Integer(), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by_key_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("mode IN ('all', 'all_but')", name=op.f("ck_lockdowns_mode")),
        sa.CheckConstraint("active = 1", name=op.f("ck_lockdowns_active_one")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lockdowns")),
        sa.UniqueConstraint("active", name=op.f("uq_lockdowns_active")),
        **_AUTOINCREMENT,
    )


def downgrade() -> None:
    op.drop_table("lockdowns")
    op.drop_table("pin_failures")
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35 too): recreating doors or people would
    # trip the foreign keys that point at their rows.
    op.drop_column("access_events", "pin_check")
    op.drop_column("access_events", "lockdown_id")
    op.drop_column("people", "pin_hash")
    op.drop_column("people", "pin_required")
    op.drop_column("doors", "pin_required")
