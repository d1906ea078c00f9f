"""Reviewer labels on access events (auditor or admin): what really happened at the door."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError

from app.api.deps import SessionDep, require_role
from app.api.errors import ApiError
from app.api.schemas import LABEL_DOC, EventLabelOut, Strict
from app.audit.log import record_admin_action
from app.store import labels, queries
from app.store.models import ApiKey

router = APIRouter(prefix="/v1/events", tags=["events"])

# Security staff review the log: auditors, and admins who hold every right.
ReviewerKey = Annotated[ApiKey, Depends(require_role("auditor", "admin"))]


class EventLabelIn(Strict):
    # The wrong_person rule below, in the schema too, so that clients and generated tests know it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {"label": {"const": "wrong_person"}, "true_person_id": {"type": "integer"}},
                    "required": ["true_person_id"],
                },
                {
                    "properties": {
                        "label": {"enum": ["correct", "stranger", "spoof"]},
                        "true_person_id": {"type": "null"},
                    }
                },
            ]
        }
    )

    label: Literal["correct", "wrong_person", "stranger", "spoof"] = Field(description=LABEL_DOC)
    true_person_id: int | None = Field(
        default=None, ge=1, description="wrong_person only: the enrolled person who really stood there."
    )

    @field_validator("true_person_id", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        # JSON Schema's integer includes 7.0; strict mode alone would refuse it.
        return int(value) if isinstance(value, float) and value.is_integer() else value

    @model_validator(mode="after")
    def _person_rule(self) -> EventLabelIn:
        labels.check_label(self.label, self.true_person_id)
        return self


@router.put("/{event_id}/label", response_model=EventLabelOut)
def put_label(event_id: int, body: EventLabelIn, session: SessionDep, me: ReviewerKey) -> EventLabelOut:
    """Label the event (replacing an earlier label); recorded in the audit chain as `event.label`."""
    if queries.get_event(session, event_id) is None:
        raise ApiError(404, "event_not_found", f"access event {event_id} does not exist")
    if body.true_person_id is not None and queries.get_person(session, body.true_person_id) is None:
        raise ApiError(
            422, "person_not_found", f"person {body.true_person_id} does not exist", field="true_person_id"
        )
    try:
        row, created = labels.set_label(session, event_id, body.label, body.true_person_id, me.id)
        target = {
            "event_id": event_id,
            "label": body.label,
            "true_person_id": body.true_person_id,
            "replaced": not created,
        }
        record_admin_action(session, me.id, "event.label", target)
        session.commit()
    except IntegrityError as exc:  # the event was deleted (retention) between the check and the write
        session.rollback()
        raise ApiError(404, "event_not_found", f"access event {event_id} does not exist") from exc
    return EventLabelOut.model_validate(row, from_attributes=True)


@router.get("/{event_id}/label", response_model=EventLabelOut)
def get_label(event_id: int, session: SessionDep, _: ReviewerKey) -> EventLabelOut:
    """The event's label; 404 `label_not_found` when nobody has reviewed it yet."""
    if queries.get_event(session, event_id) is None:
        raise ApiError(404, "event_not_found", f"access event {event_id} does not exist")
    row = labels.get_label(session, event_id)
    if row is None:
        raise ApiError(404, "label_not_found", f"access event {event_id} has no label")
    return EventLabelOut.model_validate(row, from_attributes=True)
