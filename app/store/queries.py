"""Queries on a caller's Session. Nothing here commits: the caller owns the transaction.

Functions flush when they need a database-assigned id or want constraint violations
(IntegrityError) raised at the call rather than at commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Row, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.store import snapshot_queries
from app.store.audit_chain import event_body, link_hash
from app.store.models import (
    DECISIONS,
    DOOR_MODES,
    ROLES,
    UNDETERMINED_POLICIES,
    AccessEvent,
    ApiKey,
    AuditRecord,
    AuditState,
    Door,
    EnrolmentPhoto,
    FaceTemplate,
    GalleryChange,
    GalleryState,
    Person,
    utcnow,
)

KEY_PREFIX = "fg_"
KEY_LOOKUP_CHARS = 8
# Longer bearer tokens are refused before hashing: ours are 46 characters.
MAX_SECRET_CHARS = 256
# last_used_at is refreshed at most this often, so a busy door does not write on every frame.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_EVENTS_PAGE = 1000


# --- doors -------------------------------------------------------------------------------------


def create_door(
    session: Session,
    name: str,
    *,
    liveness_required: bool = True,
    liveness_undetermined: str = "deny",
    mode: str = "identify",
    snapshot_full_frame: bool = False,
) -> Door:
    """Raises IntegrityError when the name is taken."""
    if liveness_undetermined not in UNDETERMINED_POLICIES:
        raise ValueError(f"liveness_undetermined must be one of {UNDETERMINED_POLICIES}")
    if mode not in DOOR_MODES:
        raise ValueError(f"mode must be one of {DOOR_MODES}")
    door = Door(
        name=name, liveness_required=liveness_required, liveness_undetermined=liveness_undetermined, mode=mode
    )
    door.snapshot_full_frame = snapshot_full_frame
    session.add(door)
    session.flush()
    return door


def update_door(
    session: Session,
    door_id: int,
    *,
    name: str | None = None,
    liveness_required: bool | None = None,
    liveness_undetermined: str | None = None,
    mode: str | None = None,
    snapshot_full_frame: bool | None = None,
) -> Door | None:
    """Change the given fields; None leaves a field as it is. Raises IntegrityError on a taken name."""
    door = session.get(Door, door_id)
    if door is None:
        return None
    if liveness_undetermined is not None and liveness_undetermined not in UNDETERMINED_POLICIES:
        raise ValueError(f"liveness_undetermined must be one of {UNDETERMINED_POLICIES}")
    if mode is not None and mode not in DOOR_MODES:
        raise ValueError(f"mode must be one of {DOOR_MODES}")
    if mode is not None:
        door.mode = mode
    if name is not None:
        door.name = name
    if liveness_required is not None:
        door.liveness_required = liveness_required
    if liveness_undetermined is not None:
        door.liveness_undetermined = liveness_undetermined
    if snapshot_full_frame is not None:
        door.snapshot_full_frame = snapshot_full_frame
    session.flush()
    return door


def get_door(session: Session, door_id: int) -> Door | None:
    return session.get(Door, door_id)


def list_doors(session: Session) -> list[Door]:
    return list(session.scalars(select(Door).order_by(Door.id)))


# --- API keys ----------------------------------------------------------------------------------


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(session: Session, role: str, name: str, door_id: int | None = None) -> tuple[ApiKey, str]:
    """A new key and its secret. Only the secret's SHA-256 and first 8 characters are stored:
    show the secret once. A door key needs `door_id`; other roles must not have one."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if (role == "door") != (door_id is not None):
        raise ValueError("a door key needs a door_id" if role == "door" else f"a {role} key has no door_id")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    key = ApiKey(
        name=name,
        role=role,
        door_id=door_id,
        prefix=secret[:KEY_LOOKUP_CHARS],
        key_hash=_hash_secret(secret),
    )
    session.add(key)
    session.flush()
    return key, secret


def authenticate(session: Session, secret: str) -> ApiKey | None:
    """The live (not revoked) key whose secret this is, or None.

    Refreshes last_used_at (at most once a minute): commit afterwards, even on read-only requests,
    to keep it.
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_SECRET_CHARS:
        return None
    digest = _hash_secret(secret)
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == secret[:KEY_LOOKUP_CHARS], ApiKey.revoked_at.is_(None))
    ).all()
    match: ApiKey | None = None
    for key in candidates:
        # Constant-time: the comparison must not tell an attacker how many hex digits matched.
        if hmac.compare_digest(key.key_hash, digest):
            match = key
    if match is None:
        return None
    now = utcnow()
    if match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION:
        match.last_used_at = now
    return match


def get_api_key(session: Session, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_api_key(session: Session, key_id: int) -> ApiKey | None:
    """Marks the key revoked (idempotent); None when there is no such key."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


# --- people and templates ----------------------------------------------------------------------


def create_person(session: Session, name: str, external_id: str | None = None) -> Person:
    """Raises IntegrityError when external_id is taken."""
    person = Person(name=name, external_id=external_id)
    session.add(person)
    session.flush()
    return person


def get_person(session: Session, person_id: int) -> Person | None:
    return session.get(Person, person_id)


def get_person_by_external_id(session: Session, external_id: str) -> Person | None:
    return session.scalars(select(Person).where(Person.external_id == external_id)).one_or_none()


def person_for_claim(session: Session, claim: str) -> Person | None:
    """The person a door claim names: ``id:<n>`` for a person id, else an ``external_id`` (badge)."""
    if claim.startswith("id:"):
        number = claim[3:]
        return get_person(session, int(number)) if number.isdigit() else None
    return get_person_by_external_id(session, claim)


def list_people(
    session: Session, limit: int | None = None, after_id: int | None = None, model_version: str | None = None
) -> list[tuple[Person, int]]:
    """People by id with their number of templates (of ``model_version``, or of all model versions);
    keyset paging by id."""
    count_stmt = select(FaceTemplate.person_id, func.count().label("n"))
    if model_version is not None:
        count_stmt = count_stmt.where(FaceTemplate.model_version == model_version)
    counts = count_stmt.group_by(FaceTemplate.person_id).subquery()
    stmt = (
        select(Person, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.person_id == Person.id)
        .order_by(Person.id)
    )
    if after_id is not None:
        stmt = stmt.where(Person.id > after_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(person, int(n)) for person, n in session.execute(stmt)]


def delete_person(session: Session, person_id: int) -> list[int] | None:
    """Deletes the person and (by ON DELETE CASCADE) their templates and kept enrolment photos, and
    the snapshots of the events that granted them entry; bumps the gallery version.

    Returns the deleted template ids (for the caller's index), or None when there is no such
    person. Access events keep the bare person_id.
    """
    person = session.get(Person, person_id)
    if person is None:
        return None
    version = _bump_gallery_version(session)
    snapshot_queries.delete_granted_for(session, person_id)
    # Read after taking the gallery lock, so a concurrent enrolment is either seen here or fails
    # on its foreign key after we commit.
    template_ids = list(
        session.scalars(
            select(FaceTemplate.id).where(FaceTemplate.person_id == person_id).order_by(FaceTemplate.id)
        )
    )
    session.add_all(GalleryChange(version=version, op="delete", template_id=t) for t in template_ids)
    session.delete(person)
    session.flush()
    return template_ids


def embedding_to_bytes(embedding: NDArray[np.float32]) -> bytes:
    """float32 little-endian bytes. Refuses other dtypes rather than silently changing the bits."""
    arr = np.asarray(embedding)
    if arr.dtype.kind != "f" or arr.dtype.itemsize != 4:
        raise ValueError(f"embedding must be float32, got {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"embedding must be a non-empty 1-d vector, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("embedding has NaN or infinite values")
    return arr.astype("<f4", copy=False).tobytes()


def embedding_from_bytes(data: bytes, dim: int) -> NDArray[np.float32]:
    if len(data) != dim * 4:
        raise ValueError(f"embedding has {len(data)} bytes, expected {dim * 4} for dim {dim}")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def template_vector(template: FaceTemplate) -> NDArray[np.float32]:
    return embedding_from_bytes(template.embedding, template.dim)


class StaleModelVersionError(Exception):
    """The gallery matches templates of another model version than the one offered: a reencode
    switched it, and this writer has not followed yet. Nothing was written."""

    def __init__(self, offered: str, active: str) -> None:
        super().__init__(f"the gallery serves model version {active}; this template is {offered}")
        self.offered = offered
        self.active = active


def add_template(
    session: Session,
    person_id: int,
    embedding: NDArray[np.float32],
    *,
    model_version: str,
    quality: dict[str, Any],
    image_sha256: str,
    thumbnail: bytes | None = None,
    photo: bytes | None = None,
) -> FaceTemplate:
    """Stores one encoding (and, given ``photo``, the enrolment photo it came from) and bumps the
    gallery version.

    Raises StaleModelVersionError when the gallery's active version is set and is not
    ``model_version`` (checked under the gallery lock, so a concurrent switch is seen), and
    IntegrityError if the person is gone.
    """
    data = embedding_to_bytes(embedding)
    if len(image_sha256) != 64:
        raise ValueError("image_sha256 must be 64 hex characters")
    # Bump first: every gallery writer takes the gallery_state row lock before anything else,
    # so concurrent writers queue instead of deadlocking.
    version, active = _bump_gallery(session)
    if active is not None and active != model_version:
        raise StaleModelVersionError(model_version, active)
    photo_id = None
    if photo is not None:
        photo_id = add_photo(session, person_id, photo, image_sha256).id
    template = FaceTemplate(
        person_id=person_id,
        embedding=data,
        dim=len(data) // 4,
        model_version=model_version,
        quality=quality,
        image_sha256=image_sha256,
        thumbnail=thumbnail,
        photo_id=photo_id,
    )
    session.add(template)
    session.flush()
    session.add(GalleryChange(version=version, op="add", template_id=template.id))
    session.flush()
    return template


def get_template(session: Session, template_id: int) -> FaceTemplate | None:
    return session.get(FaceTemplate, template_id)


def list_templates(session: Session, person_id: int, model_version: str | None = None) -> list[FaceTemplate]:
    """A person's templates by id: of ``model_version``, or of every model version."""
    stmt = select(FaceTemplate).where(FaceTemplate.person_id == person_id)
    if model_version is not None:
        stmt = stmt.where(FaceTemplate.model_version == model_version)
    return list(session.scalars(stmt.order_by(FaceTemplate.id)))


def person_templates(
    session: Session, person_id: int, model_version: str, dim: int
) -> tuple[list[int], NDArray[np.float32]]:
    """A person's template ids and vectors [n, dim] of one model version (1:1 verification)."""
    templates = list_templates(session, person_id, model_version)
    vectors = np.empty((len(templates), dim), dtype=np.float32)
    for row, t in enumerate(templates):
        vectors[row] = embedding_from_bytes(t.embedding, dim)
    return [t.id for t in templates], vectors


def delete_template(session: Session, template_id: int) -> list[int]:
    """Deletes one template, its kept photo and the photo's templates of other model versions (so a
    later reencode cannot bring the face back); bumps the gallery version.

    Returns the deleted template ids (for the caller's index); empty when there is no such template.
    """
    version = _bump_gallery_version(session)
    template = session.get(FaceTemplate, template_id)
    if template is None:
        return []
    ids = [template_id]
    if template.photo_id is not None:
        photo_id = template.photo_id
        ids = list(
            session.scalars(
                select(FaceTemplate.id).where(FaceTemplate.photo_id == photo_id).order_by(FaceTemplate.id)
            )
        )
        session.execute(delete(EnrolmentPhoto).where(EnrolmentPhoto.id == photo_id))
    session.execute(
        delete(FaceTemplate).where(FaceTemplate.id.in_(ids)).execution_options(synchronize_session=False)
    )
    session.expunge(template)
    session.add_all(GalleryChange(version=version, op="delete", template_id=t) for t in ids)
    session.flush()
    return ids


# --- kept enrolment photos ---------------------------------------------------------------------


class KeptPhoto(NamedTuple):
    id: int
    person_id: int
    image: bytes
    image_sha256: str


def add_photo(session: Session, person_id: int, image: bytes, image_sha256: str) -> EnrolmentPhoto:
    """Keeps an accepted enrolment photo; the caller links its template(s) by ``photo_id``."""
    if len(image_sha256) != 64:
        raise ValueError("image_sha256 must be 64 hex characters")
    photo = EnrolmentPhoto(person_id=person_id, image=image, image_sha256=image_sha256)
    session.add(photo)
    session.flush()
    return photo


def count_photos(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(EnrolmentPhoto)).scalar_one())


def _has_template_of(model_version: str) -> Any:
    return (
        select(FaceTemplate.id)
        .where(FaceTemplate.photo_id == EnrolmentPhoto.id, FaceTemplate.model_version == model_version)
        .exists()
    )


def photos_without_template(
    session: Session, model_version: str, *, after_id: int | None = None, limit: int | None = None
) -> list[int]:
    """Ids of kept photos that have no template of ``model_version`` yet, by id (keyset paging)."""
    stmt = select(EnrolmentPhoto.id).where(~_has_template_of(model_version))
    if after_id is not None:
        stmt = stmt.where(EnrolmentPhoto.id > after_id)
    stmt = stmt.order_by(EnrolmentPhoto.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def load_photos(session: Session, photo_ids: Sequence[int]) -> list[KeptPhoto]:
    """The photos that still exist among ``photo_ids``, by id."""
    rows = session.execute(
        select(EnrolmentPhoto.id, EnrolmentPhoto.person_id, EnrolmentPhoto.image, EnrolmentPhoto.image_sha256)
        .where(EnrolmentPhoto.id.in_(list(photo_ids)))
        .order_by(EnrolmentPhoto.id)
    ).all()
    return [KeptPhoto(int(r[0]), int(r[1]), bytes(r[2]), str(r[3])) for r in rows]


class PhotoTemplate(NamedTuple):
    """Another profile's encoding of one kept photo."""

    photo_id: int
    embedding: NDArray[np.float32]
    quality: dict[str, Any]
    thumbnail: bytes | None


def add_photo_templates(
    session: Session, model_version: str, templates: Sequence[PhotoTemplate]
) -> list[int]:
    """Stores templates of ``model_version`` made from kept photos, beside their other versions.

    Takes the gallery lock without bumping the version while ``model_version`` is not the active
    one: no replica serves these templates, so nothing needs to notice them (the switch bumps the
    version, and replicas then rebuild from SQL). When it is the active one, they go through the
    change feed like any enrolment. Photos deleted meanwhile, and photos that already have a
    template of this version (a concurrent run), are skipped. Returns the photo ids that got a
    template.
    """
    _, active = _lock_gallery(session)
    if not templates:
        return []
    wanted = [t.photo_id for t in templates]
    live = dict(
        session.execute(
            select(EnrolmentPhoto.id, EnrolmentPhoto.person_id).where(
                EnrolmentPhoto.id.in_(wanted), ~_has_template_of(model_version)
            )
        ).all()
    )
    sha = dict(
        session.execute(
            select(EnrolmentPhoto.id, EnrolmentPhoto.image_sha256).where(EnrolmentPhoto.id.in_(list(live)))
        ).all()
    )
    rows = [
        FaceTemplate(
            person_id=live[t.photo_id],
            embedding=embedding_to_bytes(t.embedding),
            dim=len(t.embedding),
            model_version=model_version,
            quality=t.quality,
            image_sha256=sha[t.photo_id],
            thumbnail=t.thumbnail,
            photo_id=t.photo_id,
        )
        for t in templates
        if t.photo_id in live
    ]
    if not rows:
        return []
    session.add_all(rows)
    session.flush()
    if active == model_version:
        version = _bump_gallery_version(session)
        session.add_all(GalleryChange(version=version, op="add", template_id=r.id) for r in rows)
        session.flush()
    return [int(r.photo_id) for r in rows if r.photo_id is not None]


class UncoveredPerson(NamedTuple):
    """A person with templates of the serving version but none of the target version."""

    person_id: int
    name: str
    templates: int  # of the serving version
    photos: int  # kept photos (0: enrolled while photos were not kept)


def people_without_version(
    session: Session, serving_version: str | None, target_version: str
) -> list[UncoveredPerson]:
    """People who can be recognised under ``serving_version`` (None: under any version) and could
    not under ``target_version``."""
    serving_stmt = select(FaceTemplate.person_id, func.count().label("n"))
    if serving_version is not None:
        serving_stmt = serving_stmt.where(FaceTemplate.model_version == serving_version)
    serving = serving_stmt.group_by(FaceTemplate.person_id).subquery()
    photos = (
        select(EnrolmentPhoto.person_id, func.count().label("n"))
        .group_by(EnrolmentPhoto.person_id)
        .subquery()
    )
    covered = (
        select(FaceTemplate.id)
        .where(FaceTemplate.person_id == Person.id, FaceTemplate.model_version == target_version)
        .exists()
    )
    rows = session.execute(
        select(Person.id, Person.name, serving.c.n, func.coalesce(photos.c.n, 0))
        .join(serving, serving.c.person_id == Person.id)
        .outerjoin(photos, photos.c.person_id == Person.id)
        .where(~covered)
        .order_by(Person.id)
    ).all()
    return [UncoveredPerson(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def templates_without_photo(session: Session, model_version: str) -> int:
    """Templates of ``model_version`` made before photos were kept (no reencode can remake them)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(FaceTemplate)
            .where(FaceTemplate.model_version == model_version, FaceTemplate.photo_id.is_(None))
        ).scalar_one()
    )


def template_versions(session: Session) -> dict[str, int]:
    """How many templates each model version has."""
    rows = session.execute(
        select(FaceTemplate.model_version, func.count()).group_by(FaceTemplate.model_version)
    ).all()
    return {str(v): int(n) for v, n in rows}


# --- the gallery: bulk load and change feed ----------------------------------------------------


class TemplateArrays(NamedTuple):
    """Row i of each array describes one template."""

    ids: NDArray[np.int64]
    person_ids: NDArray[np.int64]
    vectors: NDArray[np.float32]  # [n, dim], C-contiguous


class GalleryDelta(NamedTuple):
    """Changes between a replica's version and `version`: apply removals first, then additions."""

    version: int
    removed_ids: NDArray[np.int64]
    added: TemplateArrays


def _update_gallery_state(session: Session, **values: Any) -> tuple[int, str | None]:
    stmt = (
        update(GalleryState)
        .where(GalleryState.id == 1)
        .values(**values)
        .returning(GalleryState.version, GalleryState.active_version)
        .execution_options(synchronize_session=False)
    )
    version, active = session.execute(stmt).one()
    return int(version), active


def _bump_gallery(session: Session) -> tuple[int, str | None]:
    """Takes the gallery_state row lock and moves the version: (new version, active version)."""
    return _update_gallery_state(session, version=GalleryState.version + 1)


def _bump_gallery_version(session: Session) -> int:
    return _bump_gallery(session)[0]


def _lock_gallery(session: Session) -> tuple[int, str | None]:
    """Takes the gallery_state row lock (PostgreSQL: the row; SQLite: the write lock) without
    moving the version: (version, active version) as of the lock."""
    return _update_gallery_state(session, version=GalleryState.version)


def gallery_version(session: Session) -> int:
    """The change counter: it moves whenever a template is added or deleted."""
    return int(session.execute(select(GalleryState.version).where(GalleryState.id == 1)).scalar_one())


def gallery_state(session: Session) -> tuple[int, str | None]:
    """(version, active_version): the active version is the template version the service
    matches (None: not pinned yet; see ``app.services.reencode.choose_serving``)."""
    version, active = session.execute(
        select(GalleryState.version, GalleryState.active_version).where(GalleryState.id == 1)
    ).one()
    return int(version), active


def lock_gallery(session: Session) -> tuple[int, str | None]:
    """Takes the gallery lock for a check-then-switch (see ``set_active_version``)."""
    return _lock_gallery(session)


def set_active_version(session: Session, model_version: str) -> int:
    """Makes ``model_version`` the one every replica matches, and bumps the gallery version so that
    replicas notice. Call it after ``lock_gallery`` in the same transaction. Returns the version."""
    if not model_version or len(model_version) > 64:
        raise ValueError("model_version must be 1 to 64 characters")
    version, _ = _update_gallery_state(
        session, version=GalleryState.version + 1, active_version=model_version
    )
    return version


def _template_arrays(rows: Sequence[Row[int, int, bytes, int]], dim: int | None) -> TemplateArrays:
    """(id, person_id, embedding, dim) rows to arrays, without an ORM object per row."""
    n = len(rows)
    dims = {int(r[3]) for r in rows}
    if len(dims) > 1:
        raise ValueError(f"templates of one model version have different dimensions: {sorted(dims)}")
    found = dims.pop() if dims else None
    if dim is not None and found is not None and found != dim:
        raise ValueError(f"templates have dimension {found}, expected {dim}")
    width = found if found is not None else (dim or 0)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    person_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    blob = b"".join(r[2] for r in rows)
    vectors = np.frombuffer(blob, dtype="<f4").astype(np.float32).reshape(n, width)
    return TemplateArrays(ids, person_ids, vectors)


_TEMPLATES = FaceTemplate.__table__
# Core columns (not ORM attributes): rows come back as plain tuples, no ORM work per row.
_TEMPLATE_COLUMNS = (_TEMPLATES.c.id, _TEMPLATES.c.person_id, _TEMPLATES.c.embedding, _TEMPLATES.c.dim)


def all_templates(session: Session, model_version: str, dim: int | None = None) -> TemplateArrays:
    """Every template of `model_version`, ordered by id. With `dim`, checks it (and shapes an
    empty result [0, dim])."""
    stmt = select(*_TEMPLATE_COLUMNS).where(_TEMPLATES.c.model_version == model_version)
    session.flush()  # connection() does not autoflush
    rows = session.connection().execute(stmt.order_by(_TEMPLATES.c.id)).all()
    return _template_arrays(rows, dim)


def gallery_snapshot(
    session: Session, model_version: str, dim: int | None = None, attempts: int = 5
) -> tuple[int, TemplateArrays]:
    """All templates together with the gallery version they correspond to.

    Reads the version before and after: every template change bumps it in the same transaction,
    so equal readings mean no change committed in between (under READ COMMITTED too).
    """
    for _ in range(attempts):
        before = gallery_version(session)
        arrays = all_templates(session, model_version, dim)
        if gallery_version(session) == before:
            return before, arrays
    raise RuntimeError(f"the gallery kept changing during {attempts} snapshot attempts")


def gallery_changes_since(
    session: Session, since_version: int, model_version: str, dim: int | None = None
) -> GalleryDelta | None:
    """What changed after `since_version`, for a replica to catch up without reloading.

    None when the database is behind the replica (it was restored or recreated): rebuild from
    `gallery_snapshot` then. Versions commit in order (writers queue on the gallery_state row),
    so nothing at or below the current version can still appear later.
    """
    current = gallery_version(session)
    if since_version > current:
        return None
    in_range = (GalleryChange.version > since_version, GalleryChange.version <= current)
    removed = session.scalars(
        select(GalleryChange.template_id)
        .where(GalleryChange.op == "delete", *in_range)
        .order_by(GalleryChange.template_id)
    ).all()
    # A template added and deleted within the range is gone from face_templates: the join drops it.
    added_rows = session.execute(
        select(*_TEMPLATE_COLUMNS)
        .join(GalleryChange, GalleryChange.template_id == FaceTemplate.id)
        .where(GalleryChange.op == "add", FaceTemplate.model_version == model_version, *in_range)
        .order_by(FaceTemplate.id)
    ).all()
    return GalleryDelta(
        version=current,
        removed_ids=np.asarray(removed, dtype=np.int64),
        added=_template_arrays(added_rows, dim),
    )


# --- access events -----------------------------------------------------------------------------


def record_event(
    session: Session,
    *,
    door_id: int,
    decision: str,
    reason: str,
    frames: int,
    frames_with_face: int,
    latency_ms: float,
    model_version: str,
    request_id: str,
    person_id: int | None = None,
    best_distance: float | None = None,
    second_distance: float | None = None,
    liveness: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    tau: float | None = None,
    mode: str | None = None,
    claim: str | None = None,
    rule: str | None = None,
    lockdown_id: int | None = None,
    pin_check: str | None = None,
) -> AccessEvent:
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    event = AccessEvent(
        door_id=door_id,
        decision=decision,
        reason=reason,
        person_id=person_id,
        best_distance=best_distance,
        second_distance=second_distance,
        tau=tau,
        mode=mode,
        claim=claim,
        rule=rule,
        lockdown_id=lockdown_id,
        pin_check=pin_check,
        frames=frames,
        frames_with_face=frames_with_face,
        liveness=liveness,
        latency_ms=latency_ms,
        model_version=model_version,
        request_id=request_id,
        created_at=created_at if created_at is not None else utcnow(),
    )
    session.add(event)
    session.flush()
    # The event's link, in this transaction: no event is ever committed without it.
    append_audit(session, "event", event.created_at, event_body(event), event_id=event.id)
    return event


def get_event(session: Session, event_id: int) -> AccessEvent | None:
    return session.get(AccessEvent, event_id)


def encode_cursor(created_at: datetime, event_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises ValueError for anything that encode_cursor did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, event_id = json.loads(raw)
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError("bad cursor") from exc
    if type(event_id) is not int or created_at.utcoffset() is None:
        raise ValueError("bad cursor")
    return created_at, event_id


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def list_events(
    session: Session,
    *,
    door_id: int | None = None,
    person_id: int | None = None,
    decision: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
    reason: str | None = None,
) -> tuple[list[AccessEvent], str | None]:
    """Newest first: (created_at DESC, id DESC). `since` is inclusive, `until` exclusive.

    Keyset pagination: pass the returned cursor (None on the last page) with the same filters to
    get the next page; pages neither skip nor repeat events, even while new ones arrive.
    """
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_EVENTS_PAGE}")
    if decision is not None and decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    _require_aware("since", since)
    _require_aware("until", until)
    stmt = select(AccessEvent)
    if door_id is not None:
        stmt = stmt.where(AccessEvent.door_id == door_id)
    if person_id is not None:
        stmt = stmt.where(AccessEvent.person_id == person_id)
    if decision is not None:
        stmt = stmt.where(AccessEvent.decision == decision)
    if reason is not None:
        stmt = stmt.where(AccessEvent.reason == reason)
    if since is not None:
        stmt = stmt.where(AccessEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(AccessEvent.created_at < until)
    if cursor is not None:
        last_at, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                AccessEvent.created_at < last_at,
                (AccessEvent.created_at == last_at) & (AccessEvent.id < last_id),
            )
        )
    stmt = stmt.order_by(AccessEvent.created_at.desc(), AccessEvent.id.desc()).limit(limit + 1)
    events = list(session.scalars(stmt))
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    return events, encode_cursor(events[-1].created_at, events[-1].id)


class EventCount(NamedTuple):
    door_id: int
    decision: str
    reason: str
    events: int


def count_events(
    session: Session, *, since: datetime | None = None, until: datetime | None = None
) -> list[EventCount]:
    """How many events each door had per (decision, reason), in [since, until)."""
    _require_aware("since", since)
    _require_aware("until", until)
    stmt = select(AccessEvent.door_id, AccessEvent.decision, AccessEvent.reason, func.count())
    if since is not None:
        stmt = stmt.where(AccessEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(AccessEvent.created_at < until)
    stmt = stmt.group_by(AccessEvent.door_id, AccessEvent.decision, AccessEvent.reason)
    return [EventCount(int(d), str(dec), str(r), int(n)) for d, dec, r, n in session.execute(stmt)]


# --- audit chain (app/audit) -------------------------------------------------------------------


def append_audit(
    session: Session,
    kind: str,
    created_at: datetime,
    body: dict[str, Any],
    *,
    event_id: int | None = None,
    actor_key_id: int | None = None,
    action: str | None = None,
    target: dict[str, Any] | None = None,
) -> AuditRecord:
    """Links one record to the chain's head. The UPDATE takes the audit_state row lock
    (PostgreSQL: the row; SQLite: the write lock) until the caller commits, so writers on every
    replica append one after another to a single chain."""
    seq, prev_hash = session.execute(
        update(AuditState)
        .where(AuditState.id == 1)
        .values(seq=AuditState.seq + 1)
        .returning(AuditState.seq, AuditState.head_hash)
        .execution_options(synchronize_session=False)
    ).one()
    digest = link_hash(prev_hash, int(seq), kind, created_at, body)
    record = AuditRecord(
        seq=int(seq),
        created_at=created_at,
        kind=kind,
        event_id=event_id,
        actor_key_id=actor_key_id,
        action=action,
        target=target,
        prev_hash=prev_hash,
        hash=digest,
    )
    session.add(record)
    session.execute(
        update(AuditState)
        .where(AuditState.id == 1)
        .values(head_hash=digest)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return record
