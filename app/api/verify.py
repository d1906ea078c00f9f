"""Face verification (1:1): two images, or one image against one enrolled person (admin, verifier)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServicesDep, VerifyKey
from app.api.errors import ApiError
from app.api.people import ErrorOut
from app.api.schemas import PersonRef
from app.api.uploads import read_upload, run_inference
from app.services.container import Services, Serving
from app.services.verification import (
    FoundFace,
    ImageFaces,
    Verdict,
    VerificationError,
    verify_against,
    verify_images,
)
from app.store import queries

router = APIRouter(prefix="/v1", tags=["verification"])
log = logging.getLogger(__name__)
T = TypeVar("T")


class FaceBoxOut(BaseModel):
    index: int = Field(description="The face's index in its image, faces ordered largest first.")
    box: tuple[int, int, int, int] = Field(description="left, top, right, bottom (pixels, inclusive).")
    score: float = Field(description="The detector's confidence.")


class ImageFacesOut(BaseModel):
    face: FaceBoxOut = Field(description="The face compared.")
    unmatched_faces: list[FaceBoxOut] = Field(description="The other faces found in the image, not compared.")


class VerdictFields(BaseModel):
    same_person: bool = Field(description="distance < tau.")
    distance: float = Field(description="In the profile's metric (see `metric`); smaller is more alike.")
    tau: float = Field(
        description="The 1:1 threshold in force: calibrated for FACEGATE_TARGET_FMR_1TO1 false matches per "
        "claim, whatever the number of enrolled people."
    )
    target_fmr: float = Field(description="The false-match rate per claim that tau is calibrated for.")
    tau_source: str = Field(
        description="Where tau came from: 'gallery' (its own impostors), 'prior' (the model's dev data) "
        "or 'reference' (the model authors' operating point)."
    )
    match_probability: float | None = Field(
        default=None,
        description="A calibrated probability that the faces are the same person. Always null: no "
        "profile of this build has a calibrated one; use same_person (tau is set by a false-match rate).",
    )
    metric: str = Field(description="The profile's distance: 'fused', 'cosine' (1 - cos) or 'l2'.")
    profile: str
    model_version: str


class VerifyOut(VerdictFields):
    source: ImageFacesOut
    target: ImageFacesOut


class PersonVerifyOut(VerdictFields):
    person: PersonRef
    template_id: int = Field(description="The person's template nearest to the probe (distance is to it).")
    templates: int = Field(description="The person's templates of the served model version, all compared.")
    probe: ImageFacesOut


_IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "`unauthorized`."},
    403: {"model": ErrorOut, "description": "`forbidden`: the key is neither admin nor verifier."},
    413: {"model": ErrorOut, "description": "`image_too_large` (the details name the image)."},
    422: {
        "model": ErrorOut,
        "description": "`not_an_image` or another image error, `no_face` (details.image says which image: "
        "source, target or image), `face_index_out_of_range` (details.faces says how many there are), "
        "`invalid_request`.",
    },
    503: {"model": ErrorOut, "description": "`busy`: too many requests wait for inference; `starting`."},
}
_PERSON_ERRORS: dict[int | str, dict[str, Any]] = {
    **_IMAGE_ERRORS,
    404: {"model": ErrorOut, "description": "`person_not_found`."},
    409: {
        "model": ErrorOut,
        "description": "`no_templates`: the person has no face enrolled for the model version in service.",
    },
}


async def _infer(services: Services, fn: Callable[[], T]) -> T:
    """Run one verification in the inference pool; its refusals become API errors."""
    try:
        return await run_inference(services, fn)
    except VerificationError as exc:
        raise ApiError(exc.status, exc.code, exc.message, **exc.details) from exc


def _face(f: FoundFace) -> FaceBoxOut:
    return FaceBoxOut(index=f.index, box=f.box, score=round(f.score, 4))


def _faces(found: ImageFaces) -> ImageFacesOut:
    return ImageFacesOut(face=_face(found.face), unmatched_faces=[_face(f) for f in found.others])


def _verdict(verdict: Verdict, serving: Serving) -> dict[str, Any]:
    applied = serving.calibration.applied_1to1
    return {
        "same_person": verdict.same_person,
        "distance": round(verdict.distance, 6),
        "tau": verdict.tau,
        "target_fmr": serving.calibration.target_fmr_1to1,
        "tau_source": applied.source if applied is not None else "unknown",
        "match_probability": None,
        "metric": serving.pipeline.profile.metric,
        "profile": serving.pipeline.profile.name,
        "model_version": serving.pipeline.model_version,
    }


FaceIndexForm = Annotated[
    int | None,
    Form(ge=0, description="Which face of the image to use (0 = the largest, then by size); default 0."),
]


@router.post("/verify", response_model=VerifyOut, responses=_IMAGE_ERRORS)
async def verify(
    *,
    request: Request,
    services: ServicesDep,
    key: VerifyKey,
    source: Annotated[UploadFile, File(description="The first image (e.g. an ID photo).")],
    target: Annotated[UploadFile, File(description="The second image (e.g. a live capture).")],
    source_face: FaceIndexForm = None,
    target_face: FaceIndexForm = None,
) -> VerifyOut:
    """Are the faces in two images the same person? (1:1, like CompareFaces / Azure verify.)

    Nothing is stored: not the images, not the encodings, not the answer (only a log line).
    """
    limit = services.settings.max_image_bytes
    a = await read_upload(source, limit, "source")
    b = await read_upload(target, limit, "target")
    serving = services.serving()  # one model version (and its τ) for the whole request
    tau = serving.calibration.tau_1to1
    fn = partial(
        verify_images,
        serving.pipeline,
        a,
        b,
        services.settings,
        tau,
        source_face=source_face,
        target_face=target_face,
    )
    result = await _infer(services, fn)
    log.info(
        "verify",
        extra={
            "key_id": key.id,
            "same_person": result.verdict.same_person,
            "distance": result.verdict.distance,
            "request_id": request.state.request_id,
        },
    )
    return VerifyOut(
        **_verdict(result.verdict, serving), source=_faces(result.source), target=_faces(result.target)
    )


@router.post("/people/{person_id}/verify", response_model=PersonVerifyOut, responses=_PERSON_ERRORS)
async def verify_person(
    *,
    request: Request,
    person_id: int,
    services: ServicesDep,
    key: VerifyKey,
    image: Annotated[UploadFile, File(description="A probe photo of the person claimed.")],
    face: FaceIndexForm = None,
) -> PersonVerifyOut:
    """Is the face in the probe this enrolled person? Compared with their templates only (the
    nearest decides), at the 1:1 τ. Nothing is stored."""
    serving = services.serving()
    version, dim = serving.pipeline.model_version, serving.pipeline.dim

    def load() -> tuple[PersonRef, list[int], Any]:
        with services.sessions() as session:
            person = queries.get_person(session, person_id)
            if person is None:
                raise ApiError(404, "person_not_found", f"person {person_id} does not exist")
            ids, vectors = queries.person_templates(session, person_id, version, dim)
            return PersonRef(id=person.id, name=person.name), ids, vectors

    person, ids, vectors = await run_in_threadpool(load)
    if not ids:
        raise ApiError(
            409,
            "no_templates",
            f"person {person_id} has no face enrolled for the model version in service ({version})",
        )
    data = await read_upload(image, services.settings.max_image_bytes, "image")
    tau = serving.calibration.tau_1to1
    fn = partial(
        verify_against, serving.pipeline, data, ids, vectors, settings=services.settings, tau=tau, face=face
    )
    result = await _infer(services, fn)
    log.info(
        "verify person",
        extra={
            "key_id": key.id,
            "person_id": person_id,
            "same_person": result.verdict.same_person,
            "distance": result.verdict.distance,
            "request_id": request.state.request_id,
        },
    )
    return PersonVerifyOut(
        **_verdict(result.verdict, serving),
        person=person,
        template_id=result.template_id,
        templates=result.templates,
        probe=_faces(result.probe),
    )
