"""Signed door requests (per-door secrets, nonces), key expiry, alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

- ``doors.signing_required``: the door refuses unsigned bursts (existing doors: false, so an
  upgrade changes nothing until an admin turns it on); ``doors.signing_generation``: which
  derivation of the door's signing secret is current (0: none issued yet; issuing bumps it, so a
  new secret retires the old one); ``doors.signing_key_id``: the fingerprint of the master key
  that issued it (replicas with another master key say so instead of failing quietly). The
  database never holds a usable secret: each is derived from the master key (app/services/signing.py).
- ``request_nonces``: nonces seen in signed requests, one row per (door, nonce) (the primary key is
  the unique constraint every replica's insert meets), purged once past ``expires_at``.
- ``api_keys.expires_at``: an optional expiry (NULL: never).
- ``alerts``: raised alerts (a streak of spoof / unknown-person bursts at one door).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs, in place on both backends: a batch rebuild of doors on SQLite would drop
    # the table that access events' foreign keys point at, and fail once any event exists.
    op.add_column(
        "doors", sa.Column("signing_required", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("doors", sa.Column("signing_generation", sa.Integer(), server_default="0", nullable=False))
    op.add_column("doors", sa.Column("signing_key_id", sa.String(length=16), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "request_nonces",
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["door_id"], ["doors.id"], name=op.f("fk_request_nonces_door_id_doors")),
        sa.PrimaryKeyConstraint("door_id", "nonce", name=op.f("pk_request_nonces")),
    )
    op.create_index(op.f("ix_request_nonces_expires_at"), "request_nonces", ["expires_at"])
    op.create_table(
        "alerts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint("kind IN ('burst_streak')", name=op.f("ck_alerts_kind")),
        sa.ForeignKeyConstraint(["door_id"], ["doors.id"], name=op.f("fk_alerts_door_id_doors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alerts_door_id_created_at", "alerts", ["door_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_door_id_created_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_request_nonces_expires_at"), table_name="request_nonces")
    op.drop_table("request_nonces")
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35 too), for the same reason.
    op.drop_column("api_keys", "expires_at")
    op.drop_column("doors", "signing_key_id")
    op.drop_column("doors", "signing_generation")
    op.drop_column("doors", "signing_required")
