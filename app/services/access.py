"""Access rules as use cases: the authorization step of a door decision, and the admin changes to
groups, grants, schedules, holidays and validity (each one an audit record in the same transaction).

Nothing here commits: the caller (an API route, a CLI command) owns the transaction. Refusals are
AccessPolicyError with a code and the kind of failure (not found, conflict, invalid), which the API
turns into 404 / 409 / 422 and the CLI into a message and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.access.authorization import Decision, Grant, Validity, check_validity, decide
from app.access.schedule import (
    Schedule,
    Window,
    days_mask,
    format_days,
    format_hhmm,
    local_time,
    mask_days,
    site_zone,
)
from app.audit.log import record_admin_action
from app.settings import Settings
from app.store import access_queries as aq
from app.store import queries
from app.store.models import AccessGroup, AccessHoliday, Person

FailureKind = Literal["not_found", "conflict", "invalid"]


class AccessPolicyError(Exception):
    def __init__(self, kind: FailureKind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


# --- the decision -----------------------------------------------------------------------------


def to_schedule(row: aq.ScheduleRules) -> Schedule:
    windows = tuple(Window(mask_days(w.days), w.start_minute, w.end_minute) for w in row.windows)
    return Schedule(row.id, windows, row.applies_on_holidays)


def authorize(session: Session, person: Person, door_id: int, now: datetime, zone: ZoneInfo) -> Decision:
    """May ``person`` (recognised and live) pass ``door_id`` at ``now``? Reads the person's rights
    at this door (one query: grants, memberships, schedule windows, whether today is a holiday) and
    applies app.access.authorization.decide. Validity is checked first, without any query."""
    validity = Validity(person.valid_from, person.valid_until)
    invalid = check_validity(validity, now)
    if invalid is not None:
        return invalid
    local = local_time(now, zone)
    rights = aq.door_rights(session, person.id, door_id, local.date())
    return decide(
        validity=validity,
        group_ids=rights.member_groups,
        door_grants=[Grant(g, grp, s) for g, grp, s in rights.door_grants],
        schedules={s.id: to_schedule(s) for s in rights.schedules},
        holidays=rights.holidays,
        zone=zone,
        now=now,
    )


# --- groups -----------------------------------------------------------------------------------


def _group(session: Session, group_id: int) -> AccessGroup:
    group = aq.get_group(session, group_id)
    if group is None:
        raise AccessPolicyError("not_found", "group_not_found", f"access group {group_id} does not exist")
    return group


def _person(session: Session, person_id: int) -> Person:
    person = queries.get_person(session, person_id)
    if person is None:
        raise AccessPolicyError("not_found", "person_not_found", f"person {person_id} does not exist")
    return person


def _free_group_name(session: Session, name: str, group_id: int | None = None) -> None:
    other = aq.group_by_name(session, name)
    if other is not None and other.id != group_id:
        raise AccessPolicyError("conflict", "group_exists", f"an access group named {name!r} already exists")


def create_group(session: Session, actor: int | None, name: str) -> AccessGroup:
    _free_group_name(session, name)
    group = aq.create_group(session, name)
    record_admin_action(session, actor, "group.create", {"group_id": group.id, "name": name})
    return group


def rename_group(session: Session, actor: int | None, group_id: int, name: str) -> AccessGroup:
    group = _group(session, group_id)
    _free_group_name(session, name, group_id)
    group.name = name
    session.flush()
    record_admin_action(session, actor, "group.update", {"group_id": group_id, "name": name})
    return group


def delete_group(session: Session, actor: int | None, group_id: int) -> None:
    _group(session, group_id)
    grants = [g.id for g in aq.list_grants(session, group_id=group_id)]
    aq.delete_group(session, group_id)
    record_admin_action(session, actor, "group.delete", {"group_id": group_id, "grant_ids": grants})


def add_member(session: Session, actor: int | None, group_id: int, person_id: int) -> bool:
    """True when added; False when the person already was a member (nothing recorded)."""
    _group(session, group_id)
    _person(session, person_id)
    added = aq.add_member(session, group_id, person_id)
    if added:
        target = {"group_id": group_id, "person_id": person_id}
        record_admin_action(session, actor, "group.member_add", target)
    return added


def remove_member(session: Session, actor: int | None, group_id: int, person_id: int) -> None:
    _group(session, group_id)
    if not aq.remove_member(session, group_id, person_id):
        raise AccessPolicyError(
            "not_found", "member_not_found", f"person {person_id} is not a member of access group {group_id}"
        )
    record_admin_action(session, actor, "group.member_remove", {"group_id": group_id, "person_id": person_id})


# --- grants -----------------------------------------------------------------------------------


def _schedule_exists(session: Session, schedule_id: int | None) -> None:
    if schedule_id is not None and aq.get_schedule(session, schedule_id) is None:
        raise AccessPolicyError("not_found", "schedule_not_found", f"schedule {schedule_id} does not exist")


def _grant_target(grant: aq.GrantRow) -> dict[str, Any]:
    return {
        "grant_id": grant.id,
        "group_id": grant.group_id,
        "door_id": grant.door_id,
        "schedule_id": grant.schedule_id,
    }


def create_grant(
    session: Session, actor: int | None, group_id: int, door_id: int, schedule_id: int | None
) -> aq.GrantRow:
    _group(session, group_id)
    if not aq.door_exists(session, door_id):
        raise AccessPolicyError("not_found", "door_not_found", f"door {door_id} does not exist")
    _schedule_exists(session, schedule_id)
    existing = aq.find_grant(session, group_id, door_id)
    if existing is not None:
        raise AccessPolicyError(
            "conflict",
            "grant_exists",
            f"access group {group_id} already has grant {existing.id} at door {door_id}; change its schedule",
        )
    grant = aq.create_grant(session, group_id, door_id, schedule_id)
    record_admin_action(session, actor, "grant.create", _grant_target(grant))
    return grant


def get_grant(session: Session, grant_id: int) -> aq.GrantRow:
    grant = aq.get_grant(session, grant_id)
    if grant is None:
        raise AccessPolicyError("not_found", "grant_not_found", f"grant {grant_id} does not exist")
    return grant


def set_grant_schedule(
    session: Session, actor: int | None, grant_id: int, schedule_id: int | None
) -> aq.GrantRow:
    get_grant(session, grant_id)
    _schedule_exists(session, schedule_id)
    grant = aq.set_grant_schedule(session, grant_id, schedule_id)
    if grant is None:  # deleted meanwhile
        raise AccessPolicyError("not_found", "grant_not_found", f"grant {grant_id} does not exist")
    record_admin_action(session, actor, "grant.update", _grant_target(grant))
    return grant


def delete_grant(session: Session, actor: int | None, grant_id: int) -> None:
    grant = get_grant(session, grant_id)
    aq.delete_grant(session, grant_id)
    record_admin_action(session, actor, "grant.delete", _grant_target(grant))


# --- schedules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSpec:
    """A window as given: weekday names, start "HH:MM", end "HH:MM" (24:00 allowed)."""

    days: tuple[str, ...]
    start: str
    end: str


def window_rows(windows: Sequence[Window]) -> list[aq.WindowRow]:
    if not windows:
        raise AccessPolicyError("invalid", "invalid_schedule", "a schedule needs at least one window")
    return [aq.WindowRow(days_mask(w.days), w.start, w.end) for w in windows]


def describe_window(row: aq.WindowRow) -> str:
    days = ",".join(format_days(mask_days(row.days)))
    return f"{days} {format_hhmm(row.start_minute)}-{format_hhmm(row.end_minute)}"


def _schedule_target(row: aq.ScheduleRow) -> dict[str, Any]:
    return {
        "schedule_id": row.id,
        "name": row.name,
        "applies_on_holidays": row.applies_on_holidays,
        "windows": [describe_window(w) for w in row.windows],
    }


def _free_schedule_name(session: Session, name: str, schedule_id: int | None = None) -> None:
    other = aq.schedule_by_name(session, name)
    if other is not None and other.id != schedule_id:
        raise AccessPolicyError("conflict", "schedule_exists", f"a schedule named {name!r} already exists")


def create_schedule(
    session: Session, actor: int | None, name: str, applies_on_holidays: bool, windows: Sequence[Window]
) -> aq.ScheduleRow:
    rows = window_rows(windows)
    _free_schedule_name(session, name)
    schedule = aq.create_schedule(session, name, applies_on_holidays, rows)
    record_admin_action(session, actor, "schedule.create", _schedule_target(schedule))
    return schedule


def get_schedule(session: Session, schedule_id: int) -> aq.ScheduleRow:
    schedule = aq.get_schedule(session, schedule_id)
    if schedule is None:
        raise AccessPolicyError("not_found", "schedule_not_found", f"schedule {schedule_id} does not exist")
    return schedule


def replace_schedule(
    session: Session,
    actor: int | None,
    schedule_id: int,
    *,
    name: str,
    applies_on_holidays: bool,
    windows: Sequence[Window],
) -> aq.ScheduleRow:
    rows = window_rows(windows)
    get_schedule(session, schedule_id)
    _free_schedule_name(session, name, schedule_id)
    schedule = aq.replace_schedule(session, schedule_id, name, applies_on_holidays, rows)
    if schedule is None:
        raise AccessPolicyError("not_found", "schedule_not_found", f"schedule {schedule_id} does not exist")
    record_admin_action(session, actor, "schedule.update", _schedule_target(schedule))
    return schedule


def delete_schedule(session: Session, actor: int | None, schedule_id: int) -> None:
    get_schedule(session, schedule_id)
    used = aq.grants_using_schedule(session, schedule_id)
    if used:
        raise AccessPolicyError(
            "conflict",
            "schedule_in_use",
            f"grants {', '.join(map(str, used))} use schedule {schedule_id}: change or delete them first",
        )
    aq.delete_schedule(session, schedule_id)
    record_admin_action(session, actor, "schedule.delete", {"schedule_id": schedule_id})


# --- holidays ---------------------------------------------------------------------------------


def add_holiday(session: Session, actor: int | None, day: date, name: str) -> AccessHoliday:
    if aq.holiday_on(session, day) is not None:
        raise AccessPolicyError("conflict", "holiday_exists", f"{day.isoformat()} is already a holiday")
    holiday = aq.create_holiday(session, day, name)
    target = {"holiday_id": holiday.id, "day": day.isoformat(), "name": name}
    record_admin_action(session, actor, "holiday.create", target)
    return holiday


def delete_holiday(session: Session, actor: int | None, holiday_id: int) -> None:
    holiday = aq.get_holiday(session, holiday_id)
    if holiday is None:
        raise AccessPolicyError("not_found", "holiday_not_found", f"holiday {holiday_id} does not exist")
    day = holiday.day.isoformat()
    aq.delete_holiday(session, holiday_id)
    record_admin_action(session, actor, "holiday.delete", {"holiday_id": holiday_id, "day": day})


# --- validity ---------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise AccessPolicyError(
            "invalid", "invalid_validity", f"{name} needs a time zone, e.g. 2026-12-24T18:00:00Z"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # Within a day of year 1 or year 9999: as early or as late as a UTC time can be.
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def set_validity(
    session: Session,
    actor: int | None,
    person_id: int,
    valid_from: datetime | None,
    valid_until: datetime | None,
) -> Person:
    """Set both bounds (None: unbounded). valid_from at or after valid_until leaves no valid moment:
    the person is refused everywhere (a suspension), not_yet_valid before valid_from, else expired."""
    valid_from = _utc("valid_from", valid_from)
    valid_until = _utc("valid_until", valid_until)
    _person(session, person_id)
    person = aq.set_validity(session, person_id, valid_from, valid_until)
    if person is None:
        raise AccessPolicyError("not_found", "person_not_found", f"person {person_id} does not exist")
    target = {"person_id": person_id, "valid_from": _iso(valid_from), "valid_until": _iso(valid_until)}
    record_admin_action(session, actor, "person.validity", target)
    return person


def authorize_entry(
    session: Session, person: Person | None, door_id: int, now: datetime, settings: Settings
) -> Decision:
    """The door decision's authorization step (app/api/frames.py): a recognised, live ``person``
    at ``door_id`` at ``now``, in the site's time zone (FACEGATE_SITE_TIMEZONE). A person deleted
    meanwhile (None) is never let in."""
    if person is None:
        return Decision(False, "not_authorized", "no_person")
    return authorize(session, person, door_id, now, site_zone(settings.site_timezone))
