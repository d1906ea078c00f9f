"""Model profiles: kept enrolment photos, the gallery's active template version, the tau of each event.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

- ``enrolment_photos`` keeps each accepted enrolment photo (unless the operator turns it off), so
  ``facegate gallery reencode`` can build another profile's templates without re-enrolment;
  deleting a person deletes their photos (ON DELETE CASCADE). ``face_templates.photo_id`` links a
  template to the photo it came from (no foreign key: photos and templates both go with their
  person, and an in-place ADD COLUMN keeps SQLite's AUTOINCREMENT on the templates table).
- ``gallery_state.active_version`` is the template version the service matches against. NULL
  (every existing install) means the configured profile's version, as before; a reencode
  switches it in one transaction, and replicas follow.
- ``access_events.tau`` records the 1:K threshold each decision used; NULL for older events.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrolment_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_enrolment_photos_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_photos")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_enrolment_photos_person_id"), "enrolment_photos", ["person_id"], unique=False)
    # Plain ADD COLUMNs: done in place on SQLite, so the tables keep their AUTOINCREMENT.
    op.add_column("face_templates", sa.Column("photo_id", sa.Integer(), nullable=True))
    op.add_column("gallery_state", sa.Column("active_version", sa.String(length=64), nullable=True))
    op.add_column("access_events", sa.Column("tau", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch:
        batch.drop_column("tau")
    with op.batch_alter_table("gallery_state") as batch:
        batch.drop_column("active_version")
    with op.batch_alter_table("face_templates") as batch:
        batch.drop_column("photo_id")
    op.drop_index(op.f("ix_enrolment_photos_person_id"), table_name="enrolment_photos")
    op.drop_table("enrolment_photos")
