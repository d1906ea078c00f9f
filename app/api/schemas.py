"""Request and response bodies. Requests reject unknown fields so typos fail loudly."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DoorIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    liveness_required: bool = Field(
        default=True,
        description="Deny spoofs (reason 'spoof'); a still photo or a single frame can then never open it.",
    )
    liveness_undetermined: Literal["deny", "grant"] = Field(
        default="deny",
        description=(
            "What a burst whose liveness could not be judged does when liveness is required (the head "
            "turned too little, or its turn fits a tilted picture as well as a head): 'grant' lets in "
            "every such burst that no image cue rejected, moving prints included."
        ),
    )


class DoorPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    liveness_required: bool | None = None
    liveness_undetermined: Literal["deny", "grant"] | None = None


class DoorOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    liveness_required: bool
    liveness_undetermined: str


class KeyIn(Strict):
    role: Literal["admin", "door", "auditor"]
    name: str = Field(min_length=1, max_length=200)
    door_id: int | None = None

    @model_validator(mode="after")
    def _door_rule(self) -> KeyIn:
        if self.role == "door" and self.door_id is None:
            raise ValueError("a door key needs door_id: it may post frames for that door only")
        if self.role != "door" and self.door_id is not None:
            raise ValueError("only door keys are bound to a door")
        return self


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    door_id: int | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown once, stored only as a hash.")


class PersonIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)


class PersonOut(BaseModel):
    id: int
    name: str
    external_id: str | None
    created_at: datetime
    faces: int


class FaceOut(BaseModel):
    id: int
    person_id: int
    model_version: str
    quality: dict[str, Any]
    image_sha256: str
    created_at: datetime


class PersonRef(BaseModel):
    id: int
    name: str


class LivenessOut(BaseModel):
    outcome: Literal["live", "spoof", "undetermined"]
    required: bool  # whether this door enforced it
    score: float | None  # the classifier's P(live)
    drivers: list[str]  # the cues that decided the outcome
    cues: dict[str, float]
    track_frames: int  # frames in which the judged face was found


class DecisionOut(BaseModel):
    event_id: int
    decision: Literal["granted", "denied"]
    reason: str
    person: PersonRef | None
    distance: float | None
    second_distance: float | None
    tau: float = Field(description="The 1:K threshold this decision used, in the profile's metric.")
    frames: int
    frames_with_face: int
    liveness: LivenessOut | None
    # For the door client: "turn_head" asks the person for a clear head turn and a new burst.
    hint: str | None
    latency_ms: float
    model_version: str
    request_id: str


class EventOut(BaseModel):
    id: int
    created_at: datetime
    door_id: int
    decision: str
    reason: str
    person_id: int | None
    best_distance: float | None
    second_distance: float | None
    tau: float | None = Field(
        description="The 1:K threshold the decision used (null: before it was recorded)."
    )
    frames: int
    frames_with_face: int
    liveness: dict[str, Any] | None
    latency_ms: float
    model_version: str
    request_id: str


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
