"""Request dependencies: the SQL session, the caller's API key, role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.api.errors import ApiError
from app.api.ratelimit import check_rate
from app.services.container import Services
from app.store import queries
from app.store.models import ApiKey, utcnow


def get_services(request: Request) -> Services:
    services: Services | None = request.app.state.services
    if services is None:
        raise ApiError(503, "starting", "the service is still starting; retry in a few seconds")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_key(request: Request, session: SessionDep) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
    key = queries.authenticate(session, secret.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise ApiError(401, "key_expired", f"API key {key.id} expired at {key.expires_at.isoformat()}")
    session.commit()  # keeps last_used_at
    request.state.key_id = key.id
    check_rate(request, key.id, key.role)  # 429 rate_limited past the key's rate (app/api/ratelimit.py)
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require_role(*roles: str) -> Callable[[ApiKey], ApiKey]:
    def check(key: CurrentKey) -> ApiKey:
        if key.role not in roles:
            raise ApiError(
                403, "forbidden", f"this needs a key with role {' or '.join(roles)}; this key is {key.role}"
            )
        return key

    return check


AdminKey = Annotated[ApiKey, Depends(require_role("admin"))]
AuditorKey = Annotated[ApiKey, Depends(require_role("auditor"))]
DoorKey = Annotated[ApiKey, Depends(require_role("door"))]
VerifyKey = Annotated[ApiKey, Depends(require_role("admin", "verifier"))]
