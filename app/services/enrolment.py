"""Enrolment: one photo in, one face template out, or a refusal a person can act on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from app.gallery.index import FaceIndex
from app.settings import Settings
from app.vision.imageio import decode_image
from app.vision.pipeline import Face, FacePipeline
from app.vision.quality import FaceQuality, face_quality


class EnrolmentRefusedError(Exception):
    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class EnrolCandidate:
    face: Face
    quality: FaceQuality
    image_sha256: str
    thumbnail: bytes | None


def analyse_photo(
    pipeline: FacePipeline, data: bytes, settings: Settings, *, reencoding: bool = False
) -> EnrolCandidate:
    """Decode, find exactly one usable face, check its quality. CPU-heavy: call off the event loop.

    ``reencoding``: the photo was accepted once, by another profile; the size and sharpness gates
    are not applied again (another detector's box and chip measure a little differently), but the
    face must still be the only one, so that a template never goes to the wrong person.
    """
    bgr = decode_image(data, max_pixels=settings.max_image_pixels, apply_exif_orientation=True)
    faces = pipeline.faces(bgr)
    if not faces:
        raise EnrolmentRefusedError(
            "no_face", "no face was found in the photo; use a well-lit, frontal photo of one person"
        )
    # Faces far too small to enrol (people in the background) do not count against the photo.
    usable = [f for f in faces if f.width >= settings.enrol_min_face_px]
    if reencoding and not usable:
        usable = [max(faces, key=lambda f: f.width)]
    if not usable:
        widest = max(f.width for f in faces)
        raise EnrolmentRefusedError(
            "face_too_small",
            f"the face is {widest} pixels wide; enrolment needs at least {settings.enrol_min_face_px}: "
            "use a closer or higher-resolution photo",
            face_width_px=widest,
        )
    if len(usable) > 1:
        raise EnrolmentRefusedError(
            "multiple_faces",
            f"the photo shows {len(usable)} faces; crop it to the one person being enrolled",
            faces=len(usable),
        )
    face = usable[0]
    quality = face_quality(face)
    if quality.sharpness < settings.enrol_min_sharpness and not reencoding:
        raise EnrolmentRefusedError(
            "low_quality",
            f"the face is too blurred (sharpness {quality.sharpness:.1f}, "
            f"needs {settings.enrol_min_sharpness:.1f}); "
            "use a sharp, well-focused photo",
            sharpness=round(quality.sharpness, 2),
        )
    thumbnail = None
    if settings.store_thumbnails:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(face.chip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
        )
        thumbnail = buf.tobytes() if ok else None
    return EnrolCandidate(face, quality, hashlib.sha256(data).hexdigest(), thumbnail)


def nearest_other_person(index: FaceIndex, embedding: np.ndarray, person_id: int) -> tuple[int, float] | None:
    """The enrolled person (other than ``person_id``) nearest to this face, with the distance."""
    hits = index.search_people(embedding[None, :].astype(np.float32), k_people=2)[0]
    others = [h for h in hits if h.person_id != person_id]
    if not others:
        return None
    best = min(others, key=lambda h: h.distance)
    return best.person_id, best.distance
