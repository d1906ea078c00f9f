"""The audit chain's hash: SHA-256 over a canonical serialisation of a record and the previous hash.

It lives in the store room (pure standard library, no SQL) because the store links every access
event in the same transaction as it writes it; ``app.audit.log``, the room above, recomputes
every link when it verifies and records admin actions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# The previous hash of the first record.
GENESIS = "0" * 64

# Every column of access_events, in the hash: changing any of them breaks the event's link.
EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "door_id",
    "decision",
    "reason",
    "person_id",
    "best_distance",
    "second_distance",
    "tau",
    "mode",
    "claim",
    "frames",
    "frames_with_face",
    "liveness",
    "latency_ms",
    "model_version",
    "request_id",
)
# Columns added to access_events after migration 0005. A link covers such a column only when it
# is not NULL, so the links written before the column existed still verify unchanged; a later
# edit that sets or changes it breaks the link like any other edit.
EVENT_OPTIONAL_FIELDS: tuple[str, ...] = (
    "rule",  # 0006: the access rule that decided
    "lockdown_id",  # 0007: the lockdown in force at the decision
    "pin_check",  # 0007: what the PIN check found (never the PIN)
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in an audit record")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical(body: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, datetimes as UTC ISO 8601 with microseconds; floats as Python's
    shortest round-trip repr (both backends give back the same double); NaN as NaN."""
    plain = {key: _plain(value) for key, value in body.items()}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_body(event: Any) -> dict[str, Any]:
    """What an access event's link covers: all of its columns (the later ones when set)."""
    body = {name: getattr(event, name) for name in EVENT_FIELDS}
    for name in EVENT_OPTIONAL_FIELDS:
        value = getattr(event, name)
        if value is not None:
            body[name] = value
    return body


def admin_body(actor_key_id: int | None, action: str, target: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"actor_key_id": actor_key_id, "action": action, "target": dict(target or {})}


def link_hash(prev_hash: str, seq: int, kind: str, created_at: datetime, body: Mapping[str, Any]) -> str:
    """The hash of one record: it covers its position (seq), its kind and time, its content, and
    the previous record's hash, so that altering, removing or inserting a record breaks a link."""
    header = canonical({"seq": seq, "kind": kind, "created_at": created_at, "prev": prev_hash})
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(header)
    digest.update(b"\n")
    digest.update(canonical(body))
    return digest.hexdigest()
