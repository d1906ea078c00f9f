"""The tamper-evident audit log: a hash chain over access events and admin actions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

- ``audit_records``: one link per access event or admin action, numbered by ``seq``; each holds
  the previous link's hash and its own (SHA-256, see app/audit/chain.py).
- ``audit_state``: the one head row (last seq and hash). Writers on every replica take its row
  lock, so there is a single chain, never a fork.
- Access events written before this migration are not chained (hashing them here would freeze
  the hash code into a migration): their number and highest id are kept in ``audit_state``, and
  ``facegate audit verify`` reports them as an unchained prefix. Every later event is chained.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_key_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.Column("target", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("kind IN ('event', 'admin')", name=op.f("ck_audit_records_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_records_seq")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_records_event_id")),
        sqlite_autoincrement=True,
    )
    audit_state = op.create_table(
        "audit_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("legacy_events", sa.BigInteger(), nullable=False),
        sa.Column("legacy_max_event_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_state")),
    )
    count, max_id = op.get_bind().execute(sa.text("SELECT COUNT(*), MAX(id) FROM access_events")).one()
    op.bulk_insert(
        audit_state,
        [
            {
                "id": 1,
                "seq": 0,
                "head_hash": GENESIS,
                "legacy_events": int(count),
                "legacy_max_event_id": int(max_id or 0),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("audit_state")
    op.drop_table("audit_records")
