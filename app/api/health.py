"""Process liveness, readiness (models, database, index) and Prometheus metrics.

/healthz answers 200 while the process runs, database or not: an orchestrator must not restart a
service whose database is away (it recovers by itself when the database returns). /readyz answers
503 while the database cannot be reached, with `checks.database.error` = `database_unavailable`,
and while the liveness stage has no fusion fitted for the built artifacts (`checks.liveness.error`
= `liveness_uncalibrated`): every burst would then be "undetermined", and doors that require
liveness would refuse every live person.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from app.services.container import Services

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str = Field(description="`ready`, `not_ready` or `starting`.")
    checks: dict[str, dict[str, Any]]


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _calibration_check(services: Services) -> dict[str, Any]:
    """Advice, never unreadiness: ``ok`` is always true. Reports the latest result and starts a
    recomputation in the background when the gallery has changed since."""
    calibration = services.calibration
    latest = calibration.latest()
    refreshing = calibration.refresh_in_background(services.gallery.version)
    applied = calibration.applied
    check: dict[str, Any] = {
        "ok": True,
        "tau": calibration.tau,
        "tau_source": applied.source if applied is not None else "pinned",
    }
    check["target_far"] = services.settings.target_stranger_far
    applied_1to1 = calibration.applied_1to1
    if applied_1to1 is not None:  # the 1:1 (claim) threshold, independent of K
        check["tau_1to1"] = applied_1to1.tau
        check["target_fmr_1to1"] = applied_1to1.target_far
    if latest is None:
        check["status"] = "computing" if refreshing else "unavailable"
        return check
    report = latest.report
    check.update(
        status="warning" if report.warning else "ok",
        people=report.people,
        max_people_at_tau=report.max_people_at_tau,
        far_at_tau=report.far_at_tau,
        warning=report.warning,
        gallery_version=latest.gallery_version,
        current=latest.gallery_version == services.gallery.version,
    )
    return check


def _checks(services: Services) -> dict[str, Any]:
    checks: dict[str, Any] = {
        "models": {"ok": True, "version": services.pipeline.model_version},
        "index": {
            "ok": services.gallery.version >= 0,
            "templates": len(services.index),
            "people": services.index.people_count,
            "gallery_version": services.gallery.version,
        },
    }
    feed = services.gallery
    now = time.monotonic()
    checks["index"]["feed"] = "failing" if feed.failing_since is not None else "ok"
    if feed.failing_since is not None:
        checks["index"]["feed_failing_s"] = round(now - feed.failing_since, 1)
    if feed.last_synced is not None:
        checks["index"]["last_synced_s_ago"] = round(now - feed.last_synced, 1)
    started = time.perf_counter()
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    except SQLAlchemyError as exc:  # unreachable, refusing, starting up: not ready, say why
        checks["database"] = {
            "ok": False,
            "error": "database_unavailable",
            "exception": exc.__class__.__name__,
            "after_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    checks["calibration"] = _calibration_check(services)
    checks["liveness"] = _liveness_check(services)
    return checks


def _liveness_check(services: Services) -> dict[str, Any]:
    liveness = services.serving().pipeline.liveness
    check: dict[str, Any] = {"ok": liveness.fusion is not None, "pad": liveness.pad is not None}
    if liveness.fusion is None:
        check["error"] = "liveness_uncalibrated"
    else:
        check["threshold"] = liveness.fusion.threshold
    return check


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready (or still starting): `checks` says why."}},
)
async def readyz(request: Request) -> JSONResponse:
    services: Services | None = request.app.state.services
    if services is None:
        return JSONResponse({"status": "starting", "checks": {}}, status_code=503)
    checks = await run_in_threadpool(_checks, services)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        },
        503: {"description": "The service is still starting (empty body)."},
    },
)
async def metrics(request: Request) -> Response:
    services: Services | None = request.app.state.services
    if services is None:
        return Response(status_code=503)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
