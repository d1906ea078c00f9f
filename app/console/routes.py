"""The web console's pages (/console): server-rendered HTML, a little vanilla JS, one CSS file.

No business rule lives here. Every action calls the very functions behind the API's routes
(app/api/admin.py, people.py, events.py, gallery.py) with the signed-in key, so the console
validates, refuses, audits (app.audit.log.record_admin_action) and answers exactly as the API;
reads go through app/store queries. Nothing calls HTTP back into the server.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile

from app.api import admin, events, gallery, labels, people
from app.api import explain as explain_api
from app.api.deps import ServicesDep, SessionDep
from app.api.errors import ApiError, error_body
from app.api.schemas import DoorIn, DoorPatch, EventOut, EventPage, KeyIn, PersonIn
from app.audit.log import record_admin_action
from app.console import auth, images
from app.console.auth import Area, Viewer
from app.console.forms import FormError, form_fields, parse_form
from app.services.container import Services
from app.settings import Settings
from app.store import console_sessions, queries, second_factor_queries, snapshot_queries
from app.store.models import ROLES, Person, utcnow

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
PAGE_EVENTS = 50
PAGE_PEOPLE = 100
# Reasons offered in the filter besides those already in the log (the log's own come first).
KNOWN_REASONS = (
    "match",
    "unknown_person",
    "ambiguous",
    "spoof",
    "liveness_undetermined",
    "no_face",
    "low_quality",
    "not_authorized",
    "outside_schedule",
    "expired",
    "not_yet_valid",
    "claim_required",
    "not_claimed_person",
    "unknown_claim",
    "claim_not_enrolled",
    "revoked_claim",
    "pin_required",
    "wrong_pin",
    "pin_locked_out",
    "lockdown",
)

router = APIRouter(prefix="/console", include_in_schema=False)


# --- sign-in state, errors ---------------------------------------------------------------------


class ConsoleError(Exception):
    """Ends a console request: a redirect to sign-in, or an error page (JSON under /console/api)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _no_store(response: Response) -> Response:
    # Pages carry names, photos and once a key's secret: never kept by the browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    return response


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    viewer = auth.viewer_for(request, session, _settings(request))
    session.commit()  # keeps last_seen_at
    if viewer is None:
        raise ConsoleError(401, "unauthorized", "sign in to the console")
    # The API's handlers read the caller's key id here (audit records, logs).
    request.state.key_id = viewer.key.id
    return viewer


def _require(area: Area) -> Any:
    def check(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
        if not viewer.may(area):
            needed = " or ".join(auth.AREA_ROLES[area])
            raise ConsoleError(
                403, "forbidden", f"this page needs an {needed} key; you signed in with a {viewer.role} key"
            )
        return viewer

    return check


async def _check_post(request: Request, viewer: Viewer) -> None:
    if not auth.same_origin(request):
        raise ConsoleError(403, "cross_origin", "this request came from another site and was refused")
    submitted = request.headers.get(auth.CSRF_HEADER)
    if submitted is None:
        form = await request.form()
        value = form.get(auth.CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if not auth.csrf_ok(viewer, submitted):
        raise ConsoleError(
            403, "csrf", "the form's security token is missing or stale: reload the page and retry"
        )


SecurityViewer = Annotated[Viewer, Depends(_require("security"))]
AdminViewer = Annotated[Viewer, Depends(_require("admin"))]


async def _admin_post(request: Request, viewer: AdminViewer) -> Viewer:
    await _check_post(request, viewer)
    return viewer


async def _security_post(request: Request, viewer: SecurityViewer) -> Viewer:
    await _check_post(request, viewer)
    return viewer


AdminPost = Annotated[Viewer, Depends(_admin_post)]
AnyPost = Annotated[Viewer, Depends(_security_post)]


def install_console(app: FastAPI) -> None:
    """Mounts the console on the app (its HTML routes stay out of the OpenAPI schema)."""

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        if request.url.path.startswith("/console/api/"):
            return JSONResponse(error_body(exc.code, exc.message, request), status_code=exc.status)
        if exc.status == 401:
            target = "/console/login"
            if request.method == "GET" and request.url.path not in ("/console", "/console/"):
                target += "?" + urlencode({"next": request.url.path})
            response = RedirectResponse(target, status_code=303)
            auth.clear_cookie(response, request, _settings(request))
            return _no_store(response)
        return _render(
            request, "error.html", None, status_code=exc.status, message=exc.message, code=exc.code
        )

    app.include_router(router)


def _render(
    request: Request, name: str, viewer: Viewer | None, *, status_code: int = 200, **context: Any
) -> Response:
    response = templates.TemplateResponse(
        request, name, {"viewer": viewer, "path": request.url.path, **context}, status_code=status_code
    )
    return _no_store(response)


def _redirect(url: str) -> Response:
    return _no_store(RedirectResponse(url, status_code=303))


def _form_str(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()[:5])


# --- sign-in -----------------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise ConsoleError(404, "not_found", f"no console file {name!r}")
    return FileResponse(
        HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"}
    )


@router.get("")
@router.get("/")
def home(request: Request, session: SessionDep) -> Response:
    viewer = auth.viewer_for(request, session, _settings(request))
    session.commit()
    return _redirect("/console/events" if viewer is not None else "/console/login")


def _safe_next(value: str) -> str:
    # Only a path inside the console: never an open redirect to another site.
    if value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/events"


@router.get("/login")
def login_page(request: Request, next: str = "/console/events") -> Response:
    return _render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    key: Annotated[str, Form(max_length=300)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/events",
) -> Response:
    settings = _settings(request)
    if not auth.same_origin(request):
        raise ConsoleError(403, "cross_origin", "this sign-in came from another site and was refused")
    try:
        created, token, api_key = auth.sign_in(session, key, settings)
    except auth.SignInRefusedError as exc:
        session.rollback()
        return _render(request, "login.html", None, status_code=401, next=_safe_next(next), error=str(exc))
    record_admin_action(
        session, api_key.id, "console.sign_in", {"session_id": created.id, "role": api_key.role}
    )
    session.commit()
    # Ids only: the key's secret and the session token never reach a log.
    log.info("console sign-in", extra={"key_id": api_key.id, "role": api_key.role, "session_id": created.id})
    response = _redirect(_safe_next(next))
    auth.set_cookie(response, token, request, settings)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, viewer: AnyPost) -> Response:
    console_sessions.revoke_session(session, viewer.session_id)
    record_admin_action(session, viewer.key.id, "console.sign_out", {"session_id": viewer.session_id})
    session.commit()
    log.info("console sign-out", extra={"key_id": viewer.key.id, "session_id": viewer.session_id})
    response = _redirect("/console/login")
    auth.clear_cookie(response, request, _settings(request))
    return response


# --- security: the access log ------------------------------------------------------------------


class _Filters(BaseModel):
    door_id: int | None = None
    person_id: int | None = None
    decision: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self, **extra: Any) -> events.EventQuery:
        return events.EventQuery(
            door_id=self.door_id,
            person_id=self.person_id,
            decision=self.decision,  # type: ignore[arg-type]
            reason=self.reason,
            since=self.since,
            until=self.until,
            **extra,
        )

    def params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            out[name] = value.strftime("%Y-%m-%dT%H:%M") if isinstance(value, datetime) else str(value)
        return out


def _local_utc(value: str, name: str) -> datetime | None:
    """The form's datetime-local value, read as UTC (the page says so); ISO with a zone too."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConsoleError(
            422, "invalid_request", f"{name}: use a date and time like 2026-12-06T08:00"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _int_param(value: str, name: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ConsoleError(422, "invalid_request", f"{name}: a number is needed") from exc


def read_filters(
    *,
    door_id: str = "",
    person_id: str = "",
    decision: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
) -> _Filters:
    if decision and decision not in ("granted", "denied"):
        raise ConsoleError(422, "invalid_request", "decision: granted or denied")
    if len(reason) > 64:
        raise ConsoleError(422, "invalid_request", "reason: at most 64 characters")
    return _Filters(
        door_id=_int_param(door_id, "door"),
        person_id=_int_param(person_id, "person"),
        decision=decision or None,
        reason=reason or None,
        since=_local_utc(since, "since"),
        until=_local_utc(until, "until"),
    )


FiltersDep = Annotated[_Filters, Depends(read_filters)]


def _people_names(session: Session, ids: set[int]) -> dict[int, str]:
    names: dict[int, str] = {}
    for person_id in sorted(ids):
        person = queries.get_person(session, person_id)
        if person is not None:
            names[person_id] = person.name
    return names


def _event_rows(session: Session, items: list[EventOut]) -> list[dict[str, Any]]:
    doors = {d.id: d.name for d in queries.list_doors(session)}
    names = _people_names(session, {e.person_id for e in items if e.person_id is not None})
    flags = snapshot_queries.snapshot_flags(session, [e.id for e in items])
    rows = []
    for e in items:
        liveness = e.liveness or {}
        rows.append(
            {
                "id": e.id,
                "created_at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "door": doors.get(e.door_id, f"door {e.door_id}"),
                "door_id": e.door_id,
                "decision": e.decision,
                "reason": e.reason,
                "person": names.get(e.person_id, f"#{e.person_id}") if e.person_id is not None else None,
                "person_id": e.person_id,
                "distance": None if e.best_distance is None else round(e.best_distance, 3),
                "tau": None if e.tau is None else round(e.tau, 3),
                "liveness": liveness.get("outcome"),
                "mode": e.mode,
                "claim": e.claim,
                "snapshot": e.id in flags,
                "url": f"/console/events/{e.id}",
                "snapshot_url": f"/console/events/{e.id}/snapshot" if e.id in flags else None,
            }
        )
    return rows


def _events_page(
    session: Session, services: Services, viewer: Viewer, filters: _Filters, cursor: str | None
) -> tuple[list[EventOut], str | None]:
    try:
        page = events.list_events(
            session=session,
            services=services,
            _=viewer.key,
            q=filters.query(limit=PAGE_EVENTS, cursor=cursor),
        )
    except ValidationError as exc:
        raise ConsoleError(422, "invalid_request", _validation_message(exc)) from exc
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    if not isinstance(page, EventPage):
        raise ConsoleError(500, "internal", "unexpected answer from the event log")
    return page.items, page.next_cursor


def _reasons(session: Session) -> list[str]:
    seen = sorted({c.reason for c in queries.count_events(session)})
    return seen + [r for r in KNOWN_REASONS if r not in seen]


@router.get("/events")
def events_page(
    *,
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    viewer: SecurityViewer,
    filters: FiltersDep,
    cursor: str | None = None,
) -> Response:
    items, next_cursor = _events_page(session, services, viewer, filters, cursor)
    rows = _event_rows(session, items)
    params = filters.params()
    return _render(
        request,
        "events.html",
        viewer,
        rows=rows,
        filters=params,
        doors=queries.list_doors(session),
        people=[p for p, _ in queries.list_people(session, limit=1000)],
        reasons=_reasons(session),
        newest_id=max((r["id"] for r in rows), default=0) if cursor is None else None,
        next_url=f"/console/events?{urlencode({**params, 'cursor': next_cursor})}" if next_cursor else None,
        csv_url=f"/console/events.csv?{urlencode(params)}",
        poll_url=f"/console/api/events?{urlencode(params)}",
        lockdown=second_factor_queries.active_lockdown(session),
    )


@router.get("/api/events")
def events_since(
    session: SessionDep, services: ServicesDep, viewer: SecurityViewer, filters: FiltersDep, after_id: int = 0
) -> JSONResponse:
    """The live feed: events newer than ``after_id`` that match the filters, newest first."""
    items, more = _events_page(session, services, viewer, filters, None)
    fresh = [e for e in items if e.id > after_id]
    # More than a page arrived since the last poll: the page says so and offers a reload.
    truncated = more is not None and len(fresh) == len(items)
    return JSONResponse(
        {"events": _event_rows(session, fresh), "truncated": truncated}, headers={"Cache-Control": "no-store"}
    )


@router.get("/events.csv")
def events_csv(
    session: SessionDep, services: ServicesDep, viewer: SecurityViewer, filters: FiltersDep
) -> Response:
    # The API's own export: same columns, same streaming, every matching event.
    try:
        answer = events.list_events(
            session=session, services=services, _=viewer.key, q=filters.query(format="csv")
        )
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    if isinstance(answer, EventPage):
        raise ConsoleError(500, "internal", "unexpected answer from the event log")
    answer.headers["Cache-Control"] = "no-store"
    return answer


def _event_or_404(session: Session, viewer: Viewer, event_id: int) -> EventOut:
    try:
        return events.get_event(event_id=event_id, session=session, _=viewer.key)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc


# Shown in their own places on the detail page; every other field of the API's event follows.
_DETAIL_SHOWN = {"id", "created_at", "door_id", "decision", "reason", "person_id", "best_distance",
                 "second_distance", "tau", "mode", "claim", "liveness",
                 "has_snapshot", "has_frame"}  # fmt: skip


def _readable(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


@router.get("/events/{event_id}")
def event_detail(
    request: Request, event_id: int, session: SessionDep, viewer: SecurityViewer, labelled: bool = False
) -> Response:
    event = _event_or_404(session, viewer, event_id)
    row = _event_rows(session, [event])[0]
    flags = snapshot_queries.snapshot_flags(session, [event_id]).get(event_id)
    person_face = None
    if event.person_id is not None:
        face = _first_face(session, event.person_id)
        if face is not None:
            person_face = f"/console/people/{event.person_id}/faces/{face}/image"
    liveness = event.liveness or {}
    extra = {
        k: _readable(v)
        for k, v in event.model_dump(mode="json").items()
        if k not in _DETAIL_SHOWN and v is not None
    }
    return _render(
        request,
        "event.html",
        viewer,
        event=event,
        row=row,
        has_face=flags is not None and flags.face,
        has_frame=flags is not None and flags.frame,
        person_face=person_face,
        liveness=liveness,
        cues=sorted((liveness.get("cues") or {}).items()),
        extra=extra,
        labelled=labelled,
    )


@router.get("/events/{event_id}/snapshot")
def event_snapshot(
    event_id: int, session: SessionDep, viewer: SecurityViewer, kind: str = "face"
) -> Response:
    """The event's face crop (or ``kind=frame``: the whole frame), read as GET /v1/events/{id}/snapshot
    reads it; never logged, never cached."""
    if kind not in ("face", "frame"):
        raise ConsoleError(422, "invalid_request", "kind: face or frame")
    _event_or_404(session, viewer, event_id)
    image = snapshot_queries.snapshot_image(session, event_id, "face" if kind == "face" else "frame")
    if image is None:
        raise ConsoleError(404, "snapshot_not_found", f"event {event_id} has no {kind} snapshot")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/events/{event_id}/label")
async def label_event(request: Request, event_id: int, services: ServicesDep, viewer: AnyPost) -> Response:
    """A reviewer's verdict on the event, through the API's own PUT /v1/events/{id}/label."""
    form = await request.form()
    person = _form_str(form, "true_person_id")
    try:
        body = labels.EventLabelIn.model_validate(
            {
                "label": _form_str(form, "label"),
                "true_person_id": int(person) if person.isdigit() else (person or None),
            }
        )
    except ValidationError as exc:
        raise ConsoleError(422, "invalid_request", _validation_message(exc)) from exc

    def put() -> None:
        with services.sessions() as session:
            labels.put_label(event_id=event_id, body=body, session=session, me=viewer.key)

    try:
        await run_in_threadpool(put)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    return _redirect(f"/console/events/{event_id}?labelled=1")


@router.get("/events/{event_id}/explain.png")
async def event_explain(event_id: int, services: ServicesDep, viewer: SecurityViewer) -> Response:
    """The occlusion map of the event's match, as GET /v1/events/{id}/explain draws it (about a
    second in the inference pool, so the page loads it only when asked)."""
    try:
        return await explain_api.explain(event_id=event_id, services=services, _=viewer.key)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc


@router.get("/attempts")
def attempts(request: Request, session: SessionDep, viewer: SecurityViewer, days: int = 7) -> Response:
    """Denied and spoof attempts per door over the last ``days`` (0: all time)."""
    if not 0 <= days <= 3650:
        raise ConsoleError(422, "invalid_request", "days: between 0 and 3650")
    since = utcnow() - timedelta(days=days) if days else None
    counts = queries.count_events(session, since=since)
    per_door: dict[int, dict[str, Any]] = {}
    for c in counts:
        entry = per_door.setdefault(c.door_id, {"granted": 0, "denied": 0, "spoof": 0, "reasons": Counter()})
        entry[c.decision] = entry.get(c.decision, 0) + c.events
        if c.reason == "spoof":
            entry["spoof"] += c.events
        if c.decision == "denied":
            entry["reasons"][c.reason] += c.events
    doors = {d.id: d.name for d in queries.list_doors(session)}
    rows = [
        {
            "door_id": door_id,
            "door": doors.get(door_id, f"door {door_id}"),
            "granted": e["granted"],
            "denied": e["denied"],
            "spoof": e["spoof"],
            "reasons": e["reasons"].most_common(),
        }
        for door_id, e in sorted(per_door.items(), key=lambda kv: (-kv[1]["denied"], kv[0]))
    ]
    since_param = since.strftime("%Y-%m-%dT%H:%M") if since else ""
    return _render(request, "attempts.html", viewer, rows=rows, days=days, since_param=since_param)


# --- admin: people -----------------------------------------------------------------------------


def _first_face(session: Session, person_id: int) -> int | None:
    templates_ = queries.list_templates(session, person_id)
    shown = [t for t in templates_ if t.thumbnail is not None or t.photo_id is not None]
    return shown[0].id if shown else None


def _people_context(
    session: Session, services: Services, viewer: Viewer, after_id: int | None
) -> dict[str, Any]:
    listed = people.list_people(
        session=session, services=services, _=viewer.key, limit=PAGE_PEOPLE + 1, after_id=after_id
    )
    more = len(listed) > PAGE_PEOPLE
    listed = listed[:PAGE_PEOPLE]
    return {
        "people": [{"person": p, "face": _first_face(session, p.id)} for p in listed],
        "next_url": f"/console/people?after_id={listed[-1].id}" if more and listed else None,
    }


@router.get("/people")
def people_page(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    viewer: AdminViewer,
    after_id: int | None = None,
) -> Response:
    return _render(
        request, "people.html", viewer, **_people_context(session, services, viewer, after_id), error=None
    )


async def _enrol(
    *,
    request: Request,
    services: Services,
    viewer: Viewer,
    person_id: int,
    photo: StarletteUploadFile,
    force: bool,
) -> str | None:
    """Enrols one photo through the API's own handler; the refusal message, or None when enrolled."""
    try:
        await people.enrol_face(
            request=request,
            person_id=person_id,
            services=services,
            _=viewer.key,
            # The form's file, as FastAPI would hand it to the API route (same class underneath).
            image=cast(UploadFile, photo),
            force=force,
        )
    except ApiError as exc:
        return f"{exc.code}: {exc.message}"
    return None


def _upload(form: Mapping[str, Any], name: str) -> StarletteUploadFile | None:
    value = form.get(name)
    if isinstance(value, StarletteUploadFile) and value.filename:
        return value
    return None


@router.post("/people")
async def create_person(request: Request, services: ServicesDep, viewer: AdminPost) -> Response:
    form = await request.form()
    name, external_id = _form_str(form, "name"), _form_str(form, "external_id")
    photo = _upload(form, "photo")

    def create() -> int:
        try:
            body = PersonIn.model_validate({"name": name, "external_id": external_id or None})
        except ValidationError as exc:
            raise ConsoleError(422, "invalid_request", _validation_message(exc)) from exc
        with services.sessions() as session:
            return people.create_person(body=body, session=session, me=viewer.key).id

    try:
        person_id = await run_in_threadpool(create)
    except ApiError as exc:
        return await _people_error(request, services, viewer, f"{exc.code}: {exc.message}", exc.status)
    except ConsoleError as exc:
        return await _people_error(request, services, viewer, exc.message, exc.status)
    if photo is not None:
        refused = await _enrol(
            request=request, services=services, viewer=viewer, person_id=person_id, photo=photo, force=False
        )
        if refused is not None:
            return _redirect(f"/console/people/{person_id}?{urlencode({'refused': refused})}")
    return _redirect(f"/console/people/{person_id}?{urlencode({'created': '1'})}")


async def _people_error(
    request: Request, services: Services, viewer: Viewer, message: str, status: int
) -> Response:
    def context() -> dict[str, Any]:
        with services.sessions() as session:
            return _people_context(session, services, viewer, None)

    ctx = await run_in_threadpool(context)
    return _render(request, "people.html", viewer, status_code=status, error=message, **ctx)


def _person_or_error(session: Session, person_id: int) -> Person:
    person = queries.get_person(session, person_id)
    if person is None:
        raise ConsoleError(404, "person_not_found", f"person {person_id} does not exist")
    return person


@router.get("/people/{person_id}")
def person_page(
    *,
    request: Request,
    person_id: int,
    session: SessionDep,
    services: ServicesDep,
    viewer: AdminViewer,
    refused: str | None = None,
    created: str | None = None,
) -> Response:
    person = _person_or_error(session, person_id)
    faces = people.list_faces(person_id=person_id, session=session, services=services, _=viewer.key)
    shown = {
        t.id
        for t in queries.list_templates(session, person_id)
        if t.thumbnail is not None or t.photo_id is not None
    }
    return _render(
        request,
        "person.html",
        viewer,
        person=person,
        faces=[{"face": f, "image": f.id in shown} for f in faces],
        refused=refused[:500] if refused else None,
        created=bool(created),
    )


@router.post("/people/{person_id}/faces")
async def add_face(request: Request, person_id: int, services: ServicesDep, viewer: AdminPost) -> Response:
    form = await request.form()
    photo = _upload(form, "photo")
    if photo is None:
        return _redirect(
            f"/console/people/{person_id}?{urlencode({'refused': 'no_photo: choose a photo first'})}"
        )
    force = _form_str(form, "force") == "true"
    refused = await _enrol(
        request=request, services=services, viewer=viewer, person_id=person_id, photo=photo, force=force
    )
    if refused is not None:
        if refused.startswith("person_not_found"):
            raise ConsoleError(404, "person_not_found", refused)
        return _redirect(f"/console/people/{person_id}?{urlencode({'refused': refused})}")
    return _redirect(f"/console/people/{person_id}")


@router.post("/people/{person_id}/delete")
def delete_person(person_id: int, session: SessionDep, services: ServicesDep, viewer: AdminPost) -> Response:
    try:
        people.delete_person(person_id=person_id, session=session, services=services, me=viewer.key)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    return _redirect("/console/people")


@router.post("/people/{person_id}/faces/{face_id}/delete")
def delete_face(
    person_id: int, face_id: int, session: SessionDep, services: ServicesDep, viewer: AdminPost
) -> Response:
    try:
        people.delete_face(
            person_id=person_id, face_id=face_id, session=session, services=services, me=viewer.key
        )
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    return _redirect(f"/console/people/{person_id}")


@router.get("/people/{person_id}/faces/{face_id}/image")
def face_image(person_id: int, face_id: int, session: SessionDep, viewer: SecurityViewer) -> Response:
    """A small picture of one enrolled face: its thumbnail, else its kept photo scaled down. Security
    staff see it beside an event's snapshot, so only for people the access log names; admins see all."""
    template = queries.get_template(session, face_id)
    if template is None or template.person_id != person_id:
        raise ConsoleError(404, "face_not_found", f"person {person_id} has no face {face_id}")
    if not viewer.may("admin"):
        in_log, _ = queries.list_events(session, person_id=person_id, limit=1)
        if not in_log:
            raise ConsoleError(
                403, "forbidden", "security staff see the photos of people in the access log only"
            )
    if template.thumbnail is not None:
        return Response(template.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    photos = queries.load_photos(session, [template.photo_id]) if template.photo_id is not None else []
    if not photos:
        raise ConsoleError(404, "face_not_found", f"face {face_id} has no kept picture")
    small = images.downscale_jpeg(photos[0].image, images.PREVIEW_PX)
    if small is None:
        raise ConsoleError(404, "face_not_found", f"face {face_id}'s photo cannot be shown")
    return Response(small, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# --- admin: doors ------------------------------------------------------------------------------


def _doors_context(session: Session, viewer: Viewer) -> dict[str, Any]:
    return {
        "doors": admin.list_doors(session=session, _=viewer.key),
        "fields": [f for f in form_fields(DoorIn)],
    }


@router.get("/doors")
def doors_page(request: Request, session: SessionDep, viewer: AdminViewer) -> Response:
    return _render(request, "doors.html", viewer, error=None, **_doors_context(session, viewer))


@router.post("/doors")
async def create_door(request: Request, services: ServicesDep, viewer: AdminPost) -> Response:
    form = await request.form()

    def create() -> int:
        body = parse_form(DoorIn, form)
        with services.sessions() as session:
            return admin.create_door(body=body, session=session, me=viewer.key).id

    try:
        door_id = await run_in_threadpool(create)
    except (FormError, ApiError) as exc:
        message = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else str(exc)
        status = exc.status if isinstance(exc, ApiError) else 422

        def context() -> dict[str, Any]:
            with services.sessions() as session:
                return _doors_context(session, viewer)

        ctx = await run_in_threadpool(context)
        return _render(request, "doors.html", viewer, status_code=status, error=message, **ctx)
    return _redirect(f"/console/doors/{door_id}")


def _door_page(request: Request, session: Session, viewer: Viewer, door_id: int, **extra: Any) -> Response:
    try:
        door = admin.get_door(door_id=door_id, session=session, _=viewer.key)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc
    values = door.model_dump()
    return _render(
        request,
        "door.html",
        viewer,
        door=door,
        values=values,
        fields=form_fields(DoorPatch),
        status_code=extra.pop("status_code", 200),
        **{"error": None, "saved": False, **extra},
    )


@router.get("/doors/{door_id}")
def door_page(
    request: Request, door_id: int, session: SessionDep, viewer: AdminViewer, saved: str = ""
) -> Response:
    return _door_page(request, session, viewer, door_id, saved=bool(saved))


@router.post("/doors/{door_id}")
async def update_door(request: Request, door_id: int, services: ServicesDep, viewer: AdminPost) -> Response:
    form = await request.form()

    def update() -> None:
        with services.sessions() as session:
            try:
                current = admin.get_door(door_id=door_id, session=session, _=viewer.key)
            except ApiError as exc:
                raise ConsoleError(exc.status, exc.code, exc.message) from exc
            body = parse_form(DoorPatch, form, current=current)
            admin.update_door(door_id=door_id, body=body, session=session, me=viewer.key)

    try:
        await run_in_threadpool(update)
    except (FormError, ApiError) as exc:
        message = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else str(exc)
        status = exc.status if isinstance(exc, ApiError) else 422

        def page() -> Response:
            with services.sessions() as session:
                return _door_page(request, session, viewer, door_id, error=message, status_code=status)

        return await run_in_threadpool(page)
    return _redirect(f"/console/doors/{door_id}?saved=1")


# --- admin: API keys ---------------------------------------------------------------------------


def _keys_page(request: Request, session: Session, viewer: Viewer, **extra: Any) -> Response:
    return _render(
        request,
        "keys.html",
        viewer,
        keys=admin.list_keys(session=session, _=viewer.key),
        doors=queries.list_doors(session),
        roles=ROLES,
        me=viewer.key.id,
        status_code=extra.pop("status_code", 200),
        **{"error": None, "created": None, **extra},
    )


@router.get("/keys")
def keys_page(request: Request, session: SessionDep, viewer: AdminViewer) -> Response:
    return _keys_page(request, session, viewer)


@router.post("/keys")
def create_key(
    *,
    request: Request,
    session: SessionDep,
    viewer: AdminPost,
    role: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=300)] = "",
    door_id: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    try:
        body = KeyIn.model_validate(
            {
                "role": role,
                "name": name.strip(),
                "door_id": _int_param(door_id, "door") if role == "door" else None,
            }
        )
        created = admin.create_key(body=body, session=session, me=viewer.key)
    except ValidationError as exc:
        return _keys_page(request, session, viewer, status_code=422, error=_validation_message(exc))
    except ApiError as exc:
        return _keys_page(
            request, session, viewer, status_code=exc.status, error=f"{exc.code}: {exc.message}"
        )
    # The secret is in this one answer only (no redirect, no-store): it is stored as a hash.
    return _keys_page(request, session, viewer, status_code=201, created=created)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: int, session: SessionDep, viewer: AdminPost) -> Response:
    try:
        admin.revoke_key(key_id=key_id, session=session, me=viewer.key)
    except ApiError as exc:
        return _keys_page(
            request, session, viewer, status_code=exc.status, error=f"{exc.code}: {exc.message}"
        )
    return _redirect("/console/keys")


# --- admin: calibration ------------------------------------------------------------------------


def _curve_svg(
    curve: list[gallery.CurvePointOut], tau: float, recommended: float | None, target: float
) -> str:
    """The stranger false-accept rate against τ as a small inline SVG (log scale), no library."""
    points = [(p.tau, p.far_attempt) for p in curve if p.far_attempt > 0]
    if len(points) < 2:
        return ""
    width, height, pad = 560, 240, 36
    taus = [t for t, _ in points] + [tau]
    lo_t, hi_t = min(taus), max(taus)
    lo_f = math.log10(min(*(f for _, f in points), target) / 2)
    hi_f = 0.0

    def x(t: float) -> float:
        return pad + (t - lo_t) / max(hi_t - lo_t, 1e-9) * (width - 2 * pad)

    def y(f: float) -> float:
        return (
            height - pad - (math.log10(max(f, 10**lo_f)) - lo_f) / max(hi_f - lo_f, 1e-9) * (height - 2 * pad)
        )

    path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(f):.1f}" for i, (t, f) in enumerate(points))
    parts = [
        f'<svg viewBox="0 0 {width} {height}" class="chart" role="img" '
        'aria-label="stranger false-accept rate against tau">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" class="axis"/>',
        f'<path d="{path}" class="curve"/>',
        f'<line x1="{pad}" y1="{y(target):.1f}" x2="{width - pad}" y2="{y(target):.1f}" class="target"/>',
        f'<text x="{width - pad}" y="{y(target) - 4:.1f}" text-anchor="end">target {target:g}</text>',
        f'<line x1="{x(tau):.1f}" y1="{pad}" x2="{x(tau):.1f}" y2="{height - pad}" class="tau"/>',
        f'<text x="{x(tau) + 4:.1f}" y="{pad + 12}">τ {tau:.3f}</text>',
    ]
    if recommended is not None and lo_t <= recommended <= hi_t:
        at = x(recommended)
        parts.append(f'<line x1="{at:.1f}" y1="{pad}" x2="{at:.1f}" y2="{height - pad}" class="rec"/>')
    for exp in range(math.ceil(lo_f), 1):
        parts.append(f'<text x="{pad - 4}" y="{y(10**exp) + 4:.1f}" text-anchor="end">1e{exp}</text>')
    parts.append(f'<text x="{pad}" y="{height - 8}">{lo_t:.2f}</text>')
    parts.append(f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{hi_t:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


@router.get("/calibration")
async def calibration_page(request: Request, services: ServicesDep, viewer: AdminViewer) -> Response:
    try:
        report = await gallery.calibration(services, viewer.key, None)
    except ApiError as exc:
        raise ConsoleError(exc.status, exc.code, exc.message) from exc

    def faces() -> dict[int, int | None]:
        ids = {p.person_a.id for p in report.look_alikes} | {p.person_b.id for p in report.look_alikes}
        with services.sessions() as session:
            return {i: _first_face(session, i) for i in ids}

    face_of = await run_in_threadpool(faces)
    chart = Markup(
        _curve_svg(report.curve, report.tau, report.recommended_tau, report.target_far)
    )  # built from numbers only
    return _render(
        request,
        "calibration.html",
        viewer,
        report=report,
        tau_in_force=services.calibration.tau,
        face_of=face_of,
        chart=chart,
    )
