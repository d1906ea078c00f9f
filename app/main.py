"""App factory and lifespan: schema checked, models verified and warmed up, index built from SQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from app import __version__
from app.api import access as access_api
from app.api import admin, badges, events, frames, gallery, health, labels, people, second_factor, verify
from app.api import alerts as alerts_api
from app.api import explain as explain_api
from app.api import signing as signing_api
from app.api.body_limit import BodyLimitMiddleware
from app.api.errors import error_body, install_error_handlers
from app.api.openapi import install_openapi
from app.api.ratelimit import install_rate_limits
from app.console import install_console
from app.services.alerts import AlertService
from app.services.container import Services
from app.services.second_factor import follow_lookalikes
from app.services.signing import RequestSigning
from app.services.snapshots import purge_forever
from app.settings import Settings, get_settings
from app.store import queries

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Multipart overhead allowed on top of the image bytes themselves.
_MULTIPART_SLACK = 64 * 1024


def _warn_without_admin(services: Services) -> None:
    with services.sessions() as session:
        if not any(k.role == "admin" and k.revoked_at is None for k in queries.list_api_keys(session)):
            log.warning(
                "no admin API key exists yet: create one with `facegate keys create --role admin --name NAME`"
            )


async def _follow_gallery(services: Services, interval_s: float) -> None:
    """Recalibrate the τ in force after every gallery change (any replica's): the calibration
    runs on its own thread and the previous τ stays in force until it finishes."""
    while True:
        await asyncio.sleep(interval_s)
        services.calibration.refresh_in_background(services.gallery.version)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Start-up is blocking work (SQL, model loading, warm-up): keep it off the event loop.
        services = await asyncio.to_thread(Services.start, settings)
        app.state.services = services
        app.state.signing = RequestSigning(services.sessions, settings)  # signed door requests
        app.state.alerts = alerts = AlertService(services.sessions, settings)  # streaks, MQTT, webhook
        await asyncio.to_thread(_warn_without_admin, services)
        sync = asyncio.create_task(services.gallery.run_forever(settings.gallery_sync_interval_s))
        recalibrate = asyncio.create_task(_follow_gallery(services, settings.gallery_sync_interval_s))
        purge = asyncio.create_task(  # expired event snapshots (FACEGATE_SNAPSHOT_RETENTION_DAYS)
            purge_forever(
                services.sessions, settings.snapshot_retention_days, settings.snapshot_purge_interval_s
            )
        )
        lookalikes = None  # FACEGATE_PIN_FOR_LOOKALIKES: a PIN for look-alike pairs after calibration
        if settings.pin_for_lookalikes:
            latest, every = services.calibration.latest, settings.gallery_sync_interval_s
            lookalikes = asyncio.create_task(follow_lookalikes(services.sessions, latest, every))
        log.info(
            "facegate ready",
            extra={"model_version": services.pipeline.model_version, "templates": len(services.index)},
        )
        try:
            yield
        finally:
            for task in (sync, recalibrate, purge, *([lookalikes] if lookalikes else [])):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.services = None
            app.state.signing = app.state.alerts = None
            await asyncio.to_thread(alerts.close)
            await asyncio.to_thread(services.close)

    app = FastAPI(title="FaceGate", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.services = None
    max_body = settings.max_frames * settings.max_image_bytes + _MULTIPART_SLACK
    app.state.signing = app.state.alerts = None
    # Inside request_context (added after it): counts every body, chunked ones too, against
    # max_body, and hashes the bodies of signed requests as they stream in.
    app.add_middleware(BodyLimitMiddleware, max_body=max_body)
    install_rate_limits(app, settings)

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return JSONResponse(
                error_body("payload_too_large", f"the request body is over {max_body} bytes", request),
                status_code=413,
                headers={"X-Request-ID": request.state.request_id},
            )
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(people.router)
    app.include_router(frames.router)
    app.include_router(events.router)
    app.include_router(explain_api.router)
    app.include_router(labels.router)
    app.include_router(gallery.router)
    app.include_router(verify.router)
    app.include_router(access_api.router)
    app.include_router(signing_api.router)
    app.include_router(alerts_api.router)
    app.include_router(badges.router)
    app.include_router(second_factor.router)
    install_console(app)  # /console: HTML pages, kept out of the OpenAPI schema
    install_openapi(app)
    return app
