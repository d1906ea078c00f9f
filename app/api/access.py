"""Access rules (admin writes, admin and auditor read): groups and their members, grants of a group
at a door (optionally limited to a weekly schedule), schedules, holidays, people's validity.

A door with no grant at all stays open to every enrolled person; its first grant closes it to
everyone outside the granted groups. Every change is an audit record in the same transaction.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, BeforeValidator, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access.schedule import WEEKDAYS, Window, format_days, format_hhmm, mask_days, parse_hhmm
from app.api.deps import AdminKey, SessionDep, require_role
from app.api.errors import ApiError
from app.api.people import ErrorOut
from app.api.schemas import Strict
from app.services import access as svc
from app.store import access_queries as aq
from app.store.models import AccessGroup, AccessHoliday, ApiKey, Person

router = APIRouter(prefix="/v1/access", tags=["access"])

ReaderKey = Annotated[ApiKey, Depends(require_role("admin", "auditor"))]

_STATUS = {"not_found": 404, "conflict": 409, "invalid": 422}
# Names: at least one visible character (they are stripped of surrounding blanks).
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
_START = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_END = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


def _integral(value: object) -> object:
    # JSON Schema's integer includes 7.0; strict mode alone would refuse it (as KeyIn.door_id).
    return int(value) if isinstance(value, float) and value.is_integer() else value


Id = Annotated[int, BeforeValidator(_integral)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut, "description": text} for status, text in pairs}


def _fail(exc: svc.AccessPolicyError) -> ApiError:
    return ApiError(_STATUS[exc.kind], exc.code, exc.message)


def _commit_or_conflict(session: Session, code: str, message: str, status: int = 409) -> None:
    """Commit; a concurrent writer that took the same unique name or pair first gives 409 (or, for a
    row deleted meanwhile, ``status``)."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(status, code, message) from exc


# --- bodies -----------------------------------------------------------------------------------


class GroupIn(Strict):
    name: Name


class GroupOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    members: int = Field(description="How many people belong to the group.")


class MemberOut(BaseModel):
    id: int
    name: str


class GrantIn(Strict):
    group_id: Id
    door_id: Id
    schedule_id: Id | None = Field(
        default=None, description="Limit the grant to this schedule's windows; null: at any time."
    )


class GrantPatch(Strict):
    schedule_id: Id | None = Field(description="The schedule that limits the grant; null: at any time.")


class GrantOut(BaseModel):
    id: int
    group_id: int
    door_id: int
    schedule_id: int | None
    created_at: datetime


class WindowIn(Strict):
    days: list[Weekday] = Field(min_length=1, max_length=7, description="The weekdays the window opens on.")
    start: str = Field(pattern=_START, description="Local start time, HH:MM (00:00-23:59).")
    end: str = Field(
        pattern=_END,
        description="Local end time, HH:MM; 24:00 (or 00:00) is midnight. An end at or before the start "
        "runs past midnight into the next day ('22:00'-'06:00'); equal to the start, 24 hours.",
    )

    def window(self) -> Window:
        return Window(
            frozenset(WEEKDAYS.index(d) for d in self.days),
            parse_hhmm(self.start),
            parse_hhmm(self.end, end=True),
        )


class ScheduleIn(Strict):
    name: Name
    applies_on_holidays: bool = Field(
        default=False,
        description="false (the default): the schedule is closed all day on a holiday; true: holidays "
        "change nothing.",
    )
    windows: list[WindowIn] = Field(min_length=1, max_length=100)


class WindowOut(BaseModel):
    days: list[str]
    start: str
    end: str


class ScheduleOut(BaseModel):
    id: int
    name: str
    applies_on_holidays: bool
    windows: list[WindowOut]
    created_at: datetime


class HolidayIn(Strict):
    date: Annotated[date, Field(strict=False, description="A site-local calendar date, YYYY-MM-DD.")]
    name: Name

    @field_validator("date", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("a date is a string YYYY-MM-DD")
        return value


class HolidayOut(BaseModel):
    id: int
    date: date
    name: str
    created_at: datetime


class ValidityIn(Strict):
    valid_from: Annotated[
        datetime | None,
        Field(
            strict=False,
            description="From when the person may enter (ISO 8601 with a time zone); null: always.",
        ),
    ]
    valid_until: Annotated[
        datetime | None,
        Field(
            strict=False,
            description="From when on the person may no longer enter (exclusive); null: never expires. At or "
            "before valid_from: no valid moment, the person is refused everywhere.",
        ),
    ]

    @field_validator("valid_from", "valid_until", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("a time is a string in ISO 8601 with a time zone, e.g. 2026-12-24T18:00:00Z")
        return value


class ValidityOut(BaseModel):
    person_id: int
    valid_from: datetime | None
    valid_until: datetime | None
    group_ids: list[int] = Field(description="The access groups the person belongs to.")


# --- groups -----------------------------------------------------------------------------------


def _group_out(group: AccessGroup, members: int) -> GroupOut:
    return GroupOut(id=group.id, name=group.name, created_at=group.created_at, members=members)


_GROUP_EXISTS = (409, "`group_exists`: another access group has this name.")


@router.post("/groups", status_code=201, response_model=GroupOut, responses=_errors(_GROUP_EXISTS))
def create_group(body: GroupIn, session: SessionDep, me: AdminKey) -> GroupOut:
    try:
        group = svc.create_group(session, me.id, body.name)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "group_exists", f"an access group named {body.name!r} already exists")
    return _group_out(group, 0)


@router.get("/groups", response_model=list[GroupOut])
def list_groups(session: SessionDep, _: ReaderKey) -> list[GroupOut]:
    counts = aq.member_counts(session)
    return [_group_out(g, counts.get(g.id, 0)) for g in aq.list_groups(session)]


def _group_or_404(session: Session, group_id: int) -> AccessGroup:
    group = aq.get_group(session, group_id)
    if group is None:
        raise ApiError(404, "group_not_found", f"access group {group_id} does not exist")
    return group


@router.get("/groups/{group_id}", response_model=GroupOut)
def get_group(group_id: int, session: SessionDep, _: ReaderKey) -> GroupOut:
    group = _group_or_404(session, group_id)
    return _group_out(group, aq.member_counts(session, [group_id]).get(group_id, 0))


@router.patch(
    "/groups/{group_id}",
    response_model=GroupOut,
    responses=_errors((404, "`group_not_found`."), _GROUP_EXISTS),
)
def rename_group(group_id: int, body: GroupIn, session: SessionDep, me: AdminKey) -> GroupOut:
    try:
        group = svc.rename_group(session, me.id, group_id, body.name)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "group_exists", f"an access group named {body.name!r} already exists")
    return _group_out(group, aq.member_counts(session, [group_id]).get(group_id, 0))


@router.delete("/groups/{group_id}", status_code=204, responses=_errors((404, "`group_not_found`.")))
def delete_group(group_id: int, session: SessionDep, me: AdminKey) -> Response:
    """Delete the group with its memberships and its grants (a door whose last grant goes is open to
    every enrolled person again)."""
    try:
        svc.delete_group(session, me.id, group_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    session.commit()
    return Response(status_code=204)


@router.get("/groups/{group_id}/members", response_model=list[MemberOut])
def list_members(group_id: int, session: SessionDep, _: ReaderKey) -> list[MemberOut]:
    _group_or_404(session, group_id)
    return [MemberOut(id=p.id, name=p.name) for p in aq.list_members(session, group_id)]


@router.put(
    "/groups/{group_id}/members/{person_id}",
    status_code=204,
    responses=_errors((404, "`group_not_found` or `person_not_found`.")),
)
def add_member(group_id: int, person_id: int, session: SessionDep, me: AdminKey) -> Response:
    """Add a person to the group (nothing changes, and nothing is recorded, when they already are)."""
    try:
        svc.add_member(session, me.id, group_id, person_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    try:
        session.commit()
    except IntegrityError:  # added concurrently, or the person or group deleted meanwhile
        session.rollback()
    return Response(status_code=204)


@router.delete(
    "/groups/{group_id}/members/{person_id}",
    status_code=204,
    responses=_errors((404, "`group_not_found` or `member_not_found` (the person is not in the group).")),
)
def remove_member(group_id: int, person_id: int, session: SessionDep, me: AdminKey) -> Response:
    try:
        svc.remove_member(session, me.id, group_id, person_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    session.commit()
    return Response(status_code=204)


# --- grants -----------------------------------------------------------------------------------


def _grant_out(grant: aq.GrantRow) -> GrantOut:
    return GrantOut(**grant._asdict())


@router.post(
    "/grants",
    status_code=201,
    response_model=GrantOut,
    responses=_errors(
        (404, "`group_not_found`, `door_not_found` or `schedule_not_found`."),
        (409, "`grant_exists`: the group already has a grant at this door (change its schedule instead)."),
    ),
)
def create_grant(body: GrantIn, session: SessionDep, me: AdminKey) -> GrantOut:
    """Let a group's members pass a door, always or within a schedule. The door's first grant closes it
    to everyone outside its granted groups."""
    try:
        grant = svc.create_grant(session, me.id, body.group_id, body.door_id, body.schedule_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "grant_exists", "this group already has a grant at this door")
    return _grant_out(grant)


@router.get("/grants", response_model=list[GrantOut])
def list_grants(
    session: SessionDep,
    _: ReaderKey,
    door_id: Annotated[int | None, Query(description="Only this door's grants.")] = None,
    group_id: Annotated[int | None, Query(description="Only this group's grants.")] = None,
) -> list[GrantOut]:
    return [_grant_out(g) for g in aq.list_grants(session, door_id=door_id, group_id=group_id)]


@router.get("/grants/{grant_id}", response_model=GrantOut)
def get_grant(grant_id: int, session: SessionDep, _: ReaderKey) -> GrantOut:
    try:
        return _grant_out(svc.get_grant(session, grant_id))
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc


@router.patch(
    "/grants/{grant_id}",
    response_model=GrantOut,
    responses=_errors((404, "`grant_not_found` or `schedule_not_found`.")),
)
def update_grant(grant_id: int, body: GrantPatch, session: SessionDep, me: AdminKey) -> GrantOut:
    try:
        grant = svc.set_grant_schedule(session, me.id, grant_id, body.schedule_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    gone = f"schedule {body.schedule_id} was deleted meanwhile"
    _commit_or_conflict(session, "schedule_not_found", gone, status=404)
    return _grant_out(grant)


@router.delete("/grants/{grant_id}", status_code=204, responses=_errors((404, "`grant_not_found`.")))
def delete_grant(grant_id: int, session: SessionDep, me: AdminKey) -> Response:
    try:
        svc.delete_grant(session, me.id, grant_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    session.commit()
    return Response(status_code=204)


# --- schedules --------------------------------------------------------------------------------


def _schedule_out(row: aq.ScheduleRow) -> ScheduleOut:
    windows = [
        WindowOut(
            days=format_days(mask_days(w.days)),
            start=format_hhmm(w.start_minute),
            end=format_hhmm(w.end_minute),
        )
        for w in row.windows
    ]
    return ScheduleOut(
        id=row.id,
        name=row.name,
        applies_on_holidays=row.applies_on_holidays,
        windows=windows,
        created_at=row.created_at,
    )


_SCHEDULE_EXISTS = (409, "`schedule_exists`: another schedule has this name.")


@router.post("/schedules", status_code=201, response_model=ScheduleOut, responses=_errors(_SCHEDULE_EXISTS))
def create_schedule(body: ScheduleIn, session: SessionDep, me: AdminKey) -> ScheduleOut:
    """Weekly windows in the site's local time (FACEGATE_SITE_TIMEZONE), daylight saving time included."""
    windows = [w.window() for w in body.windows]
    try:
        row = svc.create_schedule(session, me.id, body.name, body.applies_on_holidays, windows)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "schedule_exists", f"a schedule named {body.name!r} already exists")
    return _schedule_out(row)


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(session: SessionDep, _: ReaderKey) -> list[ScheduleOut]:
    return [_schedule_out(s) for s in aq.list_schedules(session)]


@router.get("/schedules/{schedule_id}", response_model=ScheduleOut)
def get_schedule(schedule_id: int, session: SessionDep, _: ReaderKey) -> ScheduleOut:
    try:
        return _schedule_out(svc.get_schedule(session, schedule_id))
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc


@router.put(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    responses=_errors((404, "`schedule_not_found`."), _SCHEDULE_EXISTS),
)
def replace_schedule(schedule_id: int, body: ScheduleIn, session: SessionDep, me: AdminKey) -> ScheduleOut:
    """Replace the name, holiday rule and windows; the grants that use the schedule follow at once."""
    windows = [w.window() for w in body.windows]
    try:
        row = svc.replace_schedule(
            session,
            me.id,
            schedule_id,
            name=body.name,
            applies_on_holidays=body.applies_on_holidays,
            windows=windows,
        )
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "schedule_exists", f"a schedule named {body.name!r} already exists")
    return _schedule_out(row)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    responses=_errors(
        (404, "`schedule_not_found`."),
        (409, "`schedule_in_use`: grants use the schedule; change or delete them first."),
    ),
)
def delete_schedule(schedule_id: int, session: SessionDep, me: AdminKey) -> Response:
    try:
        svc.delete_schedule(session, me.id, schedule_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "schedule_in_use", f"a grant took schedule {schedule_id} meanwhile")
    return Response(status_code=204)


# --- holidays ---------------------------------------------------------------------------------


def _holiday_out(h: AccessHoliday) -> HolidayOut:
    return HolidayOut(id=h.id, date=h.day, name=h.name, created_at=h.created_at)


@router.post(
    "/holidays",
    status_code=201,
    response_model=HolidayOut,
    responses=_errors((409, "`holiday_exists`: the date is already a holiday.")),
)
def add_holiday(body: HolidayIn, session: SessionDep, me: AdminKey) -> HolidayOut:
    """A site-local date on which scheduled grants are closed all day (unless their schedule applies on
    holidays); grants without a schedule are not affected."""
    try:
        holiday = svc.add_holiday(session, me.id, body.date, body.name)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    _commit_or_conflict(session, "holiday_exists", f"{body.date.isoformat()} is already a holiday")
    return _holiday_out(holiday)


@router.get("/holidays", response_model=list[HolidayOut])
def list_holidays(
    session: SessionDep,
    _: ReaderKey,
    year: Annotated[int | None, Query(ge=1, le=9999, description="Only this year's holidays.")] = None,
) -> list[HolidayOut]:
    since = None if year is None else date(year, 1, 1)
    until = None if year is None or year == 9999 else date(year + 1, 1, 1)
    return [_holiday_out(h) for h in aq.list_holidays(session, since=since, until=until)]


@router.delete("/holidays/{holiday_id}", status_code=204, responses=_errors((404, "`holiday_not_found`.")))
def delete_holiday(holiday_id: int, session: SessionDep, me: AdminKey) -> Response:
    try:
        svc.delete_holiday(session, me.id, holiday_id)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    session.commit()
    return Response(status_code=204)


# --- validity ---------------------------------------------------------------------------------


def _validity_out(session: Session, person: Person) -> ValidityOut:
    return ValidityOut(
        person_id=person.id,
        valid_from=person.valid_from,
        valid_until=person.valid_until,
        group_ids=aq.person_group_ids(session, person.id),
    )


@router.get(
    "/people/{person_id}/validity",
    response_model=ValidityOut,
    responses=_errors((404, "`person_not_found`.")),
)
def get_validity(person_id: int, session: SessionDep, _: ReaderKey) -> ValidityOut:
    person = session.get(Person, person_id)
    if person is None:
        raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
    return _validity_out(session, person)


@router.put(
    "/people/{person_id}/validity",
    response_model=ValidityOut,
    responses=_errors(
        (404, "`person_not_found`."),
        (422, "`invalid_validity` (a time without a time zone) or `invalid_request`."),
    ),
)
def set_validity(person_id: int, body: ValidityIn, session: SessionDep, me: AdminKey) -> ValidityOut:
    """When the person may enter at all (visitors, contractors): both bounds at once, null for none.
    Outside it they are refused at every door, open doors included: `not_yet_valid` before valid_from,
    `expired` from valid_until on."""
    try:
        person = svc.set_validity(session, me.id, person_id, body.valid_from, body.valid_until)
    except svc.AccessPolicyError as exc:
        raise _fail(exc) from exc
    session.commit()
    return _validity_out(session, person)
