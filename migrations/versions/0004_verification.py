"""Face verification (1:1): the verifier role, door claim mode, the claim on each event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

- ``api_keys.role`` may be ``verifier`` (1:1 verification only: kiosks, helpdesks).
- ``doors.mode``: ``identify`` (1:K, as before: the server default, so existing doors keep
  working), ``claim`` (badge + face: 1:1 against the claimed person) or ``both``.
- ``access_events.mode`` and ``access_events.claim``: which question the decision answered and
  the claim the door sent; ``access_events.tau`` (0003) holds the τ used, 1:1 or 1:K. NULL for
  older events.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# batch mode: SQLite cannot change a CHECK constraint in place; the copy keeps AUTOINCREMENT.
_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint(op.f("ck_api_keys_role"), type_="check")
        batch.create_check_constraint(
            op.f("ck_api_keys_role"), "role IN ('admin', 'door', 'auditor', 'verifier')"
        )
    with op.batch_alter_table("doors", table_kwargs=_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("mode", sa.String(length=16), server_default="identify", nullable=False))
        batch.create_check_constraint(op.f("ck_doors_mode"), "mode IN ('identify', 'claim', 'both')")
    # Plain ADD COLUMNs: done in place on SQLite.
    op.add_column("access_events", sa.Column("mode", sa.String(length=16), nullable=True))
    op.add_column("access_events", sa.Column("claim", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch:
        batch.drop_column("claim")
        batch.drop_column("mode")
    with op.batch_alter_table("doors", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint(op.f("ck_doors_mode"), type_="check")
        batch.drop_column("mode")
    op.execute("DELETE FROM api_keys WHERE role = 'verifier'")
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint(op.f("ck_api_keys_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_keys_role"), "role IN ('admin', 'door', 'auditor')")
