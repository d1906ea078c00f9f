"""Request and response bodies. Requests reject unknown fields so typos fail loudly."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


class Strict(BaseModel):
    # strict: a JSON 0 is not false and "1" is not 1, as the schema says.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _max_length_as_sent(cls, data: Any) -> Any:
        """The schema's maxLength is on the string as sent; pydantic checks it after stripping
        whitespace, so a string one space too long would pass. Check it before."""
        if not isinstance(data, dict):
            return data
        for name, info in cls.model_fields.items():
            value = data.get(info.alias or name)
            if not isinstance(value, str):
                continue
            limits = [m.max_length for m in info.metadata if getattr(m, "max_length", None) is not None]
            if limits and len(value) > min(limits):
                raise ValueError(f"{name}: at most {min(limits)} characters")
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """A string of minLength 1 with nothing but whitespace is stripped to "" and refused: say
        so with a pattern (what pydantic strips: Unicode White_Space), unless the field has one."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        for prop in schema.get("properties", {}).values():
            for option in [prop, *prop.get("anyOf", ())]:
                if (
                    option.get("type") == "string"
                    and option.get("minLength") == 1
                    and "pattern" not in option
                ):
                    option["pattern"] = _NOT_ONLY_WHITESPACE
        return schema


# One character pydantic's whitespace stripping keeps (Rust's str::trim: Unicode White_Space).
_NOT_ONLY_WHITESPACE = (
    "[^\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
)


DOOR_MODE_DOC = (
    "'identify' (1:K: whoever comes is searched among everyone enrolled), 'claim' (badge + face: the "
    "door sends the claimed person with the burst, form field `claim`, and the face is compared with "
    "that person only, at the 1:1 tau; a burst without a claim is denied, reason 'claim_required') or "
    "'both' (1:1 when a claim comes with the burst, else 1:K)."
)


SNAPSHOT_FULL_FRAME_DOC = (
    "Keep the whole frame of each event's best view beside the face crop (GET "
    "/v1/events/{id}/snapshot?kind=frame). Off by default: the crop shows who stood at the door, the frame "
    "also shows everyone and everything behind them."
)


PIN_REQUIRED_DOC = (
    "Everyone recognised at this door must also send their PIN with the burst (form field `pin`); "
    "denial reasons `pin_required` (none sent), `wrong_pin`, `pin_locked_out`, `pin_not_set`."
)


LOCKDOWN_ID_DOC = (
    "The site lockdown in force when the burst was decided (GET /v1/lockdown); null: none. A burst "
    "the lockdown denied has reason 'lockdown'."
)
PIN_CHECK_DOC = (
    "The PIN second factor, when the door or the person requires it and the burst got that far: "
    "'correct', 'wrong', 'missing' (none sent), 'locked_out' (too many wrong PINs at this door), "
    "'not_set' (the person has no PIN yet); null: no PIN was needed. Never the PIN itself."
)


RULE_DOC = (
    "The access rule that decided a recognised, live person's entry (null: the decision never reached "
    "the access rules): 'open_door' (the door has no grant: open to everyone enrolled), 'grant:<id>', "
    "'no_grant' (reason not_authorized), 'schedule:<grant ids>' or 'holiday:<YYYY-MM-DD>' (reason "
    "outside_schedule), 'valid_until' (reason expired), 'valid_from' (reason not_yet_valid); then the "
    "checks after the rules: 'lockdown:<id>' (reason lockdown) or 'pin' (the PIN reasons)."
)


SIGNING_REQUIRED_DOC = (
    "Refuse bursts that are not signed with the door's signing secret (401 signature_required); see "
    "POST /v1/doors/{id}/signing-secret and the README's 'Signed door requests'."
)


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
    mode: Literal["identify", "claim", "both"] = Field(default="identify", description=DOOR_MODE_DOC)
    snapshot_full_frame: bool = Field(default=False, description=SNAPSHOT_FULL_FRAME_DOC)
    pin_required: bool = Field(default=False, description=PIN_REQUIRED_DOC)
    signing_required: bool = Field(default=False, description=SIGNING_REQUIRED_DOC)


class DoorPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    liveness_required: bool | None = None
    liveness_undetermined: Literal["deny", "grant"] | None = None
    mode: Literal["identify", "claim", "both"] | None = Field(default=None, description=DOOR_MODE_DOC)
    snapshot_full_frame: bool | None = Field(default=None, description=SNAPSHOT_FULL_FRAME_DOC)
    pin_required: bool | None = Field(default=None, description=PIN_REQUIRED_DOC)
    signing_required: bool | None = Field(default=None, description=SIGNING_REQUIRED_DOC)


class DoorOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    liveness_required: bool
    liveness_undetermined: str
    mode: str = Field(description=DOOR_MODE_DOC)
    snapshot_full_frame: bool = Field(default=False, description=SNAPSHOT_FULL_FRAME_DOC)
    pin_required: bool = Field(default=False, description=PIN_REQUIRED_DOC)
    signing_required: bool = Field(default=False, description=SIGNING_REQUIRED_DOC)
    signing_generation: int = Field(
        default=0,
        description="Which signing secret is current (0: none issued; POST /v1/doors/{id}/signing-secret).",
    )


class KeyIn(Strict):
    # The door rule below, in the schema too, so that clients and generated tests know it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {"role": {"const": "door"}, "door_id": {"type": "integer"}},
                    "required": ["door_id"],
                },
                {
                    "properties": {
                        "role": {"enum": ["admin", "auditor", "verifier"]},
                        "door_id": {"type": "null"},
                    }
                },
            ]
        }
    )

    role: Literal["admin", "door", "auditor", "verifier"] = Field(
        description="admin: everything; door: post frames for its door; auditor: read the access log; "
        "verifier: 1:1 verification only (POST /v1/verify, POST /v1/people/{id}/verify), for kiosks "
        "and helpdesks."
    )
    name: str = Field(min_length=1, max_length=200)
    door_id: int | None = None
    expires_in_s: int | None = Field(
        default=None,
        ge=60,
        le=10 * 366 * 86400,
        description="The key stops working this many seconds after its creation (401 key_expired); "
        "left out: it never expires.",
    )

    @field_validator("door_id", "expires_in_s", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        # JSON Schema's integer includes 7.0; strict mode alone would refuse it.
        return int(value) if isinstance(value, float) and value.is_integer() else value

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
    expires_at: datetime | None = Field(default=None, description="When the key stops working; null: never.")


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
    valid_from: datetime | None = Field(
        default=None, description="Refused everywhere before this (PUT /v1/access/people/{id}/validity)."
    )
    valid_until: datetime | None = Field(
        default=None, description="Refused everywhere from this on ('expired')."
    )


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
    tau: float = Field(
        description="The threshold this decision used, in the profile's metric: the 1:K one, or the 1:1 "
        "one in claim mode."
    )
    mode: Literal["identify", "claim"] = Field(
        default="identify", description="The question answered: 1:K ('identify') or 1:1 ('claim')."
    )
    claim: str | None = Field(default=None, description="The claim the door sent, as sent.")
    rule: str | None = Field(default=None, description=RULE_DOC)
    lockdown_id: int | None = Field(default=None, description=LOCKDOWN_ID_DOC)
    pin_check: Literal["correct", "wrong", "missing", "locked_out", "not_set"] | None = Field(
        default=None, description=PIN_CHECK_DOC
    )
    frames: int
    frames_with_face: int
    liveness: LivenessOut | None
    # For the door client: "turn_head" asks the person for a clear head turn and a new burst.
    hint: str | None
    latency_ms: float
    model_version: str
    request_id: str


LABEL_DOC = (
    "'correct': the decision was right (the granted or denied person really was them, or a rightly "
    "denied stranger); 'wrong_person': the face was another enrolled person, named by true_person_id; "
    "'stranger': nobody enrolled; 'spoof': a presentation attack (a photo, a screen, a mask)."
)


class EventLabelOut(BaseModel):
    label: Literal["correct", "wrong_person", "stranger", "spoof"] = Field(description=LABEL_DOC)
    true_person_id: int | None = Field(description="The person who really stood there (wrong_person only).")
    reviewer_key_id: int | None = Field(description="The API key that set the label.")
    created_at: datetime
    updated_at: datetime


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
        description="The threshold the decision used, 1:K or 1:1 (see mode; null: before it was recorded)."
    )
    mode: str | None = Field(
        default=None, description="'identify' (1:K) or 'claim' (1:1); null for events before 0004."
    )
    claim: str | None = Field(default=None, description="The claim (badge or id:<n>) the door sent.")
    rule: str | None = Field(default=None, description=RULE_DOC)
    lockdown_id: int | None = Field(default=None, description=LOCKDOWN_ID_DOC)
    pin_check: str | None = Field(default=None, description=PIN_CHECK_DOC)
    frames: int
    frames_with_face: int
    liveness: dict[str, Any] | None
    latency_ms: float
    model_version: str
    request_id: str
    has_snapshot: bool = Field(
        default=False,
        description="The event keeps a face crop (GET /v1/events/{id}/snapshot); false once purged.",
    )
    has_frame: bool = Field(
        default=False,
        description="The event keeps the whole frame too (kind=frame; doors with snapshot_full_frame).",
    )
    label: EventLabelOut | None = Field(
        default=None, description="The reviewer's verdict (PUT /v1/events/{id}/label); null: not reviewed."
    )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class RevokeBadgeIn(Strict):
    badge: str = Field(
        min_length=1,
        max_length=200,
        # Anything but "id:<n>", which a claim reads as a person id, not a badge.
        pattern=r"^([^i]|i$|i[^d]|id$|id[^:])",
        description="The badge number (a person's external_id as a badge reader sends it; not 'id:...').",
    )
    note: str | None = Field(default=None, max_length=200, description="Why (lost, stolen, left).")


class RevokedBadgeOut(BaseModel):
    badge: str
    person_id: int | None = Field(description="Who held the badge when it was revoked (None: nobody).")
    revoked_at: datetime
    revoked_by_key_id: int | None
    note: str | None
