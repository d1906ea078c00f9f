"""Explain a decision: the occlusion map of an access event's face against the matched person.

The probe is the event's kept face snapshot (``event_snapshots``, the subject's best view, so
always the burst's subject even when others were in the frame); the reference is the person's
kept enrolment photo nearest to it in the profile's metric (the template the gallery matched was
made from one of them). CPU-heavy (about 64 encodings per encoder): run it in the inference pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session, sessionmaker

from app.gallery.metric import from_squared_l2
from app.settings import Settings
from app.store import explain_queries, queries, snapshot_queries
from app.vision.explain import (
    DEFAULT_GRID,
    DEFAULT_PATCH_FRACTION,
    AlignedFace,
    ExplainError,
    Explanation,
    largest_face,
    occlusion_map,
)
from app.vision.imageio import ImageError, decode_image
from app.vision.pipeline import FacePipeline


class ExplainEventError(Exception):
    """An event that cannot be explained: ``status`` and ``code`` for the API, text for the CLI."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EventPictures:
    """What the store keeps for one event: its face snapshot and the person's kept photos."""

    event_id: int
    person_id: int
    snapshot: bytes
    photos: list[bytes]


def event_pictures(session: Session, event_id: int) -> EventPictures:
    """The event's face snapshot and its person's kept enrolment photos, or why there are none."""
    event = queries.get_event(session, event_id)
    if event is None:
        raise ExplainEventError(404, "event_not_found", f"event {event_id} does not exist")
    if event.person_id is None:
        raise ExplainEventError(
            409, "no_person", f"event {event_id} names no person (reason {event.reason}): nothing to compare"
        )
    snapshot = snapshot_queries.snapshot_image(session, event_id, "face")
    if snapshot is None:
        raise ExplainEventError(
            409,
            "no_snapshot",
            f"event {event_id} kept no face snapshot (none was taken, or retention purged it)",
        )
    photos = [p.image for p in explain_queries.person_photos(session, event.person_id)]
    if not photos:
        raise ExplainEventError(
            409,
            "no_reference_photo",
            f"person {event.person_id} has no kept enrolment photo (FACEGATE_KEEP_ENROLMENT_PHOTOS was "
            "off when they enrolled, or the person was deleted)",
        )
    return EventPictures(event_id, event.person_id, snapshot, photos)


def decode_rgb(data: bytes, settings: Settings, what: str, status: int = 422) -> NDArray[np.uint8]:
    """Image bytes -> RGB (EXIF orientation applied, as enrolment does); ``status`` for a picture
    that cannot be read (409 for a stored one: the request is fine, the kept picture is not)."""
    try:
        bgr = decode_image(data, max_pixels=settings.max_image_pixels, apply_exif_orientation=True)
    except ImageError as exc:
        raise ExplainEventError(status, exc.code, f"{what}: {exc.message}") from exc
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def _face(pipeline: FacePipeline, rgb: NDArray[np.uint8], what: str) -> AlignedFace:
    try:
        return largest_face(pipeline, rgb, what)
    except ExplainError as exc:
        raise ExplainEventError(409, exc.code, exc.message) from exc


def nearest_reference(
    pipeline: FacePipeline, probe: AlignedFace, photos: list[NDArray[np.uint8]]
) -> AlignedFace:
    """The photo face nearest to the probe in the profile's metric (photos with no face skipped)."""
    best: tuple[float, AlignedFace] | None = None
    for rgb in photos:
        try:
            face = largest_face(pipeline, rgb, "reference")
        except ExplainError:
            continue
        diff = face.face.embedding.astype(np.float64) - probe.face.embedding.astype(np.float64)
        distance = float(from_squared_l2(np.array([diff @ diff]), pipeline.profile.metric)[0])
        if best is None or distance < best[0]:
            best = (distance, face)
    if best is None:
        raise ExplainEventError(409, "no_face", "no face was found in any kept enrolment photo")
    return best[1]


def explain_event(
    session_factory: sessionmaker[Session],
    pipeline: FacePipeline,
    settings: Settings,
    event_id: int,
    *,
    grid: int = DEFAULT_GRID,
    patch_fraction: float = DEFAULT_PATCH_FRACTION,
) -> Explanation:
    """The occlusion map of event ``event_id``'s face against its person's nearest kept photo."""
    with session_factory() as session:
        pictures = event_pictures(session, event_id)
    probe = _face(pipeline, decode_rgb(pictures.snapshot, settings, "event snapshot", 409), "event snapshot")
    photos = [decode_rgb(p, settings, "enrolment photo", 409) for p in pictures.photos]
    reference = nearest_reference(pipeline, probe, photos)
    occlusion = occlusion_map(
        pipeline, probe, reference.face.embedding, grid=grid, patch_fraction=patch_fraction
    )
    return Explanation(probe, reference, occlusion, pipeline.profile.name, pipeline.profile.metric)
