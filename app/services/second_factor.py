"""The checks after authorization, in this order: site lockdown, then the PIN second factor.

:func:`check_after_authorization` runs in the transaction that records the access event (see
app/api/frames.py ``_record``), for every burst: the event names the lockdown in force even when
something else denied the burst. A burst that would open the door is then denied with reason
``lockdown`` when the lockdown keeps the person out, else with a PIN reason when the door or the
person asks for a PIN that is missing, wrong, locked out or not set. The PIN is hashed before any
row lock is taken, and wrong PINs are counted under the row lock of (person, door), so concurrent
attempts on any replica count one after the other.

Look-alikes: :func:`require_pin_for_lookalikes` turns the PIN on for both people of the pairs that
calibration reports, recorded as one admin action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.access.lockdown import REASON as LOCKDOWN_REASON
from app.access.lockdown import lockdown_denies
from app.access.pin import (
    PIN_REASONS,
    FailureState,
    LockoutPolicy,
    PinCheck,
    PinHashError,
    check_hash,
    decide_pin,
    verify_pin,
)
from app.audit.log import record_admin_action
from app.services.calibration import GalleryCalibration
from app.settings import Settings
from app.store import second_factor_queries as sfq
from app.store.models import Person, utcnow

log = logging.getLogger(__name__)

LookalikeScope = Literal["below_tau", "all"]


@dataclass(frozen=True, slots=True)
class AfterAuthorization:
    """What lockdown and PIN add to one access decision."""

    lockdown_id: int | None  # the lockdown in force (recorded on every event)
    pin_check: PinCheck | None  # None: no PIN was needed (or the burst was denied before)
    reason: str | None  # the denial reason; None: these checks do not deny
    rule: str | None  # the rule that denied: "lockdown:<id>" or "pin"; None: not denied here


def lockout_policy(settings: Settings) -> LockoutPolicy:
    return LockoutPolicy(settings.pin_max_failures, settings.pin_lockout_s)


def check_after_authorization(
    session: Session,
    settings: Settings,
    *,
    door_id: int,
    person: Person | None,
    would_grant: bool,
    pin: str | None,
    now: datetime | None = None,
) -> AfterAuthorization:
    """Lockdown, then PIN, for a burst that recognition, liveness and authorization would let in
    (``would_grant``); for any other burst, only the lockdown in force is read, for the record."""
    rule = sfq.lockdown_rule(sfq.active_lockdown(session))
    lockdown_id = rule.id if rule is not None else None
    if not would_grant or person is None:
        return AfterAuthorization(lockdown_id, None, None, None)
    if rule is not None:
        groups = sfq.person_group_ids(session, person.id) if rule.mode == "all_but" else set()
        if lockdown_denies(rule, groups):
            return AfterAuthorization(lockdown_id, None, LOCKDOWN_REASON, f"lockdown:{rule.id}")
    if not (person.pin_required or sfq.door_pin_required(session, door_id)):
        return AfterAuthorization(lockdown_id, None, None, None)
    check = _check_pin(session, settings, person, door_id=door_id, pin=pin, now=now or utcnow())
    reason = PIN_REASONS.get(check)
    return AfterAuthorization(lockdown_id, check, reason, None if reason is None else "pin")


def _check_pin(
    session: Session, settings: Settings, person: Person, *, door_id: int, pin: str | None, now: datetime
) -> PinCheck:
    policy = lockout_policy(settings)
    pin_hash = person.pin_hash
    if pin_hash is not None:
        try:
            check_hash(pin_hash)
        except PinHashError as exc:  # a row this code did not write: no PIN can match it
            log.error(
                "unusable PIN hash; set the PIN again", extra={"person_id": person.id, "problem": str(exc)}
            )
            pin_hash = None
    seen = sfq.peek_pin_state(session, person.id, door_id)
    first = decide_pin(pin=pin, pin_hash=pin_hash, state=seen, now=now, policy=policy, matches=False)
    if first.check != "wrong":  # not set, locked out or missing: decided without hashing anything
        return first.check
    if pin is None or pin_hash is None:  # unreachable after decide_pin; keeps the types exact
        return "missing"
    if verify_pin(pin, pin_hash):  # the slow hash, before any lock
        if seen != FailureState():
            sfq.save_pin_state(session, person.id, door_id, FailureState())
        return "correct"
    # Count the failure under the row lock; a lockout that another attempt set meanwhile wins.
    state = sfq.lock_pin_state(session, person.id, door_id)
    decision = decide_pin(pin=pin, pin_hash=pin_hash, state=state, now=now, policy=policy, matches=False)
    if decision.state is not None:
        sfq.save_pin_state(session, person.id, door_id, decision.state)
    if decision.check == "wrong" and decision.state is not None and decision.state.locked(now):
        log.warning(
            "PIN lockout",
            extra={"person_id": person.id, "door_id": door_id, "until": str(decision.state.locked_until)},
        )
    return decision.check


# --- look-alikes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LookalikePins:
    gallery_version: int
    tau: float
    pairs: list[tuple[int, int, float]]  # (person_a, person_b, distance) of the pairs taken
    people: list[int]  # everyone in those pairs
    enabled: list[int]  # whose pin_required this turned on
    without_pin: list[int]  # of ``people``, those with no PIN set yet: they must be given one


def lookalike_pairs(result: GalleryCalibration, scope: LookalikeScope) -> list[tuple[int, int, float]]:
    """The reported look-alike pairs: those closer than the 1:K tau ('below_tau': either could be
    taken for the other), or every pair calibration reports ('all', the closest ones)."""
    tau = result.report.tau
    return [
        (p.person_a, p.person_b, p.distance)
        for p in result.report.look_alikes
        if scope == "all" or p.distance < tau
    ]


def require_pin_for_lookalikes(
    session: Session,
    result: GalleryCalibration,
    scope: LookalikeScope,
    actor_key_id: int | None,
    *,
    record_unchanged: bool = True,
) -> LookalikePins:
    """Turn pin_required on for both people of each look-alike pair in ``scope`` (people deleted
    since the calibration are skipped), recorded as one admin action ``pin.lookalikes`` in the
    caller's transaction (``record_unchanged`` False: only when it changed someone)."""
    pairs = lookalike_pairs(result, scope)
    people = sorted({pid for a, b, _ in pairs for pid in (a, b)})
    enabled = sfq.set_person_pin_required(session, people, True)
    without = sfq.people_without_pin(session, people)
    if enabled or record_unchanged:
        record_admin_action(
            session,
            actor_key_id,
            "pin.lookalikes",
            {
                "scope": scope,
                "gallery_version": result.gallery_version,
                "tau": result.report.tau,
                "pairs": [[a, b] for a, b, _ in pairs],
                "enabled": enabled,
            },
        )
    return LookalikePins(result.gallery_version, result.report.tau, pairs, people, enabled, without)


def apply_lookalike_setting(sessions: sessionmaker[Session], result: GalleryCalibration) -> list[int]:
    """FACEGATE_PIN_FOR_LOOKALIKES: after a calibration, require a PIN from the people of every
    pair below tau; an admin action (actor: none, the service itself) only when it changed someone.
    Returns the ids turned on."""
    try:
        with sessions() as session:
            done = require_pin_for_lookalikes(session, result, "below_tau", None, record_unchanged=False)
            session.commit()
    except SQLAlchemyError:
        log.exception("could not turn the PIN on for look-alikes")
        return []
    if done.enabled:
        log.warning(
            "PIN now required for look-alike people",
            extra={"person_ids": done.enabled, "without_pin": done.without_pin},
        )
    return done.enabled


async def follow_lookalikes(
    sessions: sessionmaker[Session],
    latest: Callable[[], GalleryCalibration | None],
    interval_s: float,
) -> None:
    """FACEGATE_PIN_FOR_LOOKALIKES: after each new calibration result (any gallery change,
    recalibrated in the background), require a PIN from the look-alike pairs below tau."""
    applied: int | None = None
    while True:
        await asyncio.sleep(interval_s)
        result = latest()
        if result is None or result.gallery_version == applied:
            continue
        await asyncio.to_thread(apply_lookalike_setting, sessions, result)
        applied = result.gallery_version
