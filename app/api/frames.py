"""Door frames: the recognition endpoint (door keys, bound to their door)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from app.access.pin import PIN_REGEX
from app.api.alerts import after_decision
from app.api.deps import DoorKey, ServicesDep
from app.api.errors import ApiError
from app.api.schemas import DecisionOut, LivenessOut, PersonRef
from app.api.signing import SignedDoorRequest
from app.api.uploads import read_upload, run_inference
from app.gallery.matching import Decision
from app.services.access import authorize_entry
from app.services.container import Services, Serving
from app.services.recognition import (
    Burst,
    ClaimedPerson,
    DoorPolicy,
    FramesResult,
    TimestampError,
    burst_times,
    recognise,
    verify_claim,
)
from app.services.second_factor import check_after_authorization
from app.store import badge_queries, queries, snapshot_queries
from app.store.models import utcnow

router = APIRouter(prefix="/v1/doors", tags=["recognition"])
log = logging.getLogger(__name__)


def _record(
    services: Services,
    door_id: int,
    result: FramesResult,
    latency_ms: float,
    *,
    request_id: str,
    model_version: str,
    pin: str | None = None,
) -> DecisionOut:
    d = result.decision
    granted = result.reason == "match" and d.person_id is not None
    with services.sessions() as session:
        person = queries.get_person(session, d.person_id) if d.person_id is not None else None
        if granted and person is None:  # deleted between search and now: never open for a ghost
            granted = False
        reason = result.reason if granted or result.reason != "match" else "unknown_person"
        # Recognised and live: now the access rules decide (groups, schedules, validity); the
        # event's time is the time they judged. Later checks (second factor, lockdown) go after it.
        now = utcnow()
        authz = authorize_entry(session, person, door_id, now, services.settings) if granted else None
        if authz is not None and not authz.allowed:
            granted, reason = False, authz.reason or "not_authorized"
        # Then lockdown, then the PIN (app/services/second_factor.py); every event names the
        # lockdown in force, whatever decided it.
        after = check_after_authorization(
            session, services.settings, door_id=door_id, person=person, would_grant=granted, pin=pin, now=now
        )
        if after.reason is not None:
            granted, reason = False, after.reason
        event = queries.record_event(
            session,
            door_id=door_id,
            decision="granted" if granted else "denied",
            reason=reason,
            created_at=now,
            rule=after.rule or (authz.rule if authz is not None else None),
            person_id=d.person_id,
            best_distance=d.distance,
            second_distance=d.second_distance,
            frames=result.frames,
            frames_with_face=result.frames_with_face,
            latency_ms=latency_ms,
            model_version=model_version,
            request_id=request_id,
            liveness=result.liveness_record(),
            tau=result.tau,
            mode=result.mode,
            claim=result.claim,
            lockdown_id=after.lockdown_id,
            pin_check=after.pin_check,
        )
        snap = result.snapshot
        if snap is not None:  # the event's transaction: no event without its picture, nor the reverse
            snapshot_queries.add_snapshot(session, event, snap.face_jpeg, snap.frame_jpeg)
        session.commit()
        return DecisionOut(
            event_id=event.id,
            decision="granted" if granted else "denied",
            reason=event.reason,
            person=PersonRef(id=person.id, name=person.name) if granted and person is not None else None,
            distance=d.distance,
            second_distance=d.second_distance,
            tau=result.tau,
            mode="claim" if result.mode == "claim" else "identify",
            claim=result.claim,
            rule=event.rule,
            lockdown_id=event.lockdown_id,
            pin_check=after.pin_check,
            frames=result.frames,
            frames_with_face=result.frames_with_face,
            liveness=_liveness_out(result),
            hint=result.hint,
            latency_ms=round(latency_ms, 2),
            model_version=model_version,
            request_id=request_id,
        )


def _liveness_out(result: FramesResult) -> LivenessOut | None:
    """The response shows what the access event keeps."""
    record = result.liveness_record()
    return None if record is None else LivenessOut(**record)


def _claimed(services: Services, claim: str, serving: Serving) -> ClaimedPerson | str:
    """The claimed person with their templates of the served version, or the reason to deny:
    ``revoked_claim`` (a revoked badge, whoever holds it), ``unknown_claim`` (no such badge or
    person) or ``claim_not_enrolled`` (no face enrolled)."""
    with services.sessions() as session:
        if badge_queries.revoked_badge(session, claim) is not None:
            return "revoked_claim"
        person = queries.person_for_claim(session, claim)
        if person is None:
            return "unknown_claim"
        ids, vectors = queries.person_templates(
            session, person.id, serving.pipeline.model_version, serving.pipeline.dim
        )
    if not ids:
        return "claim_not_enrolled"
    return ClaimedPerson(claim, person.id, ids, vectors)


@router.post("/{door_id}/frames", response_model=DecisionOut)
async def post_frames(
    *,
    request: Request,
    door_id: int,
    services: ServicesDep,
    key: DoorKey,
    signed: SignedDoorRequest,  # 401 for a bad, stale or replayed signature (app/api/signing.py)
    frames: Annotated[list[UploadFile], File(description="One or more frames, in capture order.")],
    timestamps: Annotated[
        list[float] | None,
        Form(description="Capture time of each frame in seconds (any origin), one per frame, increasing."),
    ] = None,
    claim: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=200,
            description="Who the person claims to be (a badge reader's output): a person's external_id, "
            "or id:<n> for person n. Doors in mode 'claim' require it and 'both' use it when sent: the "
            "face is then compared with that person only, at the 1:1 tau. Ignored (but recorded) by "
            "doors in mode 'identify'.",
        ),
    ] = None,
    pin: Annotated[
        str | None,
        Form(
            pattern=PIN_REGEX,
            description="The PIN the person entered on the door's keypad (4-12 digits), for doors or "
            "people that require one; checked only when the burst would otherwise open the door. "
            "Never stored or logged: the event records only the check's outcome (pin_check).",
        ),
    ] = None,
) -> DecisionOut:
    """Decide whether to open the door; every decision, denied ones included, becomes an access event.

    Doors in mode 'claim' (and 'both', when a claim is sent) answer 1:1 against the claimed person at
    the 1:1 tau; their extra denial reasons: `not_claimed_person` (the face is nobody's, or
    another enrolled person is nearer than the claimed one), `unknown_claim` (no person has that
    badge or id), `revoked_claim` (the badge is revoked: `POST /v1/badges/revoked`),
    `claim_required` (no claim sent),
    `claim_not_enrolled` (the person has no face for the model version in service).

    A recognised, live person then meets the access rules (/v1/access; `rule` names the one that
    decided): `not_authorized` (the door has grants, none for their groups), `outside_schedule`,
    `expired` or `not_yet_valid` (their validity period). A door without grants is open to everyone
    enrolled.

    After the access rules, a site lockdown denies with reason `lockdown` (GET /v1/lockdown), then
    doors or people that require a PIN deny with `pin_required` (no `pin` sent: send the same burst
    again with it), `wrong_pin`, `pin_locked_out` (too many wrong PINs at this door) or `pin_not_set`.
    """
    started = time.perf_counter()
    if key.door_id != door_id:
        raise ApiError(403, "wrong_door", f"this key belongs to door {key.door_id}, not door {door_id}")

    def door_policy() -> tuple[DoorPolicy, str] | None:
        with services.sessions() as session:
            door = queries.get_door(session, door_id)
            if door is None:
                return None
            policy = DoorPolicy(door.liveness_required, door.liveness_undetermined, door.snapshot_full_frame)
            return policy, door.mode

    found = await run_in_threadpool(door_policy)
    if found is None:
        raise ApiError(404, "door_not_found", f"door {door_id} does not exist")
    policy, door_mode = found
    if len(frames) > services.settings.max_frames:
        raise ApiError(
            422,
            "too_many_frames",
            f"{len(frames)} frames sent; at most {services.settings.max_frames} per request",
        )
    try:
        times = burst_times(timestamps, len(frames), services.settings)  # before any inference
    except TimestampError as exc:
        raise ApiError(422, "bad_timestamps", str(exc)) from exc
    data = [
        await read_upload(f, services.settings.max_image_bytes, f"frame {i}") for i, f in enumerate(frames)
    ]
    burst = Burst(data, policy, times)
    # One model version for the whole request (a reencode may switch it meanwhile), and the τ in
    # force now, which the event records.
    serving = services.serving()
    one_to_one = door_mode == "claim" or (door_mode == "both" and claim is not None)
    if not one_to_one:
        tau = serving.calibration.tau
        result = await run_inference(
            services, recognise, serving.pipeline, serving.index, services.settings, burst, tau
        )
        result.claim = claim
    else:
        tau_1to1 = serving.calibration.tau_1to1
        claimed = None if claim is None else await run_in_threadpool(_claimed, services, claim, serving)
        if isinstance(claimed, ClaimedPerson):
            result = await run_inference(
                services,
                partial(verify_claim, tau=tau_1to1),
                serving.pipeline,
                serving.index,
                claimed,
                services.settings,
                burst,
            )
        else:
            # Refused before any inference: no claim, or one that names nobody enrolled.
            reason = "claim_required" if claim is None else (claimed or "unknown_claim")
            result = FramesResult(
                decision=Decision("no_face", None, None, None, len(frames), 0, 0),
                reason=reason,
                frames=len(frames),
                frames_with_face=0,
                liveness_required=policy.liveness_required,
                tau=tau_1to1,
                mode="claim",
                claim=claim,
            )
    latency_ms = (time.perf_counter() - started) * 1000.0
    out = await run_in_threadpool(
        lambda: _record(
            services,
            door_id,
            result,
            latency_ms,
            request_id=request.state.request_id,
            model_version=serving.pipeline.model_version,
            pin=pin,
        )
    )

    m = services.metrics
    for stage, ms in result.stage_ms.items():
        m.stage_seconds.labels(stage).observe(ms / 1000.0)
    m.request_seconds.observe(latency_ms / 1000.0)
    m.decisions.labels(out.decision, out.reason).inc()
    log.info(
        "access decision",
        extra={
            "door_id": door_id,
            "decision": out.decision,
            "reason": out.reason,
            "person_id": out.person.id if out.person else None,
            "distance": out.distance,
            "liveness": out.liveness.outcome if out.liveness else None,
            "liveness_score": out.liveness.score if out.liveness else None,
            "event_id": out.event_id,
            "latency_ms": out.latency_ms,
            "request_id": out.request_id,
            "signed": signed,
        },
    )
    await after_decision(request, door_id, out)  # alert streaks; MQTT / webhook when configured
    return out
