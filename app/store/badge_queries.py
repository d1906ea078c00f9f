"""Revoked badge numbers: claim doors refuse them (``revoked_claim``) before any face is compared."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.store.models import RevokedBadge
from app.store.queries import get_person_by_external_id


def revoked_badge(session: Session, claim: str) -> RevokedBadge | None:
    """The revocation of the badge a claim names, if any (``id:<n>`` claims are not badges)."""
    if claim.startswith("id:"):
        return None
    return session.scalars(select(RevokedBadge).where(RevokedBadge.badge == claim)).one_or_none()


def revoke_badge(
    session: Session, badge: str, key_id: int | None, note: str | None
) -> tuple[RevokedBadge, bool]:
    """Revoke a badge number; True when it is new (an existing revocation is returned unchanged)."""
    existing = revoked_badge(session, badge)
    if existing is not None:
        return existing, False
    holder = get_person_by_external_id(session, badge)
    row = RevokedBadge(
        badge=badge, person_id=None if holder is None else holder.id, revoked_by_key_id=key_id, note=note
    )
    session.add(row)
    session.flush()
    return row, True


def list_revoked_badges(session: Session) -> list[RevokedBadge]:
    return list(session.scalars(select(RevokedBadge).order_by(RevokedBadge.id)))


def restore_badge(session: Session, badge: str) -> bool:
    """Lift a revocation; False when the badge was not revoked."""
    row = revoked_badge(session, badge)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
