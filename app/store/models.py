"""SQLAlchemy models: the source of truth. Tables are created only by migrations (see migrations/)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# verifier: 1:1 verification only (kiosks, helpdesks): no enrolment, no log, no doors.
Role = Literal["admin", "door", "auditor", "verifier"]
ROLES: tuple[Role, ...] = ("admin", "door", "auditor", "verifier")
Decision = Literal["granted", "denied"]
DECISIONS: tuple[Decision, ...] = ("granted", "denied")
GalleryOp = Literal["add", "delete"]
UndeterminedPolicy = Literal["deny", "grant"]
UNDETERMINED_POLICIES: tuple[UndeterminedPolicy, ...] = ("deny", "grant")
# identify: 1:K, whoever comes; claim: 1:1 against the claimed person (badge + face), a claim is
# required; both: 1:1 when a claim comes with the burst, else 1:K.
DoorMode = Literal["identify", "claim", "both"]
DOOR_MODES: tuple[DoorMode, ...] = ("identify", "claim", "both")

# Explicit names so that migrations are stable and identical on SQLite and PostgreSQL.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids where rows accumulate without bound; SQLite needs plain INTEGER for a rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends.

    PostgreSQL stores timestamptz. SQLite has no time zones: values are stored as naive UTC text
    (fixed-width, so text order is time order) and come back with tzinfo=UTC. Naive input is
    refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: FaceGate stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        bytes: LargeBinary(),
        float: Double(),
    }


class Door(Base):
    __tablename__ = "doors"
    # AUTOINCREMENT: SQLite must never reuse an id (events and keys refer to doors by id).
    __table_args__ = (
        CheckConstraint("liveness_undetermined IN ('deny', 'grant')", name="liveness_undetermined"),
        CheckConstraint("mode IN ('identify', 'claim', 'both')", name="mode"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A door that requires liveness denies a spoof (reason "spoof") and, by default, a burst whose
    # liveness could not be judged ("liveness_undetermined": too little turn, or a turn a tilted
    # picture could make as well); "grant" opens for the latter.
    liveness_required: Mapped[bool] = mapped_column(default=True, server_default=true())
    liveness_undetermined: Mapped[str] = mapped_column(String(8), default="deny", server_default="deny")
    mode: Mapped[str] = mapped_column(String(16), default="identify", server_default="identify")
    # Second factor (migration 0007): everyone recognised here must also enter their PIN.
    pin_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Whether this door's events keep the whole frame beside the face crop (migration 0009).
    snapshot_full_frame: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Signed requests (migration 0008): unsigned bursts are refused (401 signature_required);
    # which derivation of the door's signing secret is current (0: none issued; issuing bumps it);
    # the fingerprint of the master key that issued it. No secret is stored (app/services/signing.py).
    signing_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    signing_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    signing_key_id: Mapped[str | None] = mapped_column(String(16))


class ApiKey(Base):
    """An API key. Only a SHA-256 of the secret is kept: the secret has 256 random bits, so a
    fast hash cannot be brute-forced and a slow KDF would only add latency to every request."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'door', 'auditor', 'verifier')", name="role"),
        # A door key is bound to exactly one door; other roles are bound to none.
        CheckConstraint(
            "(role = 'door' AND door_id IS NOT NULL) OR (role <> 'door' AND door_id IS NULL)",
            name="door_binding",
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    door_id: Mapped[int | None] = mapped_column(ForeignKey("doors.id"))
    # First 8 characters of the secret: narrows the lookup; not enough to guess the rest.
    prefix: Mapped[str] = mapped_column(String(8), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Past this instant the key is refused (401 key_expired); None: never (migration 0008).
    expires_at: Mapped[datetime | None]


class Person(Base):
    __tablename__ = "people"
    # AUTOINCREMENT: access events keep a bare person_id; a reused id would misattribute them.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the person may enter at all (app/access, migration 0006; NULL: no bound).
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    # Second factor (migration 0007): this person must enter a PIN at every door; the PIN is kept
    # only as a salted scrypt hash (app/access/pin.py), never in clear, never in a log.
    pin_required: Mapped[bool] = mapped_column(default=False, server_default=false())
    pin_hash: Mapped[str | None] = mapped_column(String(200))

    templates: Mapped[list[FaceTemplate]] = relationship(
        back_populates="person",
        cascade="all, delete-orphan",
        passive_deletes=True,  # the database cascades; do not load templates just to delete them
    )


class FaceTemplate(Base):
    __tablename__ = "face_templates"
    # AUTOINCREMENT: template ids are FAISS ids and change-feed keys; they must never be reused.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    # float32 little-endian, dim * 4 bytes: exact bits, independent of the host's byte order.
    embedding: Mapped[bytes]
    dim: Mapped[int]
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    quality: Mapped[dict[str, Any]]
    image_sha256: Mapped[str] = mapped_column(String(64))
    thumbnail: Mapped[bytes | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The kept enrolment photo it was made from (None: not kept). No foreign key: photos and
    # templates both go with their person (see migration 0003).
    photo_id: Mapped[int | None]

    person: Mapped[Person] = relationship(back_populates="templates")


class EnrolmentPhoto(Base):
    """An accepted enrolment photo, kept (FACEGATE_KEEP_ENROLMENT_PHOTOS) so that another profile's
    templates can be made without re-enrolment; deleted with its person."""

    __tablename__ = "enrolment_photos"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    image: Mapped[bytes]
    image_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessEvent(Base):
    __tablename__ = "access_events"
    __table_args__ = (
        CheckConstraint("decision IN ('granted', 'denied')", name="decision"),
        # Keyset pagination walks (created_at DESC, id DESC), optionally within one door or person.
        Index("ix_access_events_created_at_id", "created_at", "id"),
        Index("ix_access_events_door_id_created_at_id", "door_id", "created_at", "id"),
        Index("ix_access_events_person_id_created_at_id", "person_id", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    door_id: Mapped[int] = mapped_column(ForeignKey("doors.id"))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    # No foreign key on purpose: deleting a person keeps the audit trail with the bare id.
    person_id: Mapped[int | None]
    best_distance: Mapped[float | None]
    second_distance: Mapped[float | None]
    # The 1:K threshold in force for this decision (profile metric); NULL for events before 0003.
    tau: Mapped[float | None]
    # The door's mode for this decision ("identify" or "claim"; NULL before 0004) and the claim
    # the client sent (badge / external_id, or "id:<n>"), as sent.
    mode: Mapped[str | None] = mapped_column(String(16))
    claim: Mapped[str | None] = mapped_column(String(200))
    frames: Mapped[int]
    frames_with_face: Mapped[int]
    liveness: Mapped[dict[str, Any] | None]
    latency_ms: Mapped[float]
    model_version: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    # Which access rule decided (app/access, migration 0006: open_door, grant:<id>, no_grant,
    # schedule:<ids>, holiday:<date>, valid_from, valid_until); NULL when no rule was reached.
    rule: Mapped[str | None] = mapped_column(String(64))
    # Second factor and lockdown (migration 0007; NULL before it and when they played no part):
    # the lockdown in force when the burst was decided (every event during a lockdown names it),
    # and what the PIN check found (app.access.pin.PinCheck; never the PIN itself).
    lockdown_id: Mapped[int | None] = mapped_column(BigInteger)
    pin_check: Mapped[str | None] = mapped_column(String(16))
    # The reviewer's verdict (migration 0011), loaded with the event (one query per page).
    label: Mapped[EventLabel | None] = relationship(lazy="selectin", viewonly=True)


class GalleryState(Base):
    """One row: the gallery's change counter, bumped in the same transaction as every template
    insert or delete. Replicas poll it; the UPDATE's row lock also orders concurrent writers."""

    __tablename__ = "gallery_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    # The template version the service matches against; None: the configured profile's. A
    # reencode switches it (and bumps ``version``) in one transaction; replicas follow.
    active_version: Mapped[str | None] = mapped_column(String(64))


class GalleryChange(Base):
    """The change feed: which template was added or deleted at which gallery version.

    Versions commit in order (writers serialise on the gallery_state row), so a replica that has
    applied everything up to version v needs exactly the rows with version > v.
    """

    __tablename__ = "gallery_changes"
    __table_args__ = (
        CheckConstraint("op IN ('add', 'delete')", name="op"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, index=True)
    op: Mapped[str] = mapped_column(String(8))
    # No foreign key: a delete outlives its template.
    template_id: Mapped[int]


class AuditRecord(Base):
    """One link of the audit chain (app/audit): an access event (``event_id``; the hash covers all
    of the event's columns) or an admin action (who: ``actor_key_id``; what: ``action`` and
    ``target`` ids; no biometric data, no secrets). ``hash`` = SHA-256 over the record and
    ``prev_hash``; ``seq`` numbers the chain 1, 2, 3, ... without gaps."""

    __tablename__ = "audit_records"
    __table_args__ = (
        CheckConstraint("kind IN ('event', 'admin')", name="kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(8))
    # No foreign key: a deleted event must leave its link behind, to be reported as missing.
    event_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    actor_key_id: Mapped[int | None]
    action: Mapped[str | None] = mapped_column(String(32))
    target: Mapped[dict[str, Any] | None]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditState(Base):
    """One row: the chain's head (last seq and hash). Every append updates it first, so its row
    lock serialises writers from all replicas into one chain. ``legacy_*``: the access events
    that existed before migration 0005, left unchained and reported as such by verify."""

    __tablename__ = "audit_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    legacy_events: Mapped[int] = mapped_column(BigInteger)
    legacy_max_event_id: Mapped[int] = mapped_column(BigInteger)


class RevokedBadge(Base):
    """A badge number refused at claim doors (reason ``revoked_claim``), whoever holds it now."""

    __tablename__ = "revoked_badges"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    badge: Mapped[str] = mapped_column(String(200), unique=True)
    # The holder when it was revoked; no foreign key: the person may be deleted later.
    person_id: Mapped[int | None]
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_by_key_id: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(String(200))


LabelKind = Literal["correct", "wrong_person", "stranger", "spoof"]
LABEL_KINDS: tuple[LabelKind, ...] = ("correct", "wrong_person", "stranger", "spoof")


class EventLabel(Base):
    """A reviewer's verdict on one access event (migration 0011): the decision was ``correct``;
    the face was another enrolled person (``wrong_person``, ``true_person_id``); a ``stranger``;
    or a ``spoof``. One per event, replaced by a later review. No foreign key to people or keys:
    the label outlives a deleted person or a revoked key."""

    __tablename__ = "event_labels"
    __table_args__ = (
        CheckConstraint("label IN ('correct', 'wrong_person', 'stranger', 'spoof')", name="label"),
        CheckConstraint("(label = 'wrong_person') = (true_person_id IS NOT NULL)", name="true_person"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("access_events.id", ondelete="CASCADE"), unique=True
    )
    label: Mapped[str] = mapped_column(String(16), index=True)
    true_person_id: Mapped[int | None]
    reviewer_key_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A web console sign-in (app/console): the cookie's token is stored as its SHA-256 only. It
    ends when revoked (sign-out), past ``expires_at``, idle too long, or when its key is revoked."""

    __tablename__ = "console_sessions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    # Sent in every page's forms; worthless without the cookie, so kept as it is.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class EventSnapshot(Base):
    """An access event's pictures (migration 0009): the subject's best face crop and, for doors with
    ``snapshot_full_frame``, the whole frame; JPEG. Purged after FACEGATE_SNAPSHOT_RETENTION_DAYS
    (``created_at`` is the event's time) and with a deleted person's granted events; the event row
    stays. Not covered by the audit chain: snapshots are deleted by design."""

    __tablename__ = "event_snapshots"

    event_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("access_events.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    face_jpeg: Mapped[bytes]
    frame_jpeg: Mapped[bytes | None]


class PinFailure(Base):
    """Wrong PINs of one person at one door since their last correct PIN (or last lockout), and
    until when they are locked out there. In SQL so that every replica counts the same attempts."""

    __tablename__ = "pin_failures"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    door_id: Mapped[int] = mapped_column(
        ForeignKey("doors.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lockdown(Base):
    """A site lockdown (app/access/lockdown.py): started by an admin (key id; None: the CLI), in
    force until lifted. ``active`` is 1 while in force and NULL afterwards; its unique constraint
    keeps at most one lockdown in force across every replica. Rows are kept as the history."""

    __tablename__ = "lockdowns"
    __table_args__ = (
        CheckConstraint("mode IN ('all', 'all_but')", name="mode"),
        CheckConstraint("active = 1", name="active_one"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active: Mapped[int | None] = mapped_column(Integer, unique=True)
    mode: Mapped[str] = mapped_column(String(8))
    # Access groups (app/access/authorization.py) still let in under mode 'all_but'.
    allowed_group_ids: Mapped[list[int]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_by_key_id: Mapped[int | None]
    lifted_at: Mapped[datetime | None]
    lifted_by_key_id: Mapped[int | None]


# --- access rules (app/access, migration 0006) -------------------------------------------------


class AccessGroup(Base):
    __tablename__ = "access_groups"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessGroupMember(Base):
    __tablename__ = "access_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("access_groups.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessSchedule(Base):
    """Weekly windows in the site's local time (FACEGATE_SITE_TIMEZONE); closed on holidays unless
    ``applies_on_holidays``."""

    __tablename__ = "access_schedules"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    applies_on_holidays: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessScheduleWindow(Base):
    """Open on ``days`` (bit mask, bit 0 = Monday) from ``start_minute`` to ``end_minute`` after
    local midnight; an end at or before the start crosses midnight."""

    __tablename__ = "access_schedule_windows"
    __table_args__ = (
        CheckConstraint("days BETWEEN 1 AND 127", name="days"),
        CheckConstraint(
            "start_minute >= 0 AND start_minute < 1440 AND end_minute > 0 AND end_minute <= 1440",
            name="minutes",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("access_schedules.id", ondelete="CASCADE"), index=True
    )
    days: Mapped[int]
    start_minute: Mapped[int]
    end_minute: Mapped[int]


class AccessGrant(Base):
    """Members of ``group_id`` may pass ``door_id``: always, or in ``schedule_id``'s windows. A door
    with no grant at all is open to every enrolled person."""

    __tablename__ = "access_grants"
    __table_args__ = (UniqueConstraint("door_id", "group_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("access_groups.id", ondelete="CASCADE"), index=True)
    door_id: Mapped[int] = mapped_column(ForeignKey("doors.id", ondelete="CASCADE"))
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_schedules.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessHoliday(Base):
    """A site-local date on which scheduled grants are closed (unless their schedule applies)."""

    __tablename__ = "access_holidays"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RequestNonce(Base):
    """A nonce seen in a signed door request (migration 0008). The primary key (door_id, nonce) is
    the unique constraint that makes a replay fail on every replica; rows are purged once past
    ``expires_at`` (the request's timestamp plus the clock window: older ones are refused anyway)."""

    __tablename__ = "request_nonces"

    door_id: Mapped[int] = mapped_column(ForeignKey("doors.id"), primary_key=True, autoincrement=False)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


AlertKind = Literal["burst_streak"]


class Alert(Base):
    """An alert (migration 0008): ``burst_streak`` is a run of spoof / unknown-person bursts at one
    door (app/services/alerts.py); ``details`` holds the event ids, reasons and window, no faces."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("kind IN ('burst_streak')", name="kind"),
        Index("ix_alerts_door_id_created_at", "door_id", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    door_id: Mapped[int] = mapped_column(ForeignKey("doors.id"))
    details: Mapped[dict[str, Any]]
