"""SFace's 112x112 face chip from YuNet's five points, exactly as cv2.FaceRecognizerSF.alignCrop.

OpenCV (objdetect/src/face_recognize.cpp) estimates a similarity transform from the five points
to ArcFace's 112x112 template by Umeyama's method, with its own arithmetic: points, means and the
products of demeaned coordinates in float32, sums and the 2x2 SVD in double, and a fixed
destination mean (56.0262, 71.9008) that is not quite the template's. The chip is then
``cv2.warpAffine(img, M, (112, 112), INTER_LINEAR)`` with a constant zero border. Every step is
reproduced here so the chip, and hence the embedding, equals OpenCV's.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

CHIP_SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
TEMPLATE_MEAN = np.array([56.0262, 71.9008], dtype=np.float32)
_FLT_MIN = float(np.finfo(np.float32).tiny)


def _mean5(v: NDArray[np.float32]) -> np.float32:
    """(v0 + v1 + v2 + v3 + v4) / 5 in float32, summed left to right as the C++ expression."""
    total = np.float32(0.0)
    for x in v:
        total = np.float32(total + x)
    return np.float32(total / np.float32(5.0))


def _mean_of_products(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """sum(float(a_i * b_i)) in double, / 5: OpenCV's A and variance accumulations."""
    acc = 0.0
    for p in (a * b).astype(np.float32):
        acc += float(p)
    return acc / 5.0


def similarity_matrix(points5: ArrayLike) -> NDArray[np.float64]:
    """The 2x3 matrix cv2.FaceRecognizerSF's getSimilarityTransformMatrix builds for these points."""
    src = np.asarray(points5, dtype=np.float32).reshape(5, 2)
    src_mean = np.array([_mean5(src[:, 0]), _mean5(src[:, 1])], dtype=np.float32)
    src_d = (src - src_mean).astype(np.float32)
    dst_d = (TEMPLATE - TEMPLATE_MEAN).astype(np.float32)
    a = np.array(
        [
            [_mean_of_products(dst_d[:, 0], src_d[:, 0]), _mean_of_products(dst_d[:, 0], src_d[:, 1])],
            [_mean_of_products(dst_d[:, 1], src_d[:, 0]), _mean_of_products(dst_d[:, 1], src_d[:, 1])],
        ]
    )
    d = np.array([1.0, 1.0])
    if a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0] < 0:
        d[1] = -1.0
    u, s, vt = np.linalg.svd(a)
    tol = max(s[0], s[1]) * 2 * _FLT_MIN
    rank = int(s[0] > tol) + int(s[1] > tol)
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        t = u @ vt
    elif rank == 1:
        t = u @ np.diag([d[0], -1.0]) @ vt
    else:
        t = u @ np.diag(d) @ vt
    var = _mean_of_products(src_d[:, 0], src_d[:, 0]) + _mean_of_products(src_d[:, 1], src_d[:, 1])
    scale = 1.0 / var * (s[0] * d[0] + s[1] * d[1])
    mean64 = src_mean.astype(np.float64)
    ts = t @ mean64
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = t * scale
    m[:, 2] = TEMPLATE_MEAN.astype(np.float64) - scale * ts
    return m


def sface_chip(rgb: NDArray[np.uint8], points5: ArrayLike) -> NDArray[np.uint8]:
    """The 112x112x3 chip of ``rgb`` (any channel order is kept) for YuNet's five (x, y) points."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    m = similarity_matrix(points5)
    chip = cv2.warpAffine(np.ascontiguousarray(rgb), m, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR)
    return np.asarray(chip, dtype=np.uint8)


def sface_chips(rgb: NDArray[np.uint8], points: ArrayLike) -> NDArray[np.uint8]:
    """Chips [N, 112, 112, 3] for N faces' points [N, 5, 2]."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    if len(pts) == 0:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    return np.stack([sface_chip(rgb, p) for p in pts])
