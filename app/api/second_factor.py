"""PIN second factor (admin) and site lockdown (admin; auditors may look).

A PIN comes in a JSON body and is never echoed, logged or put in an audit record: the audit
target of a PIN change carries the person's id only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access.lockdown import validate_lockdown
from app.access.pin import PIN_REGEX, hash_pin
from app.api.deps import AdminKey, ServicesDep, SessionDep, require_role
from app.api.errors import ApiError
from app.api.people import ErrorOut
from app.api.schemas import Strict
from app.audit.log import record_admin_action
from app.services.second_factor import require_pin_for_lookalikes
from app.store import queries
from app.store import second_factor_queries as sfq
from app.store.models import ApiKey, Lockdown, Person, utcnow

router = APIRouter(prefix="/v1", tags=["second factor and lockdown"])

AdminOrAuditorKey = Annotated[ApiKey, Depends(require_role("admin", "auditor"))]


# --- schemas -------------------------------------------------------------------------------------


class PinIn(Strict):
    pin: str = Field(
        pattern=PIN_REGEX,
        description="4 to 12 digits. Stored only as a salted scrypt hash; never echoed or logged.",
        json_schema_extra={"writeOnly": True},
    )


class SecondFactorPatch(Strict):
    pin_required: bool = Field(
        description="This person must enter their PIN at every door (besides doors that ask everyone)."
    )


class PinLockoutOut(BaseModel):
    door_id: int
    failures: int = Field(description="Wrong PINs at this door since the last correct one or lockout.")
    locked_until: datetime | None = Field(description="Locked out at this door until then; null: not locked.")
    locked: bool


class SecondFactorOut(BaseModel):
    person_id: int
    pin_required: bool = Field(description="This person must enter a PIN at every door.")
    pin_set: bool = Field(description="A PIN is set (only its salted hash is kept).")
    lockouts: list[PinLockoutOut] = Field(description="Doors where the person has wrong PINs on record.")


class LookalikesIn(Strict):
    scope: Literal["below_tau", "all"] = Field(
        default="below_tau",
        description="'below_tau': the pairs closer than the 1:K tau in force (either could be taken for "
        "the other); 'all': every pair calibration reports (the closest ones).",
    )


class LookalikePairOut(BaseModel):
    person_a: int
    person_b: int
    distance: float


class LookalikePinsOut(BaseModel):
    gallery_version: int
    tau: float
    pairs: list[LookalikePairOut]
    people: list[int] = Field(description="Everyone in those pairs.")
    enabled: list[int] = Field(description="People whose pin_required this turned on.")
    without_pin: list[int] = Field(
        description="People in those pairs with no PIN set: they are denied ('pin_not_set') until one is."
    )


class LockdownIn(Strict):
    # The mode/groups rule below, in the schema too, so that clients and generated tests know it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"properties": {"mode": {"const": "all"}, "allowed_group_ids": {"maxItems": 0}}},
                {
                    "properties": {"mode": {"const": "all_but"}, "allowed_group_ids": {"minItems": 1}},
                    "required": ["allowed_group_ids"],
                },
            ]
        }
    )

    mode: Literal["all", "all_but"] = Field(
        description="'all': every door denies everyone; 'all_but': every door denies everyone outside "
        "allowed_group_ids (members still need their ordinary rights)."
    )
    allowed_group_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list,
        max_length=100,
        description="Access groups still let in (mode 'all_but' only; at least one there).",
    )
    note: str | None = Field(default=None, min_length=1, max_length=500, description="Why, for the record.")

    @field_validator("allowed_group_ids", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        # JSON Schema's integer includes 7.0; strict mode alone would refuse it.
        if isinstance(value, list):
            return [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        return value

    @model_validator(mode="after")
    def _mode_rule(self) -> LockdownIn:
        validate_lockdown(self.mode, self.allowed_group_ids)
        return self


class LockdownOut(BaseModel):
    id: int
    active: bool
    mode: Literal["all", "all_but"]
    allowed_group_ids: list[int]
    note: str | None
    started_at: datetime
    started_by_key_id: int | None = Field(description="The admin key that started it; null: the CLI.")
    lifted_at: datetime | None
    lifted_by_key_id: int | None


class LockdownStatusOut(BaseModel):
    active: bool
    lockdown: LockdownOut | None = Field(description="The lockdown in force; null: none.")
    history: list[LockdownOut] = Field(description="The latest lockdowns, newest first.")


def lockdown_out(lockdown: Lockdown) -> LockdownOut:
    return LockdownOut(
        id=lockdown.id,
        active=lockdown.active == 1,
        mode="all" if lockdown.mode == "all" else "all_but",
        allowed_group_ids=[int(g) for g in lockdown.allowed_group_ids],
        note=lockdown.note,
        started_at=lockdown.started_at,
        started_by_key_id=lockdown.started_by_key_id,
        lifted_at=lockdown.lifted_at,
        lifted_by_key_id=lockdown.lifted_by_key_id,
    )


def _person_or_404(session: Session, person_id: int) -> Person:
    person = queries.get_person(session, person_id)
    if person is None:
        raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
    return person


def _second_factor_out(session: Session, person: Person) -> SecondFactorOut:
    now = utcnow()
    return SecondFactorOut(
        person_id=person.id,
        pin_required=person.pin_required,
        pin_set=person.pin_hash is not None,
        lockouts=[
            PinLockoutOut(
                door_id=f.door_id,
                failures=f.failures,
                locked_until=f.locked_until,
                locked=f.locked_until is not None and now < f.locked_until,
            )
            for f in sfq.pin_failures(session, person.id)
        ],
    )


def _errors(codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut, "description": text} for status, text in codes.items()}


# --- PINs ----------------------------------------------------------------------------------------


@router.get("/people/{person_id}/second-factor", response_model=SecondFactorOut)
def get_second_factor(person_id: int, session: SessionDep, _: AdminKey) -> SecondFactorOut:
    """Whether the person needs a PIN, has one, and where they have wrong PINs or a lockout."""
    return _second_factor_out(session, _person_or_404(session, person_id))


@router.patch("/people/{person_id}/second-factor", response_model=SecondFactorOut)
def set_pin_required(
    person_id: int, body: SecondFactorPatch, session: SessionDep, me: AdminKey
) -> SecondFactorOut:
    """Require (or stop requiring) a PIN from this person at every door."""
    person = _person_or_404(session, person_id)
    person.pin_required = body.pin_required
    session.flush()
    record_admin_action(
        session, me.id, "person.pin_required", {"person_id": person_id, "pin_required": body.pin_required}
    )
    session.commit()
    return _second_factor_out(session, person)


@router.put("/people/{person_id}/pin", response_model=SecondFactorOut)
def set_pin(
    person_id: int, body: PinIn, session: SessionDep, services: ServicesDep, me: AdminKey
) -> SecondFactorOut:
    """Set or replace the person's PIN (their wrong-PIN counts and lockouts are cleared). A sync
    handler: the slow hash runs in the thread pool, off the event loop."""
    person = _person_or_404(session, person_id)
    sfq.set_pin_hash(session, person, hash_pin(body.pin, log2_n=services.settings.pin_scrypt_log2_n))
    record_admin_action(session, me.id, "person.pin_set", {"person_id": person_id})
    session.commit()
    return _second_factor_out(session, person)


@router.delete("/people/{person_id}/pin", response_model=SecondFactorOut)
def clear_pin(person_id: int, session: SessionDep, me: AdminKey) -> SecondFactorOut:
    """Remove the person's PIN. Where a PIN is required they are then denied ('pin_not_set')."""
    person = _person_or_404(session, person_id)
    sfq.set_pin_hash(session, person, None)
    record_admin_action(session, me.id, "person.pin_clear", {"person_id": person_id})
    session.commit()
    return _second_factor_out(session, person)


@router.delete("/people/{person_id}/pin/lockouts", response_model=SecondFactorOut)
def unlock_pin(person_id: int, session: SessionDep, me: AdminKey) -> SecondFactorOut:
    """Lift the person's PIN lockouts and forget their wrong PINs, at every door."""
    person = _person_or_404(session, person_id)
    cleared = sfq.clear_pin_failures(session, person_id)
    record_admin_action(session, me.id, "person.pin_unlock", {"person_id": person_id, "doors": cleared})
    session.commit()
    return _second_factor_out(session, person)


@router.post(
    "/gallery/look-alikes/require-pin",
    response_model=LookalikePinsOut,
    responses=_errors({503: "`starting`: the service is still starting; retry shortly."}),
)
async def lookalikes_require_pin(services: ServicesDep, me: AdminKey, body: LookalikesIn) -> LookalikePinsOut:
    """Require a PIN from both people of each look-alike pair that calibration reports (as in GET
    /v1/gallery/calibration), computed on the gallery as it is now. Recorded as one admin action."""
    result = await asyncio.to_thread(services.calibration.compute)

    def apply() -> LookalikePinsOut:
        with services.sessions() as session:
            done = require_pin_for_lookalikes(session, result, body.scope, me.id)
            session.commit()
        return LookalikePinsOut(
            gallery_version=done.gallery_version,
            tau=done.tau,
            pairs=[LookalikePairOut(person_a=a, person_b=b, distance=d) for a, b, d in done.pairs],
            people=done.people,
            enabled=done.enabled,
            without_pin=done.without_pin,
        )

    return await asyncio.to_thread(apply)


# --- lockdown ------------------------------------------------------------------------------------


@router.get("/lockdown", response_model=LockdownStatusOut)
def get_lockdown(
    session: SessionDep,
    _: AdminOrAuditorKey,
    history: Annotated[int, Query(ge=0, le=200, description="How many past lockdowns to list.")] = 20,
) -> LockdownStatusOut:
    """The lockdown in force (if any) and the latest ones."""
    current = sfq.active_lockdown(session)
    return LockdownStatusOut(
        active=current is not None,
        lockdown=lockdown_out(current) if current is not None else None,
        history=[lockdown_out(x) for x in sfq.list_lockdowns(session, history)] if history else [],
    )


@router.put(
    "/lockdown",
    response_model=LockdownOut,
    responses=_errors(
        {
            404: "`group_not_found`: an allowed group id names no access group.",
            409: "`lockdown_conflict`: another admin changed the lockdown at the same moment; retry.",
            422: "`invalid_request`: the body does not validate, or mode 'all' with groups, or 'all_but' "
            "without.",
        }
    ),
)
def start_lockdown(body: LockdownIn, session: SessionDep, me: AdminKey) -> LockdownOut:
    """Put the whole site in lockdown at once: every door denies (reason 'lockdown') everyone, or
    everyone outside the allowed groups. A lockdown already in force is replaced (lifted and this one
    started, in one transaction). Every access event during a lockdown names it (lockdown_id)."""
    missing = sfq.missing_groups(session, body.allowed_group_ids)
    if missing:
        raise ApiError(404, "group_not_found", f"no access group {missing[0]}", group_ids=missing)
    try:
        lockdown, previous = sfq.start_lockdown(
            session, mode=body.mode, allowed_group_ids=body.allowed_group_ids, note=body.note, key_id=me.id
        )
        if previous is not None:
            record_admin_action(
                session, me.id, "lockdown.lift", {"lockdown_id": previous.id, "replaced": True}
            )
        record_admin_action(
            session,
            me.id,
            "lockdown.start",
            {
                "lockdown_id": lockdown.id,
                "mode": lockdown.mode,
                "allowed_group_ids": lockdown.allowed_group_ids,
                "note": lockdown.note,
            },
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(
            409, "lockdown_conflict", "another admin changed the lockdown at the same moment; retry"
        ) from exc
    return lockdown_out(lockdown)


@router.delete(
    "/lockdown",
    response_model=LockdownOut,
    responses=_errors({409: "`not_in_lockdown`: no lockdown is in force."}),
)
def lift_lockdown(session: SessionDep, me: AdminKey) -> LockdownOut:
    """Lift the lockdown in force; the doors answer by their ordinary rules again."""
    lifted = sfq.lift_lockdown(session, me.id)
    if lifted is None:
        raise ApiError(409, "not_in_lockdown", "no lockdown is in force")
    record_admin_action(session, me.id, "lockdown.lift", {"lockdown_id": lifted.id})
    session.commit()
    return lockdown_out(lifted)
