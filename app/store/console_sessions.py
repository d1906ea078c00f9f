"""Web console sessions (table ``console_sessions``). Nothing here commits: the caller owns the
transaction, as in :mod:`app.store.queries`.

The browser holds a random token in an HTTP-only cookie; the table keeps its SHA-256 only. A
session is live while it is not revoked, not past its absolute expiry, not idle for longer than
the idle timeout, and its API key is live (not revoked, not expired).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.store.models import ApiKey, ConsoleSession, utcnow

# last_seen_at is refreshed at most this often, so that polling pages do not write every request.
LAST_SEEN_RESOLUTION = timedelta(seconds=30)
# Longer cookie values are refused before hashing: ours are 43 characters.
MAX_TOKEN_CHARS = 128


class NewSession(NamedTuple):
    session: ConsoleSession
    token: str  # the cookie value: shown to the browser once, stored only as a hash


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def key_is_live(key: ApiKey, now: datetime) -> bool:
    """The same liveness as API authentication: not revoked and, where keys expire, not expired."""
    if key.revoked_at is not None:
        return False
    # Key expiry (migration 0008) may or may not be in this schema yet; honour it when present.
    expires_at: datetime | None = getattr(key, "expires_at", None)
    return expires_at is None or expires_at > now


def create_session(session: Session, key: ApiKey, *, ttl: timedelta) -> NewSession:
    """A new console session for ``key``; expired and revoked rows of any key are purged."""
    now = utcnow()
    session.execute(
        delete(ConsoleSession).where(
            or_(ConsoleSession.expires_at <= now, ConsoleSession.revoked_at.is_not(None))
        )
    )
    token = secrets.token_urlsafe(32)  # 256 random bits
    row = ConsoleSession(
        token_hash=hash_token(token),
        key_id=key.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return NewSession(row, token)


def find_session(
    session: Session, token: str, *, idle_timeout: timedelta
) -> tuple[ConsoleSession, ApiKey] | None:
    """The live session this cookie token opens, with its key; refreshes last_seen_at (commit
    afterwards to keep it). None for an unknown, revoked, expired or idle session or a dead key."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = session.execute(
        select(ConsoleSession, ApiKey)
        .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
        .where(ConsoleSession.token_hash == hash_token(token))
    ).one_or_none()
    if row is None:
        return None
    console_session, key = row
    now = utcnow()
    if (
        console_session.revoked_at is not None
        or console_session.expires_at <= now
        or console_session.last_seen_at + idle_timeout <= now
        or not key_is_live(key, now)
    ):
        return None
    if now - console_session.last_seen_at >= LAST_SEEN_RESOLUTION:
        console_session.last_seen_at = now
    return console_session, key


def revoke_session(session: Session, session_id: int) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def revoke_key_sessions(session: Session, key_id: int) -> int:
    """Revokes every live session of a key; returns how many."""
    result = session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.key_id == key_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
