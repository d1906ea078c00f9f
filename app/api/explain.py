"""Why did the encoder match this face? GET /v1/events/{id}/explain: the occlusion map (PNG) of an
access event's face snapshot against the matched person's kept enrolment photo (auditor, admin)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from app.api.deps import ServicesDep, require_role
from app.api.errors import ApiError
from app.api.uploads import run_inference
from app.services.explain import ExplainEventError, explain_event
from app.settings import Settings
from app.store.models import ApiKey
from app.vision.explain import DEFAULT_GRID, MAX_GRID, encode_png, render
from app.vision.pipeline import FacePipeline

router = APIRouter(prefix="/v1/events", tags=["events"])

# Pictures of faces: security staff (auditor) and admins only, as the snapshots themselves.
ExplainReader = Annotated[ApiKey, Depends(require_role("auditor", "admin"))]
# At most 12 x 12 patches here: the map costs one encoding per patch and encoder, in the inference
# pool that door requests share (8 x 8, the default, holds one worker about a second).
API_MAX_GRID = min(MAX_GRID, 12)

_PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The figure as PNG: the event's aligned face, the person's aligned kept photo, and "
        "the occlusion map over the face (red: hiding that part raises the distance, so it made the two "
        "look alike; blue: it made them look different); the fusion profile adds each encoder's share.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _figure(
    sessions: sessionmaker[Session], pipeline: FacePipeline, settings: Settings, event_id: int, grid: int
) -> bytes:
    return encode_png(render(explain_event(sessions, pipeline, settings, event_id, grid=grid)))


@router.get("/{event_id}/explain", response_class=Response, responses=_PNG_RESPONSE)
async def explain(
    event_id: int,
    services: ServicesDep,
    _: ExplainReader,
    grid: Annotated[
        int, Query(ge=2, le=API_MAX_GRID, description="Patch positions per side of the aligned face.")
    ] = DEFAULT_GRID,
) -> Response:
    """Occlusion sensitivity of an event's match (Zeiler & Fergus): a grey patch slides over the
    event's aligned face; each occluded copy is re-encoded and its distance to the person's nearest
    kept enrolment photo compared with the unoccluded one. About a second of CPU on two cores; it
    runs in the inference pool and reads the event's snapshot, which retention may have purged."""
    serving = services.serving()
    fn = partial(_figure, services.sessions, serving.pipeline, services.settings, event_id, grid)
    try:
        png = await run_inference(services, fn)
    except ExplainEventError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    return Response(png, media_type="image/png", headers=headers)
