"""The pure access decision (app/access): weekly windows across midnight, daylight saving time in the
site's zone, holidays, validity, open doors, and which rule decided."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.access.authorization import RULE_MAX_CHARS, Decision, Grant, Validity, decide
from app.access.schedule import (
    Schedule,
    Window,
    days_mask,
    mask_days,
    parse_days,
    parse_hhmm,
    parse_window,
    schedule_open,
    site_zone,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def at(zone: ZoneInfo, *fields: int) -> datetime:
    """A site-local wall-clock time (year, month, day, hour, minute), as the UTC instant a request
    would carry."""
    year, month, day, hour, minute = fields
    return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)


def _decide(
    now: datetime,
    *,
    groups: Collection[int] = (1,),
    grants: Collection[Grant] = (),
    schedules: Mapping[int, Schedule] | None = None,
    holidays: Collection[date] = (),
    validity: Validity | None = None,
    zone: ZoneInfo = PARIS,
) -> Decision:
    return decide(
        validity=validity or Validity(),
        group_ids=groups,
        door_grants=grants,
        schedules=schedules or {},
        holidays=holidays,
        zone=zone,
        now=now,
    )


# --- windows and parsing -----------------------------------------------------------------------


def test_parse_windows_and_days() -> None:
    assert parse_days("mon-fri") == frozenset({MON, TUE, WED, THU, FRI})
    assert parse_days("fri-mon") == frozenset({FRI, SAT, SUN, MON})  # a range may wrap the week
    assert parse_days("sat,sun") == frozenset({SAT, SUN}) and parse_days("daily") == frozenset(range(7))
    assert parse_days("mon,wed-thu") == frozenset({MON, WED, THU})
    assert parse_hhmm("08:30") == 510 and parse_hhmm("24:00", end=True) == 1440
    assert parse_hhmm("00:00", end=True) == 1440  # an end at midnight
    for bad in ("24:00", "8:30", "12:60", "ab:cd", "1230"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
    with pytest.raises(ValueError):
        parse_days("monday")
    w = parse_window("mon-fri 22:00-06:00")
    assert (w.days, w.start, w.end, w.crosses_midnight) == (parse_days("mon-fri"), 1320, 360, True)
    with pytest.raises(ValueError):
        parse_window("mon-fri 08:00")
    with pytest.raises(ValueError):
        Window(frozenset(), 0, 60)
    assert days_mask([MON, SUN]) == 0b1000001 and mask_days(0b1000001) == frozenset({MON, SUN})


def test_site_zone_refuses_unknown_names() -> None:
    assert site_zone("Europe/Paris") == PARIS
    for bad in ("Mars/Olympus", "../../etc/passwd", "Europe/"):
        with pytest.raises(ValueError):
            site_zone(bad)


def test_a_window_across_midnight_belongs_to_its_own_day() -> None:
    night = Schedule(1, (parse_window("fri 22:00-06:00"),))
    # Friday 21:59 closed, 22:00 open, Saturday 05:59 open, 06:00 closed (end exclusive).
    assert not schedule_open(night, datetime(2026, 12, 4, 21, 59))
    assert schedule_open(night, datetime(2026, 12, 4, 22, 0))
    assert schedule_open(night, datetime(2026, 12, 5, 5, 59))
    assert not schedule_open(night, datetime(2026, 12, 5, 6, 0))
    # A Friday window does not open early Friday morning (that part would be Thursday's) nor on
    # Saturday evening.
    assert not schedule_open(night, datetime(2026, 12, 4, 3, 0))
    assert not schedule_open(night, datetime(2026, 12, 5, 23, 0))
    # Sunday night into Monday wraps the week.
    sunday = Schedule(2, (parse_window("sun 23:00-01:00"),))
    assert schedule_open(sunday, datetime(2026, 12, 7, 0, 30))  # Monday 00:30
    assert not schedule_open(sunday, datetime(2026, 12, 8, 0, 30))  # Tuesday 00:30
    # End 24:00 closes at midnight; equal start and end is 24 hours.
    evening = Schedule(3, (parse_window("mon 18:00-24:00"),))
    assert schedule_open(evening, datetime(2026, 12, 7, 23, 59))
    assert not schedule_open(evening, datetime(2026, 12, 8, 0, 0))
    day = Schedule(4, (parse_window("mon 08:00-08:00"),))
    assert schedule_open(day, datetime(2026, 12, 8, 7, 59)) and not schedule_open(
        day, datetime(2026, 12, 8, 8, 0)
    )


# --- the decision -------------------------------------------------------------------------------

OFFICE = Schedule(10, (parse_window("mon-fri 08:00-18:00"),))
NIGHT = Schedule(11, (parse_window("mon-fri 22:00-06:00"),))
ALWAYS_ON_HOLIDAYS = Schedule(12, (parse_window("daily 00:00-24:00"),), applies_on_holidays=True)
SCHEDULES = {s.id: s for s in (OFFICE, NIGHT, ALWAYS_ON_HOLIDAYS)}


def test_a_door_without_grants_is_open_to_every_enrolled_person() -> None:
    now = at(PARIS, 2026, 12, 6, 3, 0)  # a Sunday night
    assert _decide(now, groups=()) == Decision(True, None, "open_door")
    # A grant for some other group closes it to everyone else.
    assert _decide(now, groups=(), grants=[Grant(5, 2, None)]) == Decision(
        False, "not_authorized", "no_grant"
    )
    assert _decide(now, groups=(7,), grants=[Grant(5, 2, None)]).reason == "not_authorized"


def test_a_grant_without_schedule_is_open_at_any_time_and_names_itself() -> None:
    for now in (at(PARIS, 2026, 12, 6, 3, 0), at(PARIS, 2026, 12, 25, 12, 0)):
        decision = _decide(now, grants=[Grant(9, 1, None), Grant(3, 2, None)], holidays={date(2026, 12, 25)})
        assert decision == Decision(True, None, "grant:9")


def test_schedules_in_site_local_time() -> None:
    grants = [Grant(4, 1, OFFICE.id)]
    # 08:30 in Paris is 07:30 UTC (winter): open; 18:30 Paris (17:30 UTC) closed.
    assert _decide(at(PARIS, 2026, 12, 7, 8, 30), grants=grants, schedules=SCHEDULES).rule == "grant:4"
    closed = _decide(at(PARIS, 2026, 12, 7, 18, 30), grants=grants, schedules=SCHEDULES)
    assert closed == Decision(False, "outside_schedule", "schedule:4")
    # The same UTC instant read in New York is 02:30: closed there.
    utc = at(PARIS, 2026, 12, 7, 8, 30)
    ny = _decide(utc, grants=grants, schedules=SCHEDULES, zone=NEW_YORK)
    assert (ny.allowed, ny.reason) == (False, "outside_schedule")
    # Saturday closed.
    assert not _decide(at(PARIS, 2026, 12, 12, 10, 0), grants=grants, schedules=SCHEDULES).allowed


def test_the_first_open_grant_decides_and_a_closed_one_does_not_hide_it() -> None:
    grants = [Grant(2, 1, OFFICE.id), Grant(8, 3, NIGHT.id)]
    night = at(PARIS, 2026, 12, 8, 2, 0)  # Tuesday 02:00: Monday's night window
    assert _decide(night, groups=(1, 3), grants=grants, schedules=SCHEDULES) == Decision(
        True, None, "grant:8"
    )
    # Only the office group: outside schedule, naming the person's grants at this door.
    office_only = _decide(night, groups=(1,), grants=grants, schedules=SCHEDULES)
    assert office_only == Decision(False, "outside_schedule", "schedule:2")
    both_closed = _decide(at(PARIS, 2026, 12, 8, 20, 0), groups=(1, 3), grants=grants, schedules=SCHEDULES)
    assert both_closed == Decision(False, "outside_schedule", "schedule:2,8")
    # A schedule the caller could not load counts as closed.
    assert not _decide(night, groups=(3,), grants=grants, schedules={}).allowed


def test_daylight_saving_time_follows_the_wall_clock() -> None:
    grants = [Grant(1, 1, OFFICE.id)]
    # Paris: 08:00 local is 07:00 UTC in winter and 06:00 UTC in summer; the window moves with it.
    winter, summer = datetime(2026, 3, 27, 7, 0, tzinfo=UTC), datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert _decide(winter, grants=grants, schedules=SCHEDULES).allowed  # Friday 08:00 CET
    assert _decide(summer, grants=grants, schedules=SCHEDULES).allowed  # Monday 08:00 CEST
    assert not _decide(summer - timedelta(minutes=1), grants=grants, schedules=SCHEDULES).allowed  # 07:59
    # The spring-forward night (Sunday 29 March 2026, 02:00 -> 03:00): a 02:00-03:00 window has no
    # instant at all; 01:59 local and 03:00 local are one minute apart in UTC.
    skipped = {20: Schedule(20, (parse_window("sun 02:00-03:00"),))}
    before = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)  # 01:59 CET
    minutes = [before + timedelta(minutes=i) for i in range(0, 3)]
    assert [m.astimezone(PARIS).strftime("%H:%M") for m in minutes] == ["01:59", "03:00", "03:01"]
    assert not any(_decide(m, grants=[Grant(1, 1, 20)], schedules=skipped).allowed for m in minutes)
    # The fall-back night (Sunday 25 October 2026, 03:00 -> 02:00): 02:00-03:00 local happens twice,
    # so a 02:00-03:00 window is open for two real hours.
    repeated = {21: Schedule(21, (parse_window("sun 02:00-03:00"),))}
    start = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 01:30 CEST
    open_minutes = sum(
        _decide(start + timedelta(minutes=i), grants=[Grant(1, 1, 21)], schedules=repeated).allowed
        for i in range(0, 4 * 60)
    )
    assert open_minutes == 120


def test_holidays_close_scheduled_grants_unless_the_schedule_applies() -> None:
    christmas = date(2026, 12, 25)  # a Friday
    noon = at(PARIS, 2026, 12, 25, 12, 0)
    office = [Grant(4, 1, OFFICE.id)]
    assert _decide(noon, grants=office, schedules=SCHEDULES) == Decision(True, None, "grant:4")
    closed = _decide(noon, grants=office, schedules=SCHEDULES, holidays={christmas})
    assert closed == Decision(False, "outside_schedule", "holiday:2026-12-25")
    # The holiday is the site-local date: 23:30 UTC on the 24th is already Christmas in Paris.
    eve_utc = datetime(2026, 12, 24, 23, 30, tzinfo=UTC)
    night = [Grant(6, 1, NIGHT.id)]
    assert _decide(eve_utc, grants=night, schedules=SCHEDULES).allowed  # Thursday's night window
    assert (
        _decide(eve_utc, grants=night, schedules=SCHEDULES, holidays={christmas}).rule == "holiday:2026-12-25"
    )
    assert _decide(
        eve_utc, grants=night, schedules=SCHEDULES, holidays={christmas}, zone=ZoneInfo("UTC")
    ).allowed
    # A schedule that applies on holidays ignores them; a grant without schedule too.
    special = [Grant(7, 1, ALWAYS_ON_HOLIDAYS.id)]
    assert _decide(noon, grants=special, schedules=SCHEDULES, holidays={christmas}).rule == "grant:7"
    # A closed holiday schedule and an open other grant: the open grant decides.
    mixed = [Grant(4, 1, OFFICE.id), Grant(9, 2, ALWAYS_ON_HOLIDAYS.id)]
    assert (
        _decide(noon, groups=(1, 2), grants=mixed, schedules=SCHEDULES, holidays={christmas}).rule
        == "grant:9"
    )
    # A holiday outside the window's hours: the schedule is simply closed ("schedule:"), not the holiday.
    evening = at(PARIS, 2026, 12, 25, 20, 0)
    assert _decide(evening, grants=office, schedules=SCHEDULES, holidays={christmas}).rule == "schedule:4"


def test_validity_comes_first_and_holds_at_open_doors_too() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    grants = [Grant(1, 1, None)]
    until = Validity(valid_until=now)
    assert _decide(now, grants=grants, validity=until) == Decision(False, "expired", "valid_until")
    assert _decide(now - timedelta(microseconds=1), grants=grants, validity=until).allowed
    later = Validity(valid_from=now + timedelta(seconds=1))
    assert _decide(now, grants=grants, validity=later) == Decision(False, "not_yet_valid", "valid_from")
    assert _decide(now, validity=until) == Decision(False, "expired", "valid_until")  # an open door
    assert (
        _decide(now, groups=(), grants=grants, validity=until).reason == "expired"
    )  # before the grant check
    inside = Validity(valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=1))
    assert _decide(now, grants=grants, validity=inside).allowed
    # An empty period (from at or after until) refuses everywhere: a suspension.
    empty = Validity(valid_from=now + timedelta(days=1), valid_until=now - timedelta(days=1))
    assert _decide(now, validity=empty).reason == "not_yet_valid"
    assert _decide(now + timedelta(days=2), validity=empty).reason == "expired"


def test_a_long_rule_is_cut_to_fit_the_event_column() -> None:
    big = 2**31 - 1
    grants = [Grant(big - i, 1, OFFICE.id) for i in range(40)]
    decision = _decide(at(PARIS, 2026, 12, 7, 20, 0), grants=grants, schedules=SCHEDULES)
    assert decision.reason == "outside_schedule" and decision.rule.endswith("+36")
    assert decision.rule.startswith(f"schedule:{big - 39},") and len(decision.rule) <= RULE_MAX_CHARS


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError):
        _decide(datetime(2026, 12, 6, 12, 0))
