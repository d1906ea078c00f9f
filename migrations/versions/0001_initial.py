"""Initial schema: doors, API keys, people, face templates, access events, gallery change feed.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written from autogenerate's draft and reviewed by hand. Types are spelled out here (not imported
from app.store.models) so this revision keeps meaning the same thing when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit on PostgreSQL; SQLite's rowid alias must be spelled INTEGER.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# timestamptz on PostgreSQL; naive UTC text on SQLite (app.store.models.UTCDateTime adds the zone).
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "doors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_doors")),
        sa.UniqueConstraint("name", name=op.f("uq_doors_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("external_id", name=op.f("uq_people_external_id")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=True),
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("role IN ('admin', 'door', 'auditor')", name=op.f("ck_api_keys_role")),
        sa.CheckConstraint(
            "(role = 'door' AND door_id IS NOT NULL) OR (role <> 'door' AND door_id IS NULL)",
            name=op.f("ck_api_keys_door_binding"),
        ),
        sa.ForeignKeyConstraint(["door_id"], ["doors.id"], name=op.f("fk_api_keys_door_id_doors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"], unique=False)

    op.create_table(
        "face_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_face_templates_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_templates")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_face_templates_model_version"), "face_templates", ["model_version"], unique=False
    )
    op.create_index(op.f("ix_face_templates_person_id"), "face_templates", ["person_id"], unique=False)

    op.create_table(
        "access_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        # No foreign key: events outlive the people they name.
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("best_distance", sa.Double(), nullable=True),
        sa.Column("second_distance", sa.Double(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("frames_with_face", sa.Integer(), nullable=False),
        sa.Column("liveness", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.CheckConstraint("decision IN ('granted', 'denied')", name=op.f("ck_access_events_decision")),
        sa.ForeignKeyConstraint(["door_id"], ["doors.id"], name=op.f("fk_access_events_door_id_doors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_events")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_events_created_at_id", "access_events", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_access_events_door_id_created_at_id",
        "access_events",
        ["door_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_access_events_person_id_created_at_id",
        "access_events",
        ["person_id", "created_at", "id"],
        unique=False,
    )

    gallery_state = op.create_table(
        "gallery_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_gallery_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_state")),
    )
    # The one row every template insert/delete bumps.
    op.bulk_insert(gallery_state, [{"id": 1, "version": 0}])

    op.create_table(
        "gallery_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("op IN ('add', 'delete')", name=op.f("ck_gallery_changes_op")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_gallery_changes_version"), "gallery_changes", ["version"], unique=False)


def downgrade() -> None:
    op.drop_table("gallery_changes")
    op.drop_table("gallery_state")
    op.drop_table("access_events")
    op.drop_table("face_templates")
    op.drop_table("api_keys")
    op.drop_table("people")
    op.drop_table("doors")
