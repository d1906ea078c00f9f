"""dlib's own full pipeline, the reference our outputs must equal. Test-only."""

from __future__ import annotations

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
        dlib.cnn_face_detection_model_v1(str(base / "mmod_human_face_detector.dat")),
        dlib.shape_predictor(str(base / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(base / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def dlib_faces(source_dir: Path, rgb: NDArray[np.uint8], upsample: int) -> list[DlibFace]:
    """cnn_face_detection_model_v1 + shape_predictor + compute_face_descriptor, as dlib users run it."""
    detector, predictor, encoder = _models(str(source_dir))
    out = []
    for det in detector(rgb, upsample):  # type: ignore[operator]
        r = det.rect
        shape = predictor(rgb, r)  # type: ignore[operator]
        points = np.array(
            [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64
        )
        emb = np.array(encoder.compute_face_descriptor(rgb, shape))  # type: ignore[attr-defined]
        out.append(DlibFace((r.left(), r.top(), r.right(), r.bottom()), float(det.confidence), points, emb))
    return out


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of inclusive pixel rectangles."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)
