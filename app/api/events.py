"""The access log (auditor): filters, cursor pagination, CSV export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from app.api.deps import AuditorKey, ServicesDep, SessionDep, require_role
from app.api.errors import ApiError
from app.api.schemas import EventOut, EventPage
from app.store import queries, snapshot_queries
from app.store.models import AccessEvent, ApiKey

router = APIRouter(prefix="/v1/events", tags=["events"])

CSV_COLUMNS = list(EventOut.model_fields)
CSV_MAX_ROWS = 1_000_000
# Snapshots are pictures of faces: security staff (auditor) and admins only, never door or verifier keys.
SnapshotReader = Annotated[ApiKey, Depends(require_role("auditor", "admin"))]


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ApiError(422, "invalid_request", f"{name} needs a timezone, e.g. 2026-11-24T08:00:00Z")
    return value


def _page(
    session: Session, q: EventQuery, limit: int, cursor: str | None
) -> tuple[list[EventOut], str | None]:
    try:
        events, next_cursor = queries.list_events(
            session,
            door_id=q.door_id,
            person_id=q.person_id,
            decision=q.decision,
            reason=q.reason,
            since=_aware("since", q.since),
            until=_aware("until", q.until),
            limit=limit,
            cursor=cursor,
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"invalid filter: {exc}") from exc
    return _with_snapshot_flags(session, events), next_cursor


def _with_snapshot_flags(session: Session, events: list[AccessEvent]) -> list[EventOut]:
    """The events as served, with has_snapshot / has_frame (one query per page, no image read)."""
    flags = snapshot_queries.snapshot_flags(session, (e.id for e in events))
    out = []
    for event in events:
        item = EventOut.model_validate(event, from_attributes=True)
        item.has_snapshot, item.has_frame = flags.get(event.id, snapshot_queries.NO_SNAPSHOT)
        out.append(item)
    return out


class EventQuery(BaseModel):
    """Filters for the access log; unknown query parameters are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    door_id: int | None = None
    person_id: int | None = None
    decision: Literal["granted", "denied"] | None = None
    reason: str | None = Field(
        default=None, max_length=64, description="Only events with this reason, e.g. spoof or unknown_person."
    )
    since: datetime | None = Field(default=None, description="Inclusive, ISO 8601 with timezone.")
    until: datetime | None = Field(default=None, description="Exclusive, ISO 8601 with timezone.")
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = None
    format: Literal["json", "csv"] = "json"

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso_only(cls, value: object) -> object:
        # Pydantic would read a bare number as Unix seconds; the schema promises ISO 8601 only.
        if isinstance(value, str) and not any(c in value for c in "-:T"):
            raise ValueError("use ISO 8601 with a timezone, e.g. 2026-11-24T08:00:00Z")
        return value


_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page of events, or with `format=csv` every matching event as CSV.",
        "content": {
            "text/csv": {"schema": {"type": "string", "description": f"Columns: {', '.join(CSV_COLUMNS)}."}}
        },
    }
}


@router.get("", response_model=EventPage, responses=_CSV_RESPONSE)
def list_events(
    session: SessionDep, services: ServicesDep, _: AuditorKey, q: Annotated[EventQuery, Query()]
) -> EventPage | StreamingResponse:
    """Newest first. `format=csv` streams every matching event (pagination parameters ignored)."""
    if q.format == "csv":
        return _csv_export(services, q)
    items, next_cursor = _page(session, q, q.limit, q.cursor)
    return EventPage(items=items, next_cursor=next_cursor)


def _csv_export(services: ServicesDep, q: EventQuery) -> StreamingResponse:
    _aware("since", q.since)
    _aware("until", q.until)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        cursor: str | None = None
        sent = 0
        with services.sessions() as session:
            while sent < CSV_MAX_ROWS:
                items, cursor = _page(session, q, 1000, cursor)
                for item in items:
                    row = item.model_dump(mode="json")
                    writer.writerow([_csv_cell(row[c]) for c in CSV_COLUMNS])
                sent += len(items)
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
                if cursor is None:
                    break

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="facegate-events.csv"'},
    )


@router.get("/{event_id}", response_model=EventOut)
def get_event(event_id: int, session: SessionDep, _: AuditorKey) -> EventOut:
    event = queries.get_event(session, event_id)
    if event is None:
        raise ApiError(404, "event_not_found", f"access event {event_id} does not exist")
    return _with_snapshot_flags(session, [event])[0]


_SNAPSHOT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The event's picture as JPEG: the subject's best face crop, or the whole frame.",
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/{event_id}/snapshot", response_class=Response, responses=_SNAPSHOT_RESPONSE)
def get_snapshot(
    event_id: int,
    session: SessionDep,
    _: SnapshotReader,
    kind: Annotated[
        Literal["face", "frame"],
        Query(description="'face': the face crop (every snapshot has one); 'frame': the whole frame."),
    ] = "face",
) -> Response:
    """The picture an access event kept (auditor and admin keys only). Events keep one when a face of
    the subject was found and FACEGATE_SNAPSHOTS is on; the frame only at doors with
    snapshot_full_frame. Purged after FACEGATE_SNAPSHOT_RETENTION_DAYS, and with a deleted person's
    granted events."""
    image = snapshot_queries.snapshot_image(session, event_id, kind)
    if image is None:
        if queries.get_event(session, event_id) is None:
            raise ApiError(404, "event_not_found", f"access event {event_id} does not exist")
        raise ApiError(
            404,
            "snapshot_not_found",
            f"access event {event_id} has no {kind} snapshot (none kept, or purged)",
        )
    # Faces must not linger in shared caches or be sniffed into something else.
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    return Response(image, media_type="image/jpeg", headers=headers)
