"""Access groups, grants with weekly schedules, holidays, per-person validity.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

- ``access_groups`` and ``access_group_members``: groups of people (a membership goes with its
  person or its group).
- ``access_schedules`` and ``access_schedule_windows``: weekly windows in the site's local time
  (FACEGATE_SITE_TIMEZONE): weekdays as a bit mask (bit 0 = Monday), start and end in minutes after
  local midnight (end <= start crosses midnight, end = start is 24 hours); ``applies_on_holidays``.
- ``access_grants``: group -> door, optionally limited to a schedule (a schedule in use cannot be
  deleted). One grant per group and door.
- ``access_holidays``: site-local dates on which scheduled grants are closed.
- ``people.valid_from`` / ``people.valid_until``: when the person may enter at all (NULL: no bound).
- ``access_events.rule``: which access rule decided (NULL for events before this revision, and for
  decisions that never reached the access rules).

Existing installs keep working: no door has a grant after the upgrade, and a door without grants
is open to every enrolled person; everyone's validity is unbounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "access_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_access_groups_name")),
        **_AUTOINCREMENT,
    )
    op.create_table(
        "access_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["access_groups.id"],
            name=op.f("fk_access_group_members_group_id_access_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_access_group_members_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "person_id", name=op.f("pk_access_group_members")),
    )
    op.create_index(
        op.f("ix_access_group_members_person_id"), "access_group_members", ["person_id"], unique=False
    )
    op.create_table(
        "access_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("applies_on_holidays", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_access_schedules_name")),
        **_AUTOINCREMENT,
    )
    op.create_table(
        "access_schedule_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.CheckConstraint("days BETWEEN 1 AND 127", name=op.f("ck_access_schedule_windows_days")),
        sa.CheckConstraint(
            "start_minute >= 0 AND start_minute < 1440 AND end_minute > 0 AND end_minute <= 1440",
            name=op.f("ck_access_schedule_windows_minutes"),
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["access_schedules.id"],
            name=op.f("fk_access_schedule_windows_schedule_id_access_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_schedule_windows")),
    )
    op.create_index(
        op.f("ix_access_schedule_windows_schedule_id"),
        "access_schedule_windows",
        ["schedule_id"],
        unique=False,
    )
    op.create_table(
        "access_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["access_groups.id"],
            name=op.f("fk_access_grants_group_id_access_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["door_id"], ["doors.id"], name=op.f("fk_access_grants_door_id_doors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["access_schedules.id"],
            name=op.f("fk_access_grants_schedule_id_access_schedules"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
        sa.UniqueConstraint("door_id", "group_id", name=op.f("uq_access_grants_door_id_group_id")),
        **_AUTOINCREMENT,
    )
    op.create_index(op.f("ix_access_grants_group_id"), "access_grants", ["group_id"], unique=False)
    op.create_index(op.f("ix_access_grants_schedule_id"), "access_grants", ["schedule_id"], unique=False)
    op.create_table(
        "access_holidays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_holidays")),
        sa.UniqueConstraint("day", name=op.f("uq_access_holidays_day")),
        **_AUTOINCREMENT,
    )
    # Plain ADD COLUMNs, in place on SQLite too. No batch copy of ``people``: on SQLite it would
    # drop the table, and with foreign keys on that cascades to every face template. (The order
    # valid_from < valid_until is checked by app.services.access.)
    op.add_column("people", sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True))
    op.add_column("people", sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("access_events", sa.Column("rule", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35 too): never a copy of ``people``.
    op.drop_column("access_events", "rule")
    op.drop_column("people", "valid_until")
    op.drop_column("people", "valid_from")
    op.drop_table("access_holidays")
    op.drop_index(op.f("ix_access_grants_schedule_id"), table_name="access_grants")
    op.drop_index(op.f("ix_access_grants_group_id"), table_name="access_grants")
    op.drop_table("access_grants")
    op.drop_index(op.f("ix_access_schedule_windows_schedule_id"), table_name="access_schedule_windows")
    op.drop_table("access_schedule_windows")
    op.drop_table("access_schedules")
    op.drop_index(op.f("ix_access_group_members_person_id"), table_name="access_group_members")
    op.drop_table("access_group_members")
    op.drop_table("access_groups")
