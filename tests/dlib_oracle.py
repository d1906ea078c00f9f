"""dlib's own full pipeline, the reference our outputs must equal. Test-only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np
from numpy.typing import NDArray


@dataclass
class DlibFace:
    box: tuple[int, int, int, int]
    score: float
    landmarks: NDArray[np.float64]
    embedding: NDArray[np.float64]


@lru_cache(maxsize=1)
def _models(src: str) -> tuple[object, object, object]:
    base = Path(src)
    return (
        base / "mmod_human_face_detector.dat",
        dlib.shape_predictor(str(base / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(base / "dlib_face_recognition_resnet_model_v1.dat")),
    )


@dataclass(frozen=True)
class CnnDetection:
    """One detection of dlib's cnn_face_detection_model_v1, as its mmod_rectangle reads."""

    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive)
    confidence: float

    @property
    def rect(self) -> dlib.rectangle:
        return dlib.rectangle(*self.box)


@lru_cache(maxsize=2)
def _cnn(dat: str) -> object:
    return dlib.cnn_face_detection_model_v1(dat)


_DETECTIONS: dict[tuple[str, str, tuple[int, ...], int], list[CnnDetection]] = {}


def cnn_detections(dat: Path, rgb: NDArray[np.uint8], upsample: int) -> list[CnnDetection]:
    """dlib's CNN detector (the weights in ``dat``) on this image, run once per image, weights and
    upsampling in a test session: the detector, landmark and pipeline tests all compare with it,
    and on a 2-core CPU it takes up to 30 s on a multi-megapixel photo. The real dlib every time
    the pair is new; the same answer again when it is not."""
    key = (str(dat), hashlib.sha256(rgb.tobytes()).hexdigest(), rgb.shape, upsample)
    if key not in _DETECTIONS:
        found = _cnn(str(dat))(rgb, upsample)  # type: ignore[operator]
        _DETECTIONS[key] = [
            CnnDetection((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
            for d in found
        ]
    return _DETECTIONS[key]


def lfw_sample(lfw_images: Path, n: int = 20) -> list[Path]:
    """The LFW images every dlib-equivalence test uses (so dlib's detector runs once on each)."""
    files = sorted(lfw_images.glob("*/*.jpg"))
    return files[:: max(1, len(files) // n)][:n]


def dlib_faces(source_dir: Path, rgb: NDArray[np.uint8], upsample: int) -> list[DlibFace]:
    """cnn_face_detection_model_v1 + shape_predictor + compute_face_descriptor, as dlib users run it."""
    _, predictor, encoder = _models(str(source_dir))
    out = []
    for det in cnn_detections(source_dir / "mmod_human_face_detector.dat", rgb, upsample):
        r = det.rect
        shape = predictor(rgb, r)  # type: ignore[operator]
        points = np.array(
            [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64
        )
        emb = np.array(encoder.compute_face_descriptor(rgb, shape))  # type: ignore[attr-defined]
        out.append(DlibFace(det.box, det.confidence, points, emb))
    return out


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of inclusive pixel rectangles."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)
