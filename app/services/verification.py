"""Face verification (1:1): is this face the person it is claimed to be?

Two images (``verify_images``) or one image against one enrolled person's templates
(``verify_against``). The decision is ``distance < tau`` with the 1:1 τ
(``CalibrationService.tau_1to1``), in the profile's metric, the same rule as ``facegate eval
verify``. CPU-heavy: call these in the inference pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.gallery.metric import Metric, from_squared_l2
from app.settings import Settings
from app.vision.imageio import ImageError, decode_image
from app.vision.pipeline import Box, Face, FacePipeline


class VerificationError(Exception):
    """A request that cannot be answered: ``status`` and ``code`` for the API, ``details`` for the client."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class FoundFace:
    index: int  # position in the image's faces, largest first
    box: Box  # left, top, right, bottom, inclusive
    score: float  # detector confidence


@dataclass(frozen=True, slots=True)
class ImageFaces:
    """The face an image contributed, and the others found in it."""

    face: FoundFace
    others: tuple[FoundFace, ...]
    embedding: NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Verdict:
    distance: float
    tau: float
    same_person: bool


@dataclass(frozen=True, slots=True)
class PairResult:
    verdict: Verdict
    source: ImageFaces
    target: ImageFaces


@dataclass(frozen=True, slots=True)
class PersonResult:
    verdict: Verdict
    probe: ImageFaces
    template_id: int  # the nearest of the person's templates
    templates: int


def _area(face: Face) -> int:
    left, top, right, bottom = face.box
    return (right - left + 1) * (bottom - top + 1)


def choose_face(faces: list[Face], index: int | None, image: str) -> tuple[Face, ImageFaces]:
    """The face to use (``index`` into the faces ordered largest first; None: the largest)."""
    if not faces:
        raise VerificationError(422, "no_face", f"no face was found in the {image} image", image=image)
    ordered = sorted(faces, key=_area, reverse=True)
    chosen = 0 if index is None else index
    if not 0 <= chosen < len(ordered):
        raise VerificationError(
            422,
            "face_index_out_of_range",
            f"the {image} image has {len(ordered)} face(s) (indexes 0 to {len(ordered) - 1}, largest "
            f"first); face {chosen} does not exist",
            image=image,
            faces=len(ordered),
        )
    found = [FoundFace(i, f.box, float(f.score)) for i, f in enumerate(ordered)]
    face = ordered[chosen]
    others = tuple(f for f in found if f.index != chosen)
    return face, ImageFaces(found[chosen], others, face.embedding)


def image_faces(
    pipeline: FacePipeline, data: bytes, settings: Settings, index: int | None, image: str
) -> ImageFaces:
    """Decode one upload and pick its face; image errors name the image."""
    try:
        bgr = decode_image(data, max_pixels=settings.max_image_pixels, apply_exif_orientation=True)
    except ImageError as exc:
        status = 413 if exc.code == "image_too_large" else 422
        raise VerificationError(status, exc.code, f"{image}: {exc.message}", image=image) from exc
    return choose_face(pipeline.faces(bgr), index, image)[1]


def distances_to(
    probe: NDArray[np.float32], templates: NDArray[np.float32], metric: Metric
) -> NDArray[np.float64]:
    """The probe's distance to each template, in ``metric`` (as the index and ``eval verify`` compute it)."""
    diff = np.asarray(templates, dtype=np.float64) - np.asarray(probe, dtype=np.float64)[None, :]
    return from_squared_l2((diff * diff).sum(axis=1), metric)


def decide(distance: float, tau: float) -> Verdict:
    return Verdict(distance, tau, distance < tau)


def verify_images(
    pipeline: FacePipeline,
    source: bytes,
    target: bytes,
    settings: Settings,
    tau: float,
    *,
    source_face: int | None = None,
    target_face: int | None = None,
) -> PairResult:
    """Are the chosen faces of two images the same person, at the 1:1 τ?"""
    a = image_faces(pipeline, source, settings, source_face, "source")
    b = image_faces(pipeline, target, settings, target_face, "target")
    distance = float(distances_to(a.embedding, b.embedding[None, :], pipeline.profile.metric)[0])
    return PairResult(decide(distance, tau), a, b)


def verify_against(
    pipeline: FacePipeline,
    probe: bytes,
    template_ids: list[int],
    templates: NDArray[np.float32],
    *,
    settings: Settings,
    tau: float,
    face: int | None = None,
) -> PersonResult:
    """Is the probe's face the person whose templates these are (their nearest template, at the 1:1 τ)?"""
    if len(template_ids) == 0 or len(template_ids) != len(templates):
        raise ValueError(f"need one id per template, at least one: {len(template_ids)}, {len(templates)}")
    found = image_faces(pipeline, probe, settings, face, "image")
    d = distances_to(found.embedding, templates, pipeline.profile.metric)
    best = int(np.argmin(d))
    return PersonResult(decide(float(d[best]), tau), found, template_ids[best], len(template_ids))
