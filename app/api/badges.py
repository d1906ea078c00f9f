"""Revoked badges (admin): badge numbers that claim doors refuse with reason ``revoked_claim``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import AdminKey, SessionDep
from app.api.errors import ApiError
from app.api.schemas import RevokeBadgeIn, RevokedBadgeOut
from app.audit.log import record_admin_action
from app.store import badge_queries

router = APIRouter(prefix="/v1/badges", tags=["admin"])

BadgePath = Annotated[str, Path(min_length=1, max_length=200, description="The badge number.")]


@router.get("/revoked", response_model=list[RevokedBadgeOut])
def list_revoked(session: SessionDep, _: AdminKey) -> list[RevokedBadgeOut]:
    return [
        RevokedBadgeOut.model_validate(r, from_attributes=True)
        for r in badge_queries.list_revoked_badges(session)
    ]


@router.post("/revoked", status_code=201, response_model=RevokedBadgeOut)
def revoke(body: RevokeBadgeIn, session: SessionDep, me: AdminKey) -> RevokedBadgeOut:
    """Refuse a badge number at claim doors from now on, whoever holds it; its holder is still
    recognised at identify doors. Revoking a revoked badge returns the existing revocation."""
    row, new = badge_queries.revoke_badge(session, body.badge, me.id, body.note)
    if new:
        record_admin_action(session, me.id, "badge.revoke", {"badge": row.badge, "person_id": row.person_id})
        session.commit()
    return RevokedBadgeOut.model_validate(row, from_attributes=True)


@router.delete("/revoked/{badge}", status_code=204)
def restore(badge: BadgePath, session: SessionDep, me: AdminKey) -> None:
    """Lift a badge's revocation."""
    if not badge_queries.restore_badge(session, badge):
        raise ApiError(404, "badge_not_revoked", f"badge {badge!r} is not revoked")
    record_admin_action(session, me.id, "badge.restore", {"badge": badge})
    session.commit()
