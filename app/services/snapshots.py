"""Snapshot retention: expired event snapshots are purged, periodically in the service and on demand
(`facegate events purge-snapshots`). The event rows stay; only their pictures go."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.store import snapshot_queries
from app.store.models import utcnow

log = logging.getLogger(__name__)


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """Snapshots of events before this time are expired."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    return (now or utcnow()) - timedelta(days=retention_days)


def purge_expired(sessions: sessionmaker[Session], retention_days: int, now: datetime | None = None) -> int:
    """Deletes (and commits) the snapshots older than the retention period; how many went."""
    cutoff = retention_cutoff(retention_days, now)
    with sessions() as session:
        removed = snapshot_queries.purge_expired(session, cutoff)
        session.commit()
    if removed:
        log.info("expired snapshots purged", extra={"snapshots": removed, "retention_days": retention_days})
    return removed


async def purge_forever(sessions: sessionmaker[Session], retention_days: int, interval_s: float) -> None:
    """The service's periodic purge: once at start-up, then every ``interval_s``, on a worker thread
    (never on the event loop). A failed purge (the database away) is retried at the next tick."""
    while True:
        try:
            await asyncio.to_thread(purge_expired, sessions, retention_days)
        except SQLAlchemyError:
            log.exception("snapshot purge failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
