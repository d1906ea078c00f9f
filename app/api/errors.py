"""One error shape for every failure: {"error": {"code", "message"}} with the right status.

Handlers turn validation errors, unknown routes and unexpected exceptions into that shape; an
unexpected exception is logged with its traceback and the request id, and the client gets a
generic message with the id, never the exception text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, compile_path

log = logging.getLogger(__name__)

# Seconds a client is told to wait (Retry-After) when the database cannot be reached.
DATABASE_RETRY_AFTER_S = 2

# While the database is away every request fails: one warning per this many seconds, with a count.
DATABASE_LOG_EVERY_S = 10.0


class _EveryFewSeconds:
    """Counts events and lets one through per period: ``refused()`` returns how many happened
    since the last one let through (this one included), or 0 to stay quiet."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._count = 0
        self._last = -period_s
        self._lock = threading.Lock()

    def refused(self) -> int:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self.period_s:
                return 0
            count, self._count, self._last = self._count, 0, now
            return count


_DATABASE_LOG = _EveryFewSeconds(DATABASE_LOG_EVERY_S)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_body(code: str, message: str, request: Request | None = None, **details: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    if request is not None and getattr(request.state, "request_id", None):
        err["request_id"] = request.state.request_id
    return {"error": err}


def iter_routes(app: FastAPI) -> Iterator[tuple[BaseRoute, str, set[str]]]:
    """(route as declared, full path template, methods) for every route, through included routers:
    FastAPI >= 0.165 keeps included routers as one route each in ``app.routes``."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:
        for route in app.routes:
            yield route, getattr(route, "path_format", ""), set(getattr(route, "methods", None) or ())
        return
    for ctx in iter_contexts(app.routes):
        yield ctx.original_route, ctx.path_format or "", set(ctx.methods or ())


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path. Starlette's own 405 names only the first
    route whose path matches, and GET /x and POST /x are separate routes."""
    path = request.scope.get("path", request.url.path)
    methods: set[str] = set()
    for _, path_format, route_methods in iter_routes(request.app):
        if path_format and compile_path(path_format)[0].match(path):
            methods |= route_methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.message, request, **exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems[:5])
        return JSONResponse(
            error_body("invalid_request", f"the request is not valid: {summary}", request, problems=problems),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, message, request), status_code=exc.status_code, headers=headers)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # An id past 64 bits reaches the database driver, which cannot bind it.
        return JSONResponse(
            error_body(
                "invalid_request", "a number in the request is out of range (64-bit integers)", request
            ),
            status_code=422,
        )

    def _database_unavailable(request: Request, exc: Exception, code: str, message: str) -> JSONResponse:
        refused = _DATABASE_LOG.refused()
        if refused:
            # The class names only: a DBAPI error's text can carry the statement's parameters.
            orig = getattr(exc, "orig", None)
            log.warning(
                "database unavailable on %s %s: %s%s; %d requests answered %s in the last %.0f s",
                request.method,
                request.url.path,
                exc.__class__.__name__,
                f" ({orig.__class__.__name__})" if orig is not None else "",
                refused,
                code,
                DATABASE_LOG_EVERY_S,
            )
        return JSONResponse(
            error_body(code, message, request),
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_down(request: Request, exc: DBAPIError) -> JSONResponse:
        # Connection refused or lost, the server shutting down or starting up, SQLite locked too
        # long: nothing was committed by this request; the client may retry.
        return _database_unavailable(
            request, exc, "database_unavailable", "the database cannot be reached; retry shortly"
        )

    @app.exception_handler(PoolTimeoutError)
    async def _database_busy(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return _database_unavailable(
            request, exc, "database_busy", "no database connection became free in time; retry shortly"
        )

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        # A value the database column cannot hold, e.g. an id past PostgreSQL's 32-bit integer.
        return JSONResponse(
            error_body("invalid_request", "a value in the request is out of range for the database", request),
            status_code=422,
        )

    @app.exception_handler(DBAPIError)
    async def _dbapi_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:  # a disconnect the driver reported as another error class
            return await _database_down(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "internal error; the server log has the details", request),
            status_code=500,
        )
