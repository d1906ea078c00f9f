"""People and their enrolled faces (admin)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from numpy.typing import NDArray
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, ServicesDep, SessionDep
from app.api.errors import ApiError
from app.api.schemas import FaceOut, PersonIn, PersonOut
from app.api.uploads import read_upload, run_inference
from app.audit.log import record_admin_action
from app.services.container import Services, Serving
from app.services.enrolment import EnrolCandidate, EnrolmentRefusedError, analyse_photo, nearest_other_person
from app.store import queries
from app.store.models import Person

router = APIRouter(prefix="/v1/people", tags=["people"])
log = logging.getLogger(__name__)


def _person_or_404(session: Session, person_id: int) -> Person:
    person = queries.get_person(session, person_id)
    if person is None:
        raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
    return person


def _out(person: Person, faces: int) -> PersonOut:
    return PersonOut(
        id=person.id,
        name=person.name,
        external_id=person.external_id,
        created_at=person.created_at,
        faces=faces,
        valid_from=person.valid_from,
        valid_until=person.valid_until,
    )


@router.post("", status_code=201, response_model=PersonOut)
def create_person(body: PersonIn, session: SessionDep, me: AdminKey) -> PersonOut:
    try:
        person = queries.create_person(session, body.name, body.external_id)
        record_admin_action(session, me.id, "person.create", {"person_id": person.id})
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(
            409, "external_id_exists", f"external_id {body.external_id!r} is already in use"
        ) from exc
    return _out(person, 0)


@router.get("", response_model=list[PersonOut])
def list_people(
    session: SessionDep,
    services: ServicesDep,
    _: AdminKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Annotated[int | None, Query(ge=0)] = None,
) -> list[PersonOut]:
    # Faces: templates of the version in service (after a reencode the old ones stay in SQL too).
    version = services.gallery.model_version
    people = queries.list_people(session, limit=limit, after_id=after_id, model_version=version)
    return [_out(p, n) for p, n in people]


@router.get("/{person_id}", response_model=PersonOut)
def get_person(person_id: int, session: SessionDep, services: ServicesDep, _: AdminKey) -> PersonOut:
    person = _person_or_404(session, person_id)
    return _out(person, len(queries.list_templates(session, person_id, services.gallery.model_version)))


@router.delete("/{person_id}", status_code=204)
def delete_person(person_id: int, session: SessionDep, services: ServicesDep, me: AdminKey) -> None:
    removed = queries.delete_person(session, person_id)
    if removed is None:
        raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
    record_admin_action(session, me.id, "person.delete", {"person_id": person_id, "face_ids": removed})
    session.commit()
    # SQL first (source of truth), then this replica's index at once; others follow the feed.
    services.gallery.removed_locally(removed)
    log.info("person deleted", extra={"person_id": person_id, "templates": len(removed)})


@router.get("/{person_id}/faces", response_model=list[FaceOut])
def list_faces(person_id: int, session: SessionDep, services: ServicesDep, _: AdminKey) -> list[FaceOut]:
    _person_or_404(session, person_id)
    templates = queries.list_templates(session, person_id, services.gallery.model_version)
    return [FaceOut.model_validate(t, from_attributes=True) for t in templates]


@router.delete("/{person_id}/faces/{face_id}", status_code=204)
def delete_face(
    person_id: int, face_id: int, session: SessionDep, services: ServicesDep, me: AdminKey
) -> None:
    template = queries.get_template(session, face_id)
    if template is None or template.person_id != person_id:
        raise ApiError(404, "face_not_found", f"person {person_id} has no face {face_id}")
    # The kept photo and its templates of other versions go too: a later reencode cannot revive it.
    removed = queries.delete_template(session, face_id)
    record_admin_action(session, me.id, "face.delete", {"person_id": person_id, "face_ids": removed})
    session.commit()
    services.gallery.removed_locally(removed)


def _check_duplicate(
    services: Services, serving: Serving, embedding: NDArray[np.float32], person_id: int
) -> None:
    nearest = nearest_other_person(serving.index, embedding, person_id)
    tau = serving.calibration.tau
    if nearest is None or nearest[1] >= tau:
        return
    with services.sessions() as session:
        other = queries.get_person(session, nearest[0])
    other_name = other.name if other else f"#{nearest[0]}"
    services.metrics.enrolments.labels("duplicate_identity").inc()
    raise ApiError(
        422,
        "duplicate_identity",
        f"this face matches {other_name} (person {nearest[0]}, distance {nearest[1]:.3f} < "
        f"{tau:.3f}); add ?force=true if they really are different people",
        person_id=nearest[0],
        person_name=other_name,
        distance=round(nearest[1], 4),
        tau=round(tau, 4),
    )


def _store_template(
    services: Services,
    model_version: str,
    person_id: int,
    candidate: EnrolCandidate,
    photo: bytes,
    *,
    key_id: int,
) -> FaceOut:
    """Template and (FACEGATE_KEEP_ENROLMENT_PHOTOS) photo in one transaction; refused when the
    gallery switched to another model version since this request's pipeline was read."""
    keep = services.settings.keep_enrolment_photos
    with services.sessions() as session:
        if queries.get_person(session, person_id) is None:  # deleted while we were encoding
            raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
        try:
            template = queries.add_template(
                session,
                person_id,
                candidate.face.embedding,
                model_version=model_version,
                quality=candidate.quality.as_dict(),
                image_sha256=candidate.image_sha256,
                thumbnail=candidate.thumbnail,
                photo=photo if keep else None,
            )
        except queries.StaleModelVersionError as exc:
            session.rollback()
            services.metrics.enrolments.labels("gallery_switching").inc()
            raise ApiError(
                503,
                "gallery_switching",
                f"the gallery has switched to model version {exc.active} and this server still runs "
                f"{exc.offered}; nothing was stored: retry in a few seconds",
                active_version=exc.active,
            ) from exc
        # Ids only: no embedding, no photo.
        record_admin_action(session, key_id, "face.enrol", {"person_id": person_id, "face_id": template.id})
        session.commit()
        out = FaceOut.model_validate(template, from_attributes=True)
    # SQL first (source of truth), then this replica's index at once; others follow the feed.
    services.gallery.added_locally(out.id, person_id, candidate.face.embedding, model_version)
    return out


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None
    request_id: str | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


_ENROL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "`person_not_found`."},
    413: {"model": ErrorOut, "description": "`image_too_large`."},
    422: {
        "model": ErrorOut,
        "description": "The photo is refused: `no_face`, `face_too_small`, `multiple_faces`, `low_quality`, "
        "`duplicate_identity` (add ?force=true), `not_an_image`, or another image error.",
    },
    503: {
        "model": ErrorOut,
        "description": "`gallery_switching`: a reencode switched the gallery to another model version and "
        "this server has not loaded it yet; nothing was stored, retry in a few seconds. `busy`: too "
        "many requests wait for inference.",
    },
}


@router.post("/{person_id}/faces", status_code=201, response_model=FaceOut, responses=_ENROL_ERRORS)
async def enrol_face(
    request: Request,
    person_id: int,
    services: ServicesDep,
    _: AdminKey,
    image: Annotated[UploadFile, File(description="One photo showing the person's face.")],
    force: Annotated[bool, Query(description="Enrol even if the face matches another person.")] = False,
) -> FaceOut:
    """Enrol one photo. Blocking SQL runs in the thread pool and inference in the inference pool."""

    def exists() -> None:
        with services.sessions() as session:
            _person_or_404(session, person_id)

    await run_in_threadpool(exists)
    data = await read_upload(image, services.settings.max_image_bytes, "image")
    serving = services.serving()  # one model version for the whole request
    try:
        candidate = await run_inference(services, analyse_photo, serving.pipeline, data, services.settings)
    except EnrolmentRefusedError as exc:
        services.metrics.enrolments.labels(exc.code).inc()
        raise ApiError(422, exc.code, exc.message, **exc.details) from exc
    if not force:
        await run_in_threadpool(_check_duplicate, services, serving, candidate.face.embedding, person_id)
    version = serving.pipeline.model_version
    out = await run_in_threadpool(
        _store_template, services, version, person_id, candidate, data, key_id=request.state.key_id
    )
    services.metrics.enrolments.labels("enrolled").inc()
    log.info(
        "face enrolled",
        extra={
            "person_id": person_id,
            "face_id": out.id,
            "forced": force,
            "request_id": request.state.request_id,
        },
    )
    return out
