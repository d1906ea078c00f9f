"""SQL for the PIN second factor (PIN hashes, wrong-PIN counts and lockouts) and site lockdowns.

Every replica reads and writes the same rows, so a lockout or a lockdown holds at every door at
once. Group membership is read from the access rules' tables (migration 0006) by table name, so
this module depends on their schema, not on their Python classes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import column, delete, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.access.lockdown import LockdownRule, validate_lockdown
from app.access.pin import FailureState
from app.store.models import Door, Lockdown, Person, PinFailure, utcnow

_GROUPS = table("access_groups", column("id"))
_MEMBERS = table("access_group_members", column("group_id"), column("person_id"))


# --- PINs ----------------------------------------------------------------------------------------


def set_pin_hash(session: Session, person: Person, pin_hash: str | None) -> None:
    """Set (or clear, None) a person's PIN hash; their wrong-PIN counts and lockouts go with the old PIN."""
    person.pin_hash = pin_hash
    clear_pin_failures(session, person.id)
    session.flush()


def clear_pin_failures(session: Session, person_id: int) -> int:
    """Forget a person's wrong PINs and lockouts at every door; the number of rows removed."""
    result = session.execute(delete(PinFailure).where(PinFailure.person_id == person_id))
    return int(getattr(result, "rowcount", 0) or 0)


def pin_failures(session: Session, person_id: int) -> list[PinFailure]:
    return list(
        session.scalars(
            select(PinFailure).where(PinFailure.person_id == person_id).order_by(PinFailure.door_id)
        )
    )


def lock_pin_state(session: Session, person_id: int, door_id: int) -> FailureState:
    """The person's wrong-PIN state at the door, with its row locked until the transaction ends, so
    that concurrent attempts (on any replica) count one after the other. The row is created when
    missing (insert-or-ignore: two first attempts at once cannot both create it)."""
    values = {"person_id": person_id, "door_id": door_id, "failures": 0, "updated_at": utcnow()}
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(PinFailure).values(**values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(PinFailure).values(**values).on_conflict_do_nothing())
    row = session.execute(
        select(PinFailure.failures, PinFailure.locked_until)
        .where(PinFailure.person_id == person_id, PinFailure.door_id == door_id)
        .with_for_update()
    ).one()
    return FailureState(int(row.failures), row.locked_until)


def peek_pin_state(session: Session, person_id: int, door_id: int) -> FailureState:
    """The state without locking or creating anything (a read-only look)."""
    row = session.execute(
        select(PinFailure.failures, PinFailure.locked_until).where(
            PinFailure.person_id == person_id, PinFailure.door_id == door_id
        )
    ).first()
    return FailureState() if row is None else FailureState(int(row.failures), row.locked_until)


def save_pin_state(session: Session, person_id: int, door_id: int, state: FailureState) -> None:
    """Store the state that lock_pin_state's row now has (a clean state deletes the row)."""
    where = (PinFailure.person_id == person_id, PinFailure.door_id == door_id)
    if state == FailureState():
        session.execute(delete(PinFailure).where(*where))
        return
    session.execute(
        update(PinFailure)
        .where(*where)
        .values(failures=state.failures, locked_until=state.locked_until, updated_at=utcnow())
    )


def set_person_pin_required(session: Session, person_ids: Collection[int], required: bool) -> list[int]:
    """Set people's pin_required; the ids whose flag changed (existing people only), ascending."""
    if not person_ids:
        return []
    changed = list(
        session.scalars(
            select(Person.id)
            .where(Person.id.in_(sorted(set(person_ids))), Person.pin_required.is_not(required))
            .order_by(Person.id)
        )
    )
    if changed:
        session.execute(update(Person).where(Person.id.in_(changed)).values(pin_required=required))
    return changed


def people_without_pin(session: Session, person_ids: Collection[int]) -> list[int]:
    """Of these people, those who have no PIN set (they cannot pass a door that asks for one)."""
    if not person_ids:
        return []
    return list(
        session.scalars(
            select(Person.id)
            .where(Person.id.in_(sorted(set(person_ids))), Person.pin_hash.is_(None))
            .order_by(Person.id)
        )
    )


def door_pin_required(session: Session, door_id: int) -> bool:
    return bool(session.scalar(select(Door.pin_required).where(Door.id == door_id)))


# --- lockdown ------------------------------------------------------------------------------------


def active_lockdown(session: Session) -> Lockdown | None:
    return session.scalars(select(Lockdown).where(Lockdown.active == 1)).first()


def lockdown_rule(lockdown: Lockdown | None) -> LockdownRule | None:
    if lockdown is None:
        return None
    mode = validate_lockdown(lockdown.mode, lockdown.allowed_group_ids)
    return LockdownRule(lockdown.id, mode, frozenset(int(g) for g in lockdown.allowed_group_ids))


def person_group_ids(session: Session, person_id: int) -> set[int]:
    return {
        int(g) for g in session.scalars(select(_MEMBERS.c.group_id).where(_MEMBERS.c.person_id == person_id))
    }


def missing_groups(session: Session, group_ids: Collection[int]) -> list[int]:
    """Of these access group ids, those that name no group."""
    wanted = sorted(set(group_ids))
    if not wanted:
        return []
    found = {int(g) for g in session.scalars(select(_GROUPS.c.id).where(_GROUPS.c.id.in_(wanted)))}
    return [g for g in wanted if g not in found]


def lift_lockdown(session: Session, key_id: int | None, now: datetime | None = None) -> Lockdown | None:
    """End the lockdown in force (None when there is none)."""
    current = session.scalars(select(Lockdown).where(Lockdown.active == 1).with_for_update()).first()
    if current is None:
        return None
    current.active = None
    current.lifted_at = now or utcnow()
    current.lifted_by_key_id = key_id
    session.flush()
    return current


def start_lockdown(
    session: Session,
    *,
    mode: str,
    allowed_group_ids: Sequence[int],
    note: str | None,
    key_id: int | None,
    now: datetime | None = None,
) -> tuple[Lockdown, Lockdown | None]:
    """Put the site in lockdown; one already in force is lifted in the same transaction (its
    successor replaces it). Raises ValueError on a bad mode/group pair; IntegrityError when another
    writer started one at the same moment (the unique ``active`` keeps one in force)."""
    validate_lockdown(mode, allowed_group_ids)
    when = now or utcnow()
    previous = lift_lockdown(session, key_id, when)
    lockdown = Lockdown(
        active=1,
        mode=mode,
        allowed_group_ids=sorted(set(int(g) for g in allowed_group_ids)),
        note=note,
        started_at=when,
        started_by_key_id=key_id,
    )
    session.add(lockdown)
    session.flush()
    return lockdown, previous


def list_lockdowns(session: Session, limit: int = 20) -> list[Lockdown]:
    """The latest lockdowns, newest first (the one in force, if any, among them)."""
    return list(session.scalars(select(Lockdown).order_by(Lockdown.id.desc()).limit(limit)))
