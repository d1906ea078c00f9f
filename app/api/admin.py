"""Doors and API keys (admin)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError

from app.api.deps import AdminKey, SessionDep
from app.api.errors import ApiError
from app.api.schemas import DoorIn, DoorOut, DoorPatch, KeyCreated, KeyIn, KeyOut
from app.audit.log import record_admin_action
from app.store import queries
from app.store.models import Door

router = APIRouter(prefix="/v1", tags=["admin"])


@router.post("/doors", status_code=201, response_model=DoorOut)
def create_door(body: DoorIn, session: SessionDep, me: AdminKey) -> DoorOut:
    try:
        door = queries.create_door(
            session,
            body.name,
            liveness_required=body.liveness_required,
            liveness_undetermined=body.liveness_undetermined,
            mode=body.mode,
            snapshot_full_frame=body.snapshot_full_frame,
        )
        door.pin_required = body.pin_required
        door.signing_required = body.signing_required
        session.flush()
        record_admin_action(session, me.id, "door.create", {"door_id": door.id, **_door_policy(door)})
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(409, "door_exists", f"a door named {body.name!r} already exists") from exc
    return DoorOut.model_validate(door, from_attributes=True)


def _door_policy(door: Door) -> dict[str, Any]:
    return {
        "liveness_required": door.liveness_required,
        "liveness_undetermined": door.liveness_undetermined,
        "mode": door.mode,
        "snapshot_full_frame": door.snapshot_full_frame,
        "pin_required": door.pin_required,
        "signing_required": door.signing_required,
    }


@router.get("/doors", response_model=list[DoorOut])
def list_doors(session: SessionDep, _: AdminKey) -> list[DoorOut]:
    return [DoorOut.model_validate(d, from_attributes=True) for d in queries.list_doors(session)]


@router.get("/doors/{door_id}", response_model=DoorOut)
def get_door(door_id: int, session: SessionDep, _: AdminKey) -> DoorOut:
    door = queries.get_door(session, door_id)
    if door is None:
        raise ApiError(404, "door_not_found", f"door {door_id} does not exist")
    return DoorOut.model_validate(door, from_attributes=True)


@router.patch("/doors/{door_id}", response_model=DoorOut)
def update_door(door_id: int, body: DoorPatch, session: SessionDep, me: AdminKey) -> DoorOut:
    """Rename a door, change its liveness policy or its mode; fields left out stay as they are."""
    try:
        door = queries.update_door(
            session,
            door_id,
            name=body.name,
            liveness_required=body.liveness_required,
            liveness_undetermined=body.liveness_undetermined,
            mode=body.mode,
            snapshot_full_frame=body.snapshot_full_frame,
        )
        if door is None:
            raise ApiError(404, "door_not_found", f"door {door_id} does not exist")
        if body.pin_required is not None:
            door.pin_required = body.pin_required
            session.flush()
        if body.signing_required is not None:
            door.signing_required = body.signing_required
            session.flush()
        changed = sorted(body.model_dump(exclude_unset=True))
        record_admin_action(
            session, me.id, "door.update", {"door_id": door_id, "changed": changed, **_door_policy(door)}
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(409, "door_exists", f"a door named {body.name!r} already exists") from exc
    return DoorOut.model_validate(door, from_attributes=True)


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(body: KeyIn, session: SessionDep, me: AdminKey) -> KeyCreated:
    if body.door_id is not None and queries.get_door(session, body.door_id) is None:
        raise ApiError(404, "door_not_found", f"door {body.door_id} does not exist")
    key, secret = queries.create_api_key(session, body.role, body.name, body.door_id)
    if body.expires_in_s is not None:
        key.expires_at = key.created_at + timedelta(seconds=body.expires_in_s)
        session.flush()
    target = {"key_id": key.id, "role": key.role, "door_id": key.door_id}
    if key.expires_at is not None:
        target["expires_at"] = key.expires_at.isoformat()
    record_admin_action(session, me.id, "key.create", target)
    session.commit()
    out = KeyOut.model_validate(key, from_attributes=True)
    return KeyCreated(**out.model_dump(), key=secret)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(session: SessionDep, _: AdminKey) -> list[KeyOut]:
    return [KeyOut.model_validate(k, from_attributes=True) for k in queries.list_api_keys(session)]


@router.delete("/keys/{key_id}", response_model=KeyOut)
def revoke_key(key_id: int, session: SessionDep, me: AdminKey) -> KeyOut:
    if key_id == me.id:
        raise ApiError(409, "own_key", "an admin key cannot revoke itself; use another admin key")
    key = queries.revoke_api_key(session, key_id)
    if key is None:
        raise ApiError(404, "key_not_found", f"API key {key_id} does not exist")
    record_admin_action(session, me.id, "key.revoke", {"key_id": key_id})
    session.commit()
    return KeyOut.model_validate(key, from_attributes=True)
