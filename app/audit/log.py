"""Append admin actions to the audit chain and verify the whole chain.

One chain for the whole site: every append takes the ``audit_state`` row lock (see
``app.store.queries.append_audit``), so replicas on one PostgreSQL never fork it.

What a chain cannot show on its own: someone with write access who rewrites every record after
the one they changed, and the head row too. ``verify`` prints the head (seq and hash); keeping
it elsewhere from time to time (a ticket, a log shipper) closes that gap up to that point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.store import queries
from app.store.audit_chain import GENESIS, admin_body, event_body, link_hash
from app.store.models import AccessEvent, AuditRecord, AuditState, utcnow

# The admin actions recorded; targets carry ids and settings, never faces, photos or secrets.
AdminAction = Literal[
    "person.create",
    "person.delete",
    "face.enrol",
    "face.delete",
    "key.create",
    "key.revoke",
    "door.create",
    "door.update",
    "door.signing_secret",  # a door's signing secret issued (generation, master key id; never the secret)
    # Web console (app/console): who opened and closed a session (session id; never the token).
    "console.sign_in",
    "console.sign_out",
    # Revoked badges (app/api/badges.py).
    "badge.revoke",
    "badge.restore",
    # Second factor and lockdown (app/access/pin.py, app/access/lockdown.py): never a PIN or its hash.
    "person.pin_set",
    "person.pin_clear",
    "person.pin_unlock",
    "person.pin_required",
    "pin.lookalikes",
    "lockdown.start",
    "lockdown.lift",
    # Access rules (app/access): groups, memberships, grants, schedules, holidays, validity.
    "group.create",
    "group.update",
    "group.delete",
    "group.member_add",
    "group.member_remove",
    "grant.create",
    "grant.update",
    "grant.delete",
    "schedule.create",
    "schedule.update",
    "schedule.delete",
    "holiday.create",
    "holiday.delete",
    "person.validity",
    "event.label",
]

# Rows read per round trip while walking the chain.
_BATCH = 1000

ProblemKind = Literal["altered", "missing", "inserted"]


@dataclass(frozen=True)
class Problem:
    """The first break in the chain: what (altered, missing, inserted), where (table and id)."""

    kind: ProblemKind
    table: Literal["access_events", "audit_records"]
    id: int
    detail: str

    def __str__(self) -> str:
        noun = "event" if self.table == "access_events" else "audit record"
        return f"{self.kind} {noun} {self.id}: {self.detail}"


@dataclass(frozen=True)
class VerifyResult:
    records: int  # links walked
    events: int  # chained access events
    admin_actions: int
    legacy_events: int  # access events from before the chain (migration 0005), not chained
    head_seq: int
    head_hash: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def record_admin_action(
    session: Session, actor_key_id: int | None, action: AdminAction, target: Mapping[str, Any] | None = None
) -> AuditRecord:
    """Link an admin action (who: key id, None for the local CLI; what: action and target ids;
    when: now) in the caller's transaction, so it commits with the change it records."""
    plain = dict(target or {})
    return queries.append_audit(
        session,
        "admin",
        utcnow(),
        admin_body(actor_key_id, action, plain),
        actor_key_id=actor_key_id,
        action=action,
        target=plain,
    )


def _record_body(record: AuditRecord, event: AccessEvent | None) -> dict[str, Any]:
    if event is not None:
        return event_body(event)
    return admin_body(record.actor_key_id, record.action or "", record.target)


def _check_link(record: AuditRecord, event: AccessEvent | None, prev: str, expected: int) -> Problem | None:
    """The first thing wrong with one link, given the previous link's hash and the expected seq."""
    if record.seq != expected:
        gap = f"seq {expected} to {record.seq - 1} missing before this record"
        return Problem("missing", "audit_records", record.id, gap)
    body = _record_body(record, event)
    if (
        body is None
        or link_hash(record.prev_hash, record.seq, record.kind, record.created_at, body) != record.hash
    ):
        differs = f"its hash (seq {record.seq}) differs"
        if event is not None:
            return Problem("altered", "access_events", event.id, differs)
        return Problem("altered", "audit_records", record.id, differs)
    if record.prev_hash != prev:
        unlinked = (
            f"seq {record.seq} does not link to seq {record.seq - 1}: a record was replaced or inserted"
        )
        return Problem("inserted", "audit_records", record.id, unlinked)
    return None


def _check_beyond_head(session: Session, head_seq: int) -> Problem | None:
    """A record past the head is an insertion, unless a writer appended it (and moved the head, in
    the same transaction) while we walked: the head is read again after the record."""
    last = session.scalars(
        select(AuditRecord).where(AuditRecord.seq > head_seq).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    if last is None:
        return None
    head_now = session.scalar(select(AuditState.seq).where(AuditState.id == 1)) or 0
    if last.seq <= head_now:
        return None
    return Problem("inserted", "audit_records", last.id, f"seq {last.seq} is past the head {head_now}")


def _check_events(session: Session, legacy: int, legacy_max: int) -> Problem | None:
    """Every access event after the legacy prefix has a link; the prefix kept its size."""
    unlinked = session.scalars(
        select(AccessEvent.id)
        .outerjoin(AuditRecord, AuditRecord.event_id == AccessEvent.id)
        .where(AuditRecord.id.is_(None), AccessEvent.id > legacy_max)
        .order_by(AccessEvent.id)
        .limit(1)
    ).first()
    if unlinked is not None:
        return Problem("inserted", "access_events", unlinked, "not in the chain")
    legacy_now = session.scalar(select(func.count()).where(AccessEvent.id <= legacy_max)) or 0
    if legacy_now == legacy:
        return None
    first = session.scalars(
        select(AccessEvent.id).where(AccessEvent.id <= legacy_max).order_by(AccessEvent.id).limit(1)
    ).first()
    changed = (
        f"the unchained prefix (ids <= {legacy_max}) holds {legacy_now} events; migration 0005 found {legacy}"
    )
    return Problem(
        "inserted" if legacy_now > legacy else "missing", "access_events", int(first or 0), changed
    )


def verify(session: Session) -> VerifyResult:
    """Walk the chain in seq order and recompute every link; stops at the first break.

    - an altered event or admin record: its recomputed hash differs (reported by the event's id
      for events, else the record's id);
    - a deleted event: its link is there, the event is not (missing event id);
    - a deleted link: a gap in seq, or a prev_hash that is not the previous record's hash;
    - an inserted event: an access event after the legacy prefix without a link; an inserted
      link: a record past the head, or one whose prev_hash is not the previous record's hash.

    Safe while the service writes: the walk stops at the head read first; records appended
    meanwhile are beyond it, and their events have links.
    """
    state = session.get(AuditState, 1)
    if state is None:
        raise LookupError("audit_state has no row: run `facegate db upgrade`")
    head_seq, head_hash = int(state.seq), state.head_hash
    legacy, legacy_max = int(state.legacy_events), int(state.legacy_max_event_id)
    prev, walked, events = GENESIS, 0, 0
    problem: Problem | None = None
    while problem is None:
        rows = session.execute(
            select(AuditRecord, AccessEvent)
            .outerjoin(AccessEvent, AccessEvent.id == AuditRecord.event_id)
            .where(AuditRecord.seq > walked, AuditRecord.seq <= head_seq)
            .order_by(AuditRecord.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for record, event in rows:
            if record.kind == "event" and event is None:
                deleted = f"deleted (its link is seq {record.seq})"
                problem = Problem("missing", "access_events", record.event_id or 0, deleted)
                break
            problem = _check_link(record, event, prev, walked + 1)
            if problem is not None:
                break
            prev, walked = record.hash, walked + 1
            events += record.kind == "event"
    if problem is None and (walked != head_seq or prev != head_hash):
        ends = f"the chain ends at seq {walked} but the head is seq {head_seq}"
        problem = Problem("missing", "audit_records", head_seq, ends)
    if problem is None:
        problem = _check_beyond_head(session, head_seq)
    if problem is None:
        problem = _check_events(session, legacy, legacy_max)
    return VerifyResult(walked, events, walked - events, legacy, head_seq, head_hash, problem)
