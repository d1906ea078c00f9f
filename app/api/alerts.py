"""Alerts (auditor and admin keys): streaks of spoof or unknown-person bursts at a door."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, require_role
from app.api.schemas import DecisionOut
from app.services.alerts import AlertService, EventSummary
from app.store import security
from app.store.models import ApiKey, utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["audit"])
AlertReader = Annotated[ApiKey, Depends(require_role("auditor", "admin"))]


class AlertOut(BaseModel):
    id: int
    created_at: datetime
    kind: str = Field(description="'burst_streak': spoof or unknown-person bursts in a row at one door.")
    door_id: int
    details: dict[str, Any] = Field(
        description="burst_streak: streak (bursts), window_s, reasons (count per denial reason), "
        "event_ids (oldest first), first_event_at, last_event_at."
    )


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_before_id: int | None = Field(
        description="Pass as before_id for the next (older) page; null: last page."
    )


@router.get("/alerts", response_model=AlertPage)
def list_alerts(
    session: SessionDep,
    _: AlertReader,
    door_id: Annotated[int | None, Query(ge=1, description="Only this door's alerts.")] = None,
    before_id: Annotated[
        int | None, Query(ge=1, description="Only alerts older than this id (paging).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AlertPage:
    """Newest first."""
    rows = security.list_alerts(session, door_id=door_id, before_id=before_id, limit=limit + 1)
    items = [AlertOut.model_validate(a, from_attributes=True) for a in rows[:limit]]
    return AlertPage(items=items, next_before_id=items[-1].id if len(rows) > limit else None)


async def after_decision(request: Request, door_id: int, out: DecisionOut) -> None:
    """Hand a recorded decision to the alert service: published when configured (queued, never
    blocking) and judged for a streak (SQL, off the event loop). The decision stands either way: a
    failure here is logged, never the request's answer."""
    alerts: AlertService | None = getattr(request.app.state, "alerts", None)
    if alerts is None:
        return
    summary = EventSummary(
        event_id=out.event_id,
        door_id=door_id,
        decision=out.decision,
        reason=out.reason,
        person_id=out.person.id if out.person is not None else None,
        person_name=out.person.name if out.person is not None else None,
        mode=out.mode,
        created_at=utcnow().isoformat(),
    )
    try:
        await run_in_threadpool(alerts.after_event, summary)
    except SQLAlchemyError as exc:
        log.warning("could not judge door %d's alert streak: %s", door_id, type(exc).__name__)
