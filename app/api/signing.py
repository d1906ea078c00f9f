"""Signed door requests: the check on POST /v1/doors/{id}/frames, and issuing a door's secret (admin).

The scheme is in app/services/signing.py and the README ("Signed door requests").
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.body_limit import BODY_DIGEST_STATE, BodyDigest
from app.api.deps import AdminKey, DoorKey, SessionDep
from app.api.errors import ApiError
from app.audit.log import record_admin_action
from app.services.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestSigning,
    SignatureError,
    SignedHeaders,
    SigningConfigError,
)
from app.store import queries

router = APIRouter(prefix="/v1/doors", tags=["admin"])
log = logging.getLogger(__name__)

SIGNING_DOC = (
    "Signed requests (optional unless the door has signing_required): HMAC-SHA256 with the door's "
    "signing secret over 'FG1-HMAC-SHA256\\nPOST\\n<path>\\n<timestamp>\\n<nonce>\\n<hex SHA-256 of the "
    "raw body>'; see the README."
)


def _signing(request: Request) -> RequestSigning:
    signing: RequestSigning | None = getattr(request.app.state, "signing", None)
    if signing is None:
        raise ApiError(503, "starting", "the service is still starting; retry in a few seconds")
    return signing


async def check_door_signature(
    request: Request,
    door_id: int,
    key: DoorKey,
    *,
    timestamp: Annotated[
        str | None,
        Header(
            alias=TIMESTAMP_HEADER,
            max_length=20,
            description="Signed requests: the time of signing, Unix seconds (at most "
            "FACEGATE_SIGNING_WINDOW_S from the service's clock). " + SIGNING_DOC,
        ),
    ] = None,
    nonce: Annotated[
        str | None,
        Header(
            alias=NONCE_HEADER,
            max_length=100,
            description="Signed requests: 16-64 characters of [A-Za-z0-9_-], new for every request.",
        ),
    ] = None,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            max_length=100,
            description="Signed requests: 'v1=' and the HMAC-SHA256 in lowercase hex.",
        ),
    ] = None,
) -> bool:
    """True for a valid signed request, False for an unsigned one at a door that allows it; raises
    401 (`signature_required`, `bad_signature`, `stale_request`, `replayed_request`) otherwise.
    Runs after the form is parsed, so the body's digest is complete."""
    if key.door_id != door_id:
        return False  # the endpoint answers 403 wrong_door
    signing = _signing(request)
    digest: BodyDigest | None = request.scope.get("state", {}).get(BODY_DIGEST_STATE)
    headers = SignedHeaders(timestamp, nonce, signature)
    try:
        return await run_in_threadpool(
            signing.check,
            door_id,
            request.method,
            request.scope["path"],
            headers,
            digest.hexdigest if digest is not None else None,
        )
    except SignatureError as exc:
        raise ApiError(401, exc.code, exc.message) from exc
    except SigningConfigError as exc:
        log.error("cannot check door %d's signature: %s", door_id, exc)  # names the file, never the key
        raise ApiError(
            503, "signing_unavailable", "the service's master key is unusable; see its log"
        ) from exc


SignedDoorRequest = Annotated[bool, Depends(check_door_signature)]


class SigningSecretOut(BaseModel):
    door_id: int
    generation: int = Field(
        description="Which secret this is; issuing a new one retires the previous at once."
    )
    key_id: str = Field(description="Fingerprint of the master key that derived it (not secret).")
    signing_required: bool = Field(description="Whether the door refuses unsigned bursts (PATCH to change).")
    secret: str = Field(
        description="The door's signing secret: shown once, never stored (derived from the master key). "
        "Give it to the door client as FACEGATE_DOOR_SIGNING_SECRET or in its signing_secret_file."
    )


@router.post("/{door_id}/signing-secret", status_code=201, response_model=SigningSecretOut)
def issue_signing_secret(
    door_id: int, request: Request, session: SessionDep, me: AdminKey
) -> SigningSecretOut:
    """Issue a new signing secret for the door (shown once). The previous one stops working at once;
    turn on `signing_required` (PATCH /v1/doors/{id}) once the door client has the new secret."""
    signing = _signing(request)
    door = queries.get_door(session, door_id)
    if door is None:
        raise ApiError(404, "door_not_found", f"door {door_id} does not exist")
    try:
        issued = signing.issue(session, door)
    except SigningConfigError as exc:
        session.rollback()
        log.error("cannot issue door %d's signing secret: %s", door_id, exc)
        raise ApiError(
            503, "signing_unavailable", "the service's master key is unusable; see its log"
        ) from exc
    # Never the secret: which door, which generation, which master key.
    target = {"door_id": door_id, "generation": issued.generation, "key_id": issued.key_id}
    record_admin_action(session, me.id, "door.signing_secret", target)
    session.commit()
    return SigningSecretOut(
        door_id=issued.door_id,
        generation=issued.generation,
        key_id=issued.key_id,
        signing_required=issued.signing_required,
        secret=issued.secret,
    )
