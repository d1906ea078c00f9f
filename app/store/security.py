"""Queries for signed requests (nonces) and alerts. Nothing here commits: the caller owns the transaction.

The nonce insert is the one exception to "flush when needed": it must meet the primary key on
(door_id, nonce) in the database, so it flushes, and the caller commits it at once in a session
of its own (on PostgreSQL a failed insert spoils the rest of its transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.store.models import AccessEvent, Alert, Door, RequestNonce

# --- nonces of signed door requests -------------------------------------------------------------


def claim_nonce(session: Session, door_id: int, nonce: str, expires_at: datetime) -> bool:
    """Record a nonce as used; False when any replica recorded it already (a replay). The session
    is rolled back on False; on True the caller commits."""
    session.add(RequestNonce(door_id=door_id, nonce=nonce, expires_at=expires_at))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return False
    return True


def purge_nonces(session: Session, now: datetime) -> int:
    """Delete the nonces whose requests are past the clock window (they would be refused anyway)."""
    result = session.execute(
        delete(RequestNonce).where(RequestNonce.expires_at < now).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- alerts ------------------------------------------------------------------------------------


class RecentEvent(NamedTuple):
    id: int
    created_at: datetime
    decision: str
    reason: str


def lock_door(session: Session, door_id: int) -> bool:
    """Take the door row's lock (PostgreSQL; SQLite has one writer anyway) until the caller
    commits, so that replicas judge one door's streak one after another. False: no such door."""
    return session.scalar(select(Door.id).where(Door.id == door_id).with_for_update()) is not None


def latest_events(session: Session, door_id: int, limit: int) -> list[RecentEvent]:
    """The door's last ``limit`` access events, newest first (index door_id, created_at, id)."""
    rows = session.execute(
        select(AccessEvent.id, AccessEvent.created_at, AccessEvent.decision, AccessEvent.reason)
        .where(AccessEvent.door_id == door_id)
        .order_by(AccessEvent.created_at.desc(), AccessEvent.id.desc())
        .limit(limit)
    ).all()
    return [RecentEvent(int(r[0]), r[1], r[2], r[3]) for r in rows]


def latest_alert(session: Session, door_id: int, kind: str) -> Alert | None:
    """The door's newest alert of this kind."""
    return session.scalars(
        select(Alert).where(Alert.door_id == door_id, Alert.kind == kind).order_by(Alert.id.desc()).limit(1)
    ).first()


def add_alert(
    session: Session, kind: str, door_id: int, details: dict[str, Any], created_at: datetime
) -> Alert:
    alert = Alert(kind=kind, door_id=door_id, details=details, created_at=created_at)
    session.add(alert)
    session.flush()
    return alert


def list_alerts(
    session: Session, *, door_id: int | None = None, before_id: int | None = None, limit: int = 50
) -> Sequence[Alert]:
    """Newest first (by id); ``before_id`` pages on from the last id of the previous page."""
    stmt = select(Alert)
    if door_id is not None:
        stmt = stmt.where(Alert.door_id == door_id)
    if before_id is not None:
        stmt = stmt.where(Alert.id < before_id)
    return session.scalars(stmt.order_by(Alert.id.desc()).limit(limit)).all()
