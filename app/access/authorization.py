"""The authorization decision: may this recognised, live person enter this door now?

Pure: the caller loads the facts (the person's validity and groups, the door's grants, the
schedules those grants name, the holidays around now) and passes the site's time zone and ``now``.

Order, first match decides (``rule`` names it, and the access event records it):

1. validity: before ``valid_from`` -> ``not_yet_valid`` (rule ``valid_from``); at or after
   ``valid_until`` -> ``expired`` (rule ``valid_until``). Validity holds at every door, open ones too.
2. a door with no grant at all is open to every enrolled person (rule ``open_door``): existing
   installs keep working until their first grant for that door.
3. none of the door's grants is for one of the person's groups -> ``not_authorized`` (``no_grant``).
4. a grant without a schedule, or whose schedule is open now -> allowed (``grant:<id>``, the
   lowest such grant id).
5. otherwise ``outside_schedule``: rule ``holiday:<YYYY-MM-DD>`` when a holiday closed a schedule
   that would be open now, else ``schedule:<grant ids>`` (the person's grants at this door, all
   closed now).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from app.access.schedule import Schedule, closed_by_holiday, local_time, windows_open

DenyReason = Literal["not_authorized", "outside_schedule", "expired", "not_yet_valid"]
DENY_REASONS: tuple[DenyReason, ...] = ("not_authorized", "outside_schedule", "expired", "not_yet_valid")
# Grant ids named in a denial's ``schedule:`` list before it is cut short ("+N" more): with 32-bit
# ids the longest rule, "schedule:" + 4 ids + "+N", fits the event's 64-character column.
_MAX_RULE_IDS = 4
RULE_MAX_CHARS = 64


@dataclass(frozen=True)
class Grant:
    """Group ``group_id`` may pass door ``door_id``, always (no schedule) or in a schedule's windows."""

    id: int
    group_id: int
    schedule_id: int | None


@dataclass(frozen=True)
class Validity:
    """When a person may enter at all (UTC, both ends optional): ``valid_from <= now < valid_until``."""

    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: DenyReason | None  # None when allowed
    rule: str  # which rule decided: open_door, grant:<id>, no_grant, schedule:<ids>, holiday:<date>,
    # valid_from, valid_until


def check_validity(validity: Validity, now: datetime) -> Decision | None:
    """The denial that the person's validity period gives at ``now``, or None when valid."""
    if validity.valid_from is not None and now < validity.valid_from:
        return Decision(False, "not_yet_valid", "valid_from")
    if validity.valid_until is not None and now >= validity.valid_until:
        return Decision(False, "expired", "valid_until")
    return None


def _ids(ids: Iterable[int]) -> str:
    ordered = sorted(ids)
    shown = ",".join(str(i) for i in ordered[:_MAX_RULE_IDS])
    return shown if len(ordered) <= _MAX_RULE_IDS else f"{shown}+{len(ordered) - _MAX_RULE_IDS}"


def decide(
    *,
    validity: Validity,
    group_ids: Collection[int],
    door_grants: Collection[Grant],
    schedules: Mapping[int, Schedule],
    holidays: Collection[date],
    zone: ZoneInfo,
    now: datetime,
) -> Decision:
    """The decision for one person at one door at ``now`` (timezone-aware); see the module doc.

    ``door_grants``: every grant of the door, whichever group it is for (a door with none is open);
    ``schedules``: at least those the person's grants name (a missing one counts as closed);
    ``holidays``: site-local dates (only the local date of ``now`` matters).
    """
    local = local_time(now, zone)
    invalid = check_validity(validity, now)
    if invalid is not None:
        return invalid
    if not door_grants:
        return Decision(True, None, "open_door")
    mine = sorted((g for g in door_grants if g.group_id in group_ids), key=lambda g: g.id)
    if not mine:
        return Decision(False, "not_authorized", "no_grant")
    return _by_schedule(mine, schedules, holidays, local)


def _by_schedule(
    grants: Sequence[Grant], schedules: Mapping[int, Schedule], holidays: Collection[date], local: datetime
) -> Decision:
    """The person's grants at the door, lowest id first: the first open one lets them in."""
    holiday_closed = False
    for grant in grants:
        if grant.schedule_id is None:
            return Decision(True, None, f"grant:{grant.id}")
        schedule = schedules.get(grant.schedule_id)
        if schedule is None or not windows_open(schedule, local):
            continue
        if closed_by_holiday(schedule, local, holidays):
            holiday_closed = True
            continue
        return Decision(True, None, f"grant:{grant.id}")
    if holiday_closed:
        return Decision(False, "outside_schedule", f"holiday:{local.date().isoformat()}")
    return Decision(False, "outside_schedule", f"schedule:{_ids(g.id for g in grants)}")
