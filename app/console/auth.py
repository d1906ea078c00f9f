"""Console sign-in: an API key traded for a server-side session in an HTTP-only cookie.

- The cookie (``fg_console``) holds a random token; SQL keeps its SHA-256 (app/store/console_sessions).
  HttpOnly, SameSite=Strict, Path=/console, Secure over https (FACEGATE_CONSOLE_COOKIE_SECURE).
- Every state-changing request carries the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``), compared in constant time, and a cross-site ``Origin`` is refused outright.
- Admin and auditor keys may sign in; door and verifier keys are refused (they have no pages).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.settings import Settings
from app.store import console_sessions
from app.store.models import ApiKey, ConsoleSession

COOKIE = "fg_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
CONSOLE_ROLES = ("admin", "auditor")

Area = Literal["admin", "security"]
# Who reaches which pages: admin pages need an admin key; security pages an auditor or admin key.
AREA_ROLES: dict[Area, tuple[str, ...]] = {"admin": ("admin",), "security": ("auditor", "admin")}


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller of one console request."""

    session_id: int
    key: ApiKey
    csrf: str

    @property
    def role(self) -> str:
        return self.key.role

    def may(self, area: Area) -> bool:
        return self.key.role in AREA_ROLES[area]


class SignInRefusedError(Exception):
    pass


def sign_in(session: Session, secret: str, settings: Settings) -> tuple[ConsoleSession, str, ApiKey]:
    """Checks the key as the API does (queries.authenticate) and opens a session; the caller commits."""
    from app.store import queries

    key = queries.authenticate(session, secret.strip())
    if key is None:
        raise SignInRefusedError("this API key is unknown, revoked or expired")
    if key.role not in CONSOLE_ROLES:
        raise SignInRefusedError(
            f"a {key.role} key cannot sign in to the console; use an admin or auditor key"
        )
    created = console_sessions.create_session(
        session, key, ttl=timedelta(seconds=settings.console_session_ttl_s)
    )
    return created.session, created.token, key


def viewer_for(request: Request, session: Session, settings: Settings) -> Viewer | None:
    token = request.cookies.get(COOKIE, "")
    found = console_sessions.find_session(
        session, token, idle_timeout=timedelta(seconds=settings.console_idle_timeout_s)
    )
    if found is None:
        return None
    console_session, key = found
    if key.role not in CONSOLE_ROLES:
        return None
    return Viewer(console_session.id, key, console_session.csrf_token)


def _secure(request: Request, settings: Settings) -> bool:
    if settings.console_cookie_secure == "always":
        return True
    if settings.console_cookie_secure == "never":
        return False
    return request.url.scheme == "https"


def set_cookie(response: Response, token: str, request: Request, settings: Settings) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.console_session_ttl_s,
        path=COOKIE_PATH,
        secure=_secure(request, settings),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=_secure(request, settings), httponly=True, samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, else Referer).
    Browsers send Origin with every cross-site POST; a request without either (a script) passes
    this check and still needs the CSRF token."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    if source == "null":
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc.lower() == host.lower()


def csrf_ok(viewer: Viewer, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(viewer.csrf.encode(), (submitted or "").encode())
