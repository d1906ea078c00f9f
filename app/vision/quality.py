"""Face quality measures used to refuse poor enrolment photos and poor door frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from app.vision.pipeline import Face


@dataclass(frozen=True)
class FaceQuality:
    face_width_px: int  # detector box width in the original image
    detector_score: float
    sharpness: float  # variance of the Laplacian over the central chip; low = blurred

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def sharpness(chip: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian on the inner face region of an aligned chip.

    Measured on the chip, not the photo, so it is comparable across image sizes; the border
    (background, hair) is cut away so a sharp background cannot hide a blurred face.
    """
    h, w = chip.shape[:2]
    inner = chip[h // 5 : h - h // 10, w // 5 : w - w // 5]
    grey = cv2.cvtColor(inner, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_quality(face: Face) -> FaceQuality:
    return FaceQuality(
        face_width_px=face.width, detector_score=float(face.score), sharpness=sharpness(face.chip)
    )
