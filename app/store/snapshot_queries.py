"""Access event snapshots (table ``event_snapshots``, migration 0009). Nothing here commits.

A snapshot is written in the event's own transaction (``app.api.frames``); it goes when it
expires (``purge_expired``) or with a deleted person's granted events (``delete_granted_for``).
The event rows stay in both cases, so the access log and its audit chain are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, NamedTuple

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from app.store.models import AccessEvent, EventSnapshot

SnapshotKind = Literal["face", "frame"]


class SnapshotFlags(NamedTuple):
    face: bool
    frame: bool


NO_SNAPSHOT = SnapshotFlags(face=False, frame=False)


def add_snapshot(
    session: Session, event: AccessEvent, face_jpeg: bytes, frame_jpeg: bytes | None = None
) -> EventSnapshot:
    """Keeps an event's pictures; their time is the event's (retention counts from it)."""
    if not face_jpeg:
        raise ValueError("a snapshot needs its face crop")
    snapshot = EventSnapshot(
        event_id=event.id, created_at=event.created_at, face_jpeg=face_jpeg, frame_jpeg=frame_jpeg
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def snapshot_image(session: Session, event_id: int, kind: SnapshotKind) -> bytes | None:
    """One picture of an event (only that column is read), or None when it has none of that kind."""
    column = EventSnapshot.face_jpeg if kind == "face" else EventSnapshot.frame_jpeg
    image: bytes | None = session.execute(
        select(column).where(EventSnapshot.event_id == event_id)
    ).scalar_one_or_none()
    return image


def snapshot_flags(session: Session, event_ids: Iterable[int]) -> dict[int, SnapshotFlags]:
    """Which of these events have a snapshot, and which a frame too (one query; no image is read)."""
    ids = list(event_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(EventSnapshot.event_id, EventSnapshot.frame_jpeg.is_not(None)).where(
            EventSnapshot.event_id.in_(ids)
        )
    ).all()
    return {int(event_id): SnapshotFlags(face=True, frame=bool(frame)) for event_id, frame in rows}


def purge_expired(session: Session, before: datetime) -> int:
    """Deletes the snapshots of events older than ``before``; how many went."""
    if before.utcoffset() is None:
        raise ValueError("before must be timezone-aware")
    result = session.execute(
        delete(EventSnapshot)
        .where(EventSnapshot.created_at < before)
        .execution_options(synchronize_session=False)
    )
    return _count(result)


def delete_granted_for(session: Session, person_id: int) -> int:
    """Deletes the snapshots of the events that granted ``person_id`` entry; how many went.

    Denied events keep theirs even when they name the person (a spoof of their face, an
    undetermined liveness): those pictures are evidence of an attempt, not of the person's visits.
    """
    granted = select(AccessEvent.id).where(
        AccessEvent.person_id == person_id, AccessEvent.decision == "granted"
    )
    result = session.execute(
        delete(EventSnapshot)
        .where(EventSnapshot.event_id.in_(granted))
        .execution_options(synchronize_session=False)
    )
    return _count(result)


def _count(result: object) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
