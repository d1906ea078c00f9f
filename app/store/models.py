"""SQLAlchemy models: the source of truth. Tables are created only by migrations (see migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
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


class Person(Base):
    __tablename__ = "people"
    # AUTOINCREMENT: access events keep a bare person_id; a reused id would misattribute them.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

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
