"""What ``facegate explain --event`` reads: the matched person's kept enrolment photos. Read only."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.store.models import EnrolmentPhoto
from app.store.queries import KeptPhoto


def person_photos(session: Session, person_id: int, limit: int = 20) -> list[KeptPhoto]:
    """The person's kept enrolment photos (FACEGATE_KEEP_ENROLMENT_PHOTOS), oldest first, at most
    ``limit``."""
    rows = session.execute(
        select(EnrolmentPhoto.id, EnrolmentPhoto.person_id, EnrolmentPhoto.image, EnrolmentPhoto.image_sha256)
        .where(EnrolmentPhoto.person_id == person_id)
        .order_by(EnrolmentPhoto.id)
        .limit(limit)
    ).all()
    return [KeptPhoto(int(r[0]), int(r[1]), bytes(r[2]), str(r[3])) for r in rows]
