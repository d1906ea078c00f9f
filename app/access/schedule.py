"""Weekly schedules in the site's wall-clock time, with holiday exceptions.

A window is a set of weekdays and a local start and end time (minutes after local midnight). An end
at or before the start crosses midnight: "fri 22:00-06:00" is open from Friday 22:00 to Saturday
06:00 local time; the part after midnight belongs to the window's own day (Friday), so a window for
Friday alone does not open on Saturday evening. An end of 24:00 (or 00:00) closes at midnight, and an
end equal to the start makes a 24-hour window ("mon 08:00-08:00": Monday 08:00 to Tuesday 08:00).

Times are wall-clock times in the site's IANA time zone, so a window follows daylight saving time:
on the spring-forward night the skipped local hour does not exist and no instant falls in it; on
the fall-back night the repeated hour is open twice (both instants read the same local time).

Holidays are local calendar dates. On a holiday a schedule is closed from 00:00 to 24:00 local time,
whatever its windows say (also the after-midnight part of the previous day's night window), unless
the schedule applies on holidays (``applies_on_holidays``): then its windows hold as on any day.
Grants without a schedule ("always") are not closed by holidays.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 24 * 60
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def site_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. "Europe/Paris"); ValueError when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def parse_hhmm(text: str, *, end: bool = False) -> int:
    """Minutes after midnight of "HH:MM" (00:00-23:59; when ``end``, "24:00" too, and "00:00" reads
    as 24:00: a window ends at midnight, never before it starts)."""
    hours, sep, minutes = text.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{text!r} is not a time HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > MINUTES_PER_DAY or (value == MINUTES_PER_DAY and not end):
        allowed = "00:00-23:59, or 24:00 for an end" if end else "00:00-23:59"
        raise ValueError(f"{text!r} is not a time of day ({allowed})")
    return MINUTES_PER_DAY if end and value == 0 else value


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def days_mask(days: Iterable[int]) -> int:
    """Weekdays (0 = Monday) as a bit mask, bit d for day d: how the store keeps them."""
    mask = 0
    for d in days:
        mask |= 1 << d
    return mask


def mask_days(mask: int) -> frozenset[int]:
    return frozenset(d for d in range(7) if mask & (1 << d))


@dataclass(frozen=True)
class Window:
    """Open on ``days`` (0 = Monday ... 6 = Sunday) from ``start`` to ``end`` minutes after local
    midnight; ``end <= start`` runs past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.days or not all(0 <= d <= 6 for d in self.days):
            raise ValueError("a window needs one or more weekdays (0 = Monday ... 6 = Sunday)")
        if not 0 <= self.start < MINUTES_PER_DAY or not 0 < self.end <= MINUTES_PER_DAY:
            raise ValueError("start must be in 00:00-23:59 and end in 00:01-24:00 (00:00 reads as 24:00)")

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def open_at(self, weekday: int, minute: int) -> bool:
        """Whether the local (weekday, minute of the day) falls in this window."""
        if not self.crosses_midnight:
            return weekday in self.days and self.start <= minute < self.end
        # Its own day from the start, and the next day (its after-midnight part) until the end.
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )


@dataclass(frozen=True)
class Schedule:
    id: int
    windows: tuple[Window, ...]
    applies_on_holidays: bool = False


def local_time(now: datetime, zone: ZoneInfo) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone)


def windows_open(schedule: Schedule, local: datetime) -> bool:
    """Whether one of the schedule's windows holds the site-local moment ``local`` (holidays aside)."""
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    return any(w.open_at(weekday, minute) for w in schedule.windows)


def closed_by_holiday(schedule: Schedule, local: datetime, holidays: Collection[date]) -> bool:
    return not schedule.applies_on_holidays and local.date() in holidays


def schedule_open(schedule: Schedule, local: datetime, holidays: Collection[date] = ()) -> bool:
    """Whether ``schedule`` is open at the site-local moment ``local`` (see the module doc)."""
    return not closed_by_holiday(schedule, local, holidays) and windows_open(schedule, local)


def parse_days(text: str) -> frozenset[int]:
    """Weekdays from "mon-fri", "sat,sun", "mon,wed-fri" (a range may wrap: "fri-mon") or "daily"."""
    spec = text.strip().lower()
    if spec in ("daily", "all", "mon-sun"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
            raise ValueError(
                f"{text!r}: days are mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or daily"
            )
        a = WEEKDAYS.index(first)
        b = WEEKDAYS.index(last) if dash else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def parse_window(text: str) -> Window:
    """A window from "mon-fri 08:00-18:00" (days, then start-end; an end at or before the start
    crosses midnight)."""
    days, _, times = text.strip().partition(" ")
    start, dash, end = times.strip().partition("-")
    if not dash:
        raise ValueError(f"{text!r}: write a window as DAYS HH:MM-HH:MM, e.g. 'mon-fri 08:00-18:00'")
    return Window(parse_days(days), parse_hhmm(start.strip()), parse_hhmm(end.strip(), end=True))


def format_days(days: Collection[int]) -> list[str]:
    return [WEEKDAYS[d] for d in sorted(days)]
