"""Site lockdown: deny every door at once, or every door to all but some access groups.

Pure: the service reads the lockdown in force (one SQL row, shared by every replica) and the
recognised person's groups, and asks :func:`lockdown_denies`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

# all: nobody enters anywhere; all_but: only members of the allowed groups enter (where their
# ordinary rights let them: lockdown only ever takes rights away).
LockdownMode = Literal["all", "all_but"]
LOCKDOWN_MODES: tuple[LockdownMode, ...] = ("all", "all_but")
REASON = "lockdown"


@dataclass(frozen=True, slots=True)
class LockdownRule:
    id: int
    mode: LockdownMode
    allowed_group_ids: frozenset[int]


def validate_lockdown(mode: str, allowed_group_ids: Collection[int]) -> LockdownMode:
    """The mode when the pair makes sense; ValueError otherwise."""
    if mode == "all":
        if allowed_group_ids:
            raise ValueError("mode 'all' denies everyone: leave allowed_group_ids empty (or use 'all_but')")
        return "all"
    if mode == "all_but":
        if not allowed_group_ids:
            raise ValueError("mode 'all_but' needs at least one group in allowed_group_ids")
        return "all_but"
    raise ValueError(f"mode must be one of {LOCKDOWN_MODES}, got {mode!r}")


def lockdown_denies(rule: LockdownRule | None, person_group_ids: Collection[int]) -> bool:
    """True when the lockdown in force (None: none) keeps this person out."""
    if rule is None:
        return False
    if rule.mode == "all":
        return True
    return rule.allowed_group_ids.isdisjoint(person_group_ids)
