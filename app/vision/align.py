"""Face alignment: dlib's 150x150 face chip, reproduced bit for bit.

``extract_chip`` equals ``dlib.get_face_chip(img, shape, size, padding)``: dlib's
``get_face_chip_details`` (a similarity transform from a fixed 5-point template to the
landmarks) followed by ``extract_image_chip`` (an image pyramid for large faces, then
bilinear sampling with a truncating cast, and 0 where a sample's 2x2 neighbourhood leaves
the image).

Why not ``cv2.warpAffine``: the encoder is sensitive to the exact pixels (up to 0.09 in
descriptor distance on large faces, where dlib first blurs with its pyramid). And because the
cast truncates, a sample whose value lands on an integer depends on the last bits of the
sampling transform. dlib builds that transform through its own SVD, pseudo-inverse and
double-precision expression order; we perform the same operations in the same order (Python
floats are IEEE doubles, and dlib's build uses no FMA), so every transform is bit-identical
(checked against dlib's ``chip_details``) and equality is by construction rather than luck.
The per-pixel work is vectorised numpy doing the same float64 operations element-wise.

The small exact linear-algebra helpers here (``dlib_svd``, ``find_similarity_transform``,
``find_affine_transform``) are also used by the landmark predictor.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

Mat2 = tuple[tuple[float, float], tuple[float, float]]
Vec2 = tuple[float, float]
Points = Sequence[Sequence[float]]

# dlib's 5-point face template (get_face_chip_details), in dlib's part order.
FACE_TEMPLATE_5: tuple[tuple[float, float], ...] = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

_EPS = sys.float_info.epsilon  # std::numeric_limits<double>::epsilon()
_TINY = sys.float_info.min  # std::numeric_limits<double>::min()


# ----------------------------------------------------------------------------------------
# dlib's linear algebra, operation for operation


def dlib_svd(a: list[list[float]]) -> tuple[list[list[float]], list[float], list[list[float]]]:
    """dlib's ``svd4`` (matrix_la.h, the non-LAPACK build) with a skinny U and V: a = u diag(q) v^T.

    A literal port of the Handbook (Golub-Reinsch) routine dlib uses, gotos turned into
    loops, so that the rounding of every step is dlib's. Only ever called on 2x2 and 3x3.
    """
    m, n = len(a), len(a[0])
    if m < n:
        raise ValueError("dlib_svd needs rows >= columns")
    sqrt = math.sqrt
    eps = _EPS
    tol = _TINY / eps
    e = [0.0] * n
    q = [0.0] * n
    u = [list(map(float, row)) for row in a]
    v = [[0.0] * n for _ in range(n)]

    # Householder's reduction to bidiagonal form.
    g = x = 0.0
    l = 0  # noqa: E741 - dlib's names, kept to ease comparison with the source
    for i in range(n):
        e[i] = g
        s = 0.0
        l = i + 1  # noqa: E741
        for j in range(i, m):
            s += u[j][i] * u[j][i]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i]
            g = sqrt(s) if f < 0 else -sqrt(s)
            h = f * g - s
            u[i][i] = f - g
            for j in range(l, n):
                s = 0.0
                for k in range(i, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
        q[i] = g
        s = 0.0
        for j in range(l, n):
            s += u[i][j] * u[i][j]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i + 1]
            g = sqrt(s) if f < 0 else -sqrt(s)
            h = f * g - s
            u[i][i + 1] = f - g
            for j in range(l, n):
                e[j] = u[i][j] / h
            for j in range(l, m):
                s = 0.0
                for k in range(l, n):
                    s += u[j][k] * u[i][k]
                for k in range(l, n):
                    u[j][k] += s * e[k]
        y = abs(q[i]) + abs(e[i])
        x = max(x, y)

    # Accumulation of right-hand transformations.
    for i in range(n - 1, -1, -1):
        if g != 0.0:
            h = u[i][i + 1] * g
            for j in range(l, n):
                v[j][i] = u[i][j] / h
            for j in range(l, n):
                s = 0.0
                for k in range(l, n):
                    s += u[i][k] * v[k][j]
                for k in range(l, n):
                    v[k][j] += s * v[k][i]
        for j in range(l, n):
            v[i][j] = v[j][i] = 0.0
        v[i][i] = 1.0
        g = e[i]
        l = i  # noqa: E741

    # Accumulation of left-hand transformations (skinny U: m x n).
    for i in range(n - 1, -1, -1):
        l = i + 1  # noqa: E741
        g = q[i]
        for j in range(l, n):
            u[i][j] = 0.0
        if g != 0.0:
            h = u[i][i] * g
            for j in range(l, n):
                s = 0.0
                for k in range(l, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
            for j in range(i, m):
                u[j][i] /= g
        else:
            for j in range(i, m):
                u[j][i] = 0.0
        u[i][i] += 1.0

    # Diagonalization of the bidiagonal form.
    eps *= x
    for k in range(n - 1, -1, -1):
        iterations = 0
        while True:  # test_f_splitting
            cancel = False
            for l in range(k, -1, -1):  # noqa: E741
                if abs(e[l]) <= eps:
                    break
                if abs(q[l - 1]) <= eps:
                    cancel = True
                    break
            if cancel:  # cancellation of e(l) if l > 0
                c = 0.0
                s = 1.0
                l1 = l - 1
                for i in range(l, k + 1):
                    f = s * e[i]
                    e[i] *= c
                    if abs(f) <= eps:
                        break
                    g = q[i]
                    h = q[i] = sqrt(f * f + g * g)
                    c = g / h
                    s = -f / h
                    for j in range(m):
                        y = u[j][l1]
                        z = u[j][i]
                        u[j][l1] = y * c + z * s
                        u[j][i] = -y * s + z * c
            # test_f_convergence
            z = q[k]
            if l == k:
                if z < 0.0:  # q(k) is made non-negative
                    q[k] = -z
                    for j in range(n):
                        v[j][k] = -v[j][k]
                break
            iterations += 1
            if iterations > 300:
                raise ArithmeticError("dlib_svd did not converge")
            # Shift from the bottom 2x2 minor.
            x = q[l]
            y = q[k - 1]
            g = e[k - 1]
            h = e[k]
            f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y)
            g = sqrt(f * f + 1.0)
            f = ((x - z) * (x + z) + h * (y / ((f - g) if f < 0 else (f + g)) - h)) / x
            # Next QR transformation.
            c = s = 1.0
            for i in range(l + 1, k + 1):
                g = e[i]
                y = q[i]
                h = s * g
                g *= c
                e[i - 1] = z = sqrt(f * f + h * h)
                c = f / z
                s = h / z
                f = x * c + g * s
                g = -x * s + g * c
                h = y * s
                y *= c
                for j in range(n):
                    x = v[j][i - 1]
                    z = v[j][i]
                    v[j][i - 1] = x * c + z * s
                    v[j][i] = -x * s + z * c
                q[i - 1] = z = sqrt(f * f + h * h)
                if z != 0:
                    c = f / z
                    s = h / z
                f = c * g + s * y
                x = -s * g + c * y
                for j in range(m):
                    y = u[j][i - 1]
                    z = u[j][i]
                    u[j][i - 1] = y * c + z * s
                    u[j][i] = -y * s + z * c
            e[l] = 0.0
            e[k] = f
            q[k] = x
    return u, q, v


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """dlib's small-matrix product: each element summed left to right, starting from the first term."""
    out = []
    for row in a:
        out_row = []
        for c in range(len(b[0])):
            acc = row[0] * b[0][c]
            for k in range(1, len(b)):
                acc += row[k] * b[k][c]
            out_row.append(acc)
        out.append(out_row)
    return out


@lru_cache(maxsize=32)
def _pinv_of_points(points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, ...], ...]:
    """dlib's ``pinv(P)`` for P = [x; y; 1] built from ``points`` (cached: callers reuse few)."""
    p = [[pt[0] for pt in points], [pt[1] for pt in points], [1.0] * len(points)]
    if len(points) > 3:  # pinv(m) with more columns than rows works on trans(m)
        raise NotImplementedError("only 3 points are needed here")
    u, w, v = dlib_svd(p)
    eps = _EPS * max(len(p), len(p[0])) * max(w)
    rw = [0.0 if (not (x >= eps or x <= -eps)) else x for x in w]  # round_zeros
    rw = [1.0 / x if x != 0 else 0.0 for x in rw]  # reciprocal
    vs = [[v[i][j] * rw[j] for j in range(len(rw))] for i in range(len(v))]  # scale_columns
    ut = [list(col) for col in zip(*u, strict=True)]
    return tuple(tuple(row) for row in _matmul(vs, ut))


def find_affine_transform(src: Points, dst: Points) -> tuple[Mat2, Vec2]:
    """dlib's ``find_affine_transform`` (3 point pairs): ``m = Q * pinv(P)``, exactly as dlib rounds it."""
    pinv = [list(row) for row in _pinv_of_points(tuple((float(x), float(y)) for x, y in src))]
    q = [[float(p[0]) for p in dst], [float(p[1]) for p in dst]]
    m = _matmul(q, pinv)
    return ((m[0][0], m[0][1]), (m[1][0], m[1][1])), (m[0][2], m[1][2])


def find_similarity_transform(src: Points, dst: Points) -> tuple[Mat2, Vec2]:
    """dlib's ``find_similarity_transform`` (Umeyama, eqs. 34-43) with dlib's SVD and rounding order."""
    n = len(src)
    mfx = mfy = mtx = mty = 0.0
    for (fx, fy), (tx, ty) in zip(src, dst, strict=True):
        mfx += fx
        mfy += fy
        mtx += tx
        mty += ty
    nf = float(n)
    mfx /= nf
    mfy /= nf
    mtx /= nf
    mty /= nf
    sigma_from = 0.0
    c00 = c01 = c10 = c11 = 0.0
    for (fx, fy), (tx, ty) in zip(src, dst, strict=True):
        dfx, dfy, dtx, dty = fx - mfx, fy - mfy, tx - mtx, ty - mty
        sigma_from += dfx * dfx + dfy * dfy
        c00 += dtx * dfx
        c01 += dtx * dfy
        c10 += dty * dfx
        c11 += dty * dfy
    sigma_from /= nf
    inv_n = 1.0 / nf  # dlib: matrix /= scalar multiplies by the reciprocal
    cov = [[c00 * inv_n, c01 * inv_n], [c10 * inv_n, c11 * inv_n]]
    u, d, v = dlib_svd(cov)

    def det2(a: list[list[float]]) -> float:
        return a[0][0] * a[1][1] - a[0][1] * a[1][0]

    s = [[1.0, 0.0], [0.0, 1.0]]
    det_cov = det2(cov)
    if det_cov < 0 or (det_cov == 0 and det2(u) * det2(v) < 0):
        if d[1] < d[0]:
            s[1][1] = -1.0
        else:
            s[0][0] = -1.0
    vt = [[v[0][0], v[1][0]], [v[0][1], v[1][1]]]
    r = _matmul(_matmul(u, s), vt)
    c = 1.0
    if sigma_from != 0:
        dm = [[d[0], 0.0], [0.0, d[1]]]
        ds = _matmul(dm, s)
        c = 1.0 / sigma_from * (0.0 + ds[0][0] + ds[1][1])  # trace() = sum() from 0
    # t = mean_to - c*r*mean_from: dlib moves the scalar outside the product.
    tx = mtx - (r[0][0] * mfx + r[0][1] * mfy) * c
    ty = mty - (r[1][0] * mfx + r[1][1] * mfy) * c
    return ((r[0][0] * c, r[0][1] * c), (r[1][0] * c, r[1][1] * c)), (tx, ty)


def lround(x: float) -> int:
    """C ``std::lround``: nearest integer, halves away from zero (no floor(x + 0.5) slip)."""
    if x < 0:
        return -lround(-x)
    f = math.floor(x)
    return int(f) + (1 if x - f >= 0.5 else 0)


# ----------------------------------------------------------------------------------------
# get_face_chip_details


@dataclass(frozen=True)
class ChipDetails:
    """dlib::chip_details: a (rotated) rectangle of the input image and the chip size."""

    rect: tuple[float, float, float, float]  # drectangle left, top, right, bottom
    angle: float
    rows: int
    cols: int


def face_chip_details(
    landmarks: NDArray[np.floating] | NDArray[np.integer], size: int = 150, padding: float = 0.25
) -> ChipDetails:
    """dlib ``get_face_chip_details`` for a 5-point shape, as ``dlib.get_face_chip`` calls it.

    ``dlib.get_face_chip`` takes ``padding`` as a C float (the Python ``get_face_chip_details``
    takes a double): we round it to float32 too, which matters for paddings such as 0.2 and
    not for the default 0.25.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks shaped (5, 2), got {pts.shape}")
    if size <= 0:
        raise ValueError("size must be positive")
    pad = float(np.float32(padding))
    if not pad >= 0:
        raise ValueError("padding must be >= 0")
    # (padding + p) / (2 padding + 1) is a matrix expression in dlib: the division becomes
    # a multiplication by the reciprocal.
    k = 1.0 / (2 * pad + 1)
    fsize = float(size)
    src = [((pad + px) * k * fsize, (pad + py) * k * fsize) for px, py in FACE_TEMPLATE_5]
    dst = [(float(x), float(y)) for x, y in pts]
    ((m00, m01), (m10, m11)), b = find_similarity_transform(src, dst)
    angle = math.atan2(m10, m00)
    scale = math.sqrt(m00 * m00 + m10 * m10)
    half = fsize / 2.0
    cx = (m00 * half + m01 * half) + b[0]
    cy = (m10 * half + m11 * half) + b[1]
    w = fsize * scale - 1  # centered_drect: width--, height--
    h = fsize * scale - 1
    return ChipDetails((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), angle, size, size)


# ----------------------------------------------------------------------------------------
# extract_image_chip


def _rect_down(r: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """pyramid_down<2>::rect_down: p / 2 - (1.25, 0.75) on both corners."""
    return (r[0] / 2.0 - 1.25, r[1] / 2.0 - 0.75, r[2] / 2.0 - 1.25, r[3] / 2.0 - 0.75)


def _drect_area(r: tuple[float, float, float, float]) -> float:
    if r[1] > r[3] or r[0] > r[2]:
        return 0.0
    return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def _rotate(center: Vec2, p: Vec2, sin_a: float, cos_a: float) -> Vec2:
    """dlib rotate_point: point_rotator(p - center) + center."""
    dx, dy = p[0] - center[0], p[1] - center[1]
    return (cos_a * dx - sin_a * dy + center[0], sin_a * dx + cos_a * dy + center[1])


def _rotated_corners(r: tuple[float, float, float, float], angle: float) -> list[Vec2]:
    """tl, tr, bl, br of ``r`` rotated by ``angle`` about its center."""
    center = ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0)
    sin_a, cos_a = math.sin(angle), math.cos(angle)
    corners = [(r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3])]
    return [_rotate(center, p, sin_a, cos_a) for p in corners]


_PYR_KERNEL = np.array([1, 4, 6, 4, 1], dtype=np.float32)


def pyramid_down2(img: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """dlib ``pyramid_down<2>``: 5x5 [1 4 6 4 1]^2 / 256 filter, keep every other row and column.

    Output pixel (r, c) is centred on input (2r + 2, 2c + 2) and sizes are (n - 3) // 2. dlib
    sums in integers and divides (truncating) at the end; OpenCV's separable filter in float32
    gives the same sums exactly (they stay below 2^16 < 2^24), and every output we keep has its
    whole 5x5 support inside the image, so the border mode never matters.
    """
    nr, nc = img.shape[:2]
    if nr <= 8 or nc <= 8:
        return np.zeros((0, 0, *img.shape[2:]), dtype=np.uint8)
    out_r = (nr - 3) // 2
    out_c = (nc - 3) // 2
    sums = cv2.sepFilter2D(np.ascontiguousarray(img), cv2.CV_32F, _PYR_KERNEL, _PYR_KERNEL)
    kept = np.asarray(sums).reshape(img.shape)[2 : 2 + 2 * out_r : 2, 2 : 2 + 2 * out_c : 2]
    out: NDArray[np.uint8] = (kept.astype(np.int32) >> 8).astype(np.uint8)
    return out


class _Workspace:
    """Reusable float64 buffers for one chip size.

    A 150x150x3 chip needs a dozen half-megabyte temporaries; fresh ones cost more in page
    faults (glibc hands such blocks back to the OS on free) than the arithmetic itself, so each
    thread keeps its own set.
    """

    def __init__(self, rows: int, cols: int, chans: int) -> None:
        n = rows * cols
        self.col = np.tile(np.arange(cols, dtype=np.float64), rows)  # c of output pixel (r, c)
        self.row = np.repeat(np.arange(rows, dtype=np.float64), cols)
        self.x, self.y, self.left, self.top, self.t1, self.t2 = (np.empty(n) for _ in range(6))
        self.idx = np.empty(n, dtype=np.intp)
        self.inside = np.empty(n, dtype=bool)
        self.b1 = np.empty(n, dtype=bool)
        self.upper, self.lower, self.tmp = (np.empty((chans, n)) for _ in range(3))
        self.planes = np.empty((chans, n), dtype=np.uint8)
        self.src = np.empty(0)


_workspaces = threading.local()


def _workspace(rows: int, cols: int, chans: int) -> _Workspace:
    cache: dict[tuple[int, int, int], _Workspace] | None = getattr(_workspaces, "cache", None)
    if cache is None:
        cache = _workspaces.cache = {}
    key = (rows, cols, chans)
    ws = cache.get(key)
    if ws is None:
        if len(cache) >= 4:  # a few chip sizes per thread at most
            cache.clear()
        ws = cache[key] = _Workspace(rows, cols, chans)
    return ws


def _bilinear(img: NDArray[np.uint8], trns: tuple[Mat2, Vec2], rows: int, cols: int) -> NDArray[np.uint8]:
    """dlib transform_image + interpolate_bilinear + black_background, element-wise in float64.

    Output pixel (r, c) samples ``m * (c, r) + b``; per channel
    ``(1-tb) * ((1-lr) * tl + lr * tr) + tb * ((1-lr) * bl + lr * br)`` in dlib's operation
    order, then ``static_cast<unsigned char>`` (truncation); 0 where the 2x2 neighbourhood is
    not inside ``img``. Written with ``out=`` into per-thread buffers (see ``_Workspace``).
    """
    (m00, m01), (m10, m11) = trns[0]
    b0, b1 = trns[1]
    nr, nc = img.shape[:2]
    chans = img.shape[2] if img.ndim == 3 else 1
    ws = _workspace(rows, cols, chans)
    x, y, left, top, t1, t2 = ws.x, ws.y, ws.left, ws.top, ws.t1, ws.t2
    np.multiply(ws.col, m00, out=x)  # point_transform_affine: (m00*c + m01*r) + b0
    np.multiply(ws.row, m01, out=t1)
    np.add(x, t1, out=x)
    np.add(x, b0, out=x)
    np.multiply(ws.col, m10, out=y)
    np.multiply(ws.row, m11, out=t1)
    np.add(y, t1, out=y)
    np.add(y, b1, out=y)
    np.floor(x, out=left)
    np.floor(y, out=top)
    inside, b = ws.inside, ws.b1
    np.greater_equal(left, 0, out=inside)
    np.greater_equal(top, 0, out=b)
    inside &= b
    np.less(left, nc - 1, out=b)  # left + 1 < nc
    inside &= b
    np.less(top, nr - 1, out=b)
    inside &= b
    if not inside.any():
        return np.zeros((rows, cols, chans) if img.ndim == 3 else (rows, cols), dtype=np.uint8)

    # Channel planes of the (cropped) source, so the per-pixel weights broadcast along rows.
    size = nr * nc
    if ws.src.size < chans * size:
        ws.src = np.empty(chans * size)
    src = ws.src[: chans * size].reshape(chans, size)
    np.copyto(src.reshape(chans, nr, nc), img.reshape(nr, nc, chans).transpose(2, 0, 1))
    idx = ws.idx
    np.multiply(top, nc, out=t1)
    np.add(t1, left, out=t1)
    np.multiply(t1, inside, out=t1)  # outside samples read pixel 0, then get zeroed
    np.copyto(idx, t1, casting="unsafe")

    lr, tb = t1, t2  # lr = x - left, tb = y - top; t1 (the index) is no longer needed
    np.subtract(x, left, out=lr)
    np.subtract(y, top, out=tb)
    one_lr = x  # x is no longer needed either
    np.subtract(1, lr, out=one_lr)
    upper, lower, tmp = ws.upper, ws.lower, ws.tmp
    np.take(src, idx, axis=1, out=upper, mode="clip")  # tl
    idx += 1
    np.take(src, idx, axis=1, out=tmp, mode="clip")  # tr
    upper *= one_lr
    tmp *= lr
    upper += tmp
    idx += nc - 1
    np.take(src, idx, axis=1, out=lower, mode="clip")  # bl
    idx += 1
    np.take(src, idx, axis=1, out=tmp, mode="clip")  # br
    lower *= one_lr
    tmp *= lr
    lower += tmp
    np.subtract(1, tb, out=y)
    upper *= y
    lower *= tb
    upper += lower
    upper *= inside  # black background (exact: v * 1.0 == v and v * 0.0 == 0 for finite v >= 0)
    planes = ws.planes
    np.copyto(planes, upper, casting="unsafe")  # static_cast<unsigned char>: truncation, v in [0, 256)
    if img.ndim == 2:
        gray: NDArray[np.uint8] = planes[0].reshape(rows, cols).copy()
        return gray
    merged = cv2.merge([p.reshape(rows, cols) for p in planes])
    return np.asarray(merged, dtype=np.uint8).reshape(rows, cols, chans)


def extract_image_chip(img: NDArray[np.uint8], details: ChipDetails) -> NDArray[np.uint8]:
    """dlib ``extract_image_chip(img, details, chip)`` with bilinear interpolation."""
    rect, angle, rows, cols = details.rect, details.angle, details.rows, details.cols
    nr, nc = img.shape[:2]
    if angle == 0 and rows == rect[3] - rect[1] + 1 and cols == rect[2] - rect[0] + 1:
        # No rotation or scaling: dlib copies the rectangle, rounded with lround, as it is.
        return _basic_chip(img, (lround(rect[0]), lround(rect[1]), lround(rect[2]), lround(rect[3])))

    size = rows * cols
    # Pyramid depth, and the 2-pixel border per level the crop keeps for the filter.
    depth = 0
    grow = 2.0
    r = _rect_down(rect)
    while _drect_area(r) > size:
        r = _rect_down(r)
        depth += 1
        grow = grow * 2 + 2
    corners = _rotated_corners(rect, angle)
    xs = [p[0] for p in corners]
    ys = [p[1] for p in corners]
    grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    clipped = (max(grown[0], 0.0), max(grown[1], 0.0), min(grown[2], nc - 1.0), min(grown[3], nr - 1.0))
    bl, bt, br, bb = (lround(v) for v in clipped)  # drectangle -> rectangle
    if bt > bb or bl > br:
        bl, bt, br, bb = 0, 0, -1, -1  # empty: the chip is all background
    sub = img[bt : bb + 1, bl : br + 1]

    # The pyramid level whose scale is closest above the chip size (-1: the crop itself).
    level = -1
    r = (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    while _drect_area(_rect_down(r)) > size:
        level += 1
        r = _rect_down(r)
    source = np.ascontiguousarray(sub)
    for _ in range(level + 1):
        source = pyramid_down2(source)

    tl, tr, blc, _ = _rotated_corners(r, angle)
    chip_corners = [(0.0, 0.0), (float(cols - 1), 0.0), (0.0, float(rows - 1))]
    trns = find_affine_transform(chip_corners, [tl, tr, blc])
    return _bilinear(source, trns, rows, cols)


def _basic_chip(img: NDArray[np.uint8], rect: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    """dlib basic_extract_image_chip: a plain crop of the (rounded) rectangle, 0 outside the image."""
    left, top, right, bottom = rect
    chip = np.zeros((max(bottom - top + 1, 0), max(right - left + 1, 0), *img.shape[2:]), dtype=np.uint8)
    nr, nc = img.shape[:2]
    il, it, ir, ib = max(left, 0), max(top, 0), min(right, nc - 1), min(bottom, nr - 1)
    if il <= ir and it <= ib:
        chip[it - top : ib - top + 1, il - left : ir - left + 1] = img[it : ib + 1, il : ir + 1]
    return chip


def extract_chip(
    rgb: NDArray[np.uint8],
    landmarks: NDArray[np.floating] | NDArray[np.integer],
    size: int = 150,
    padding: float = 0.25,
) -> NDArray[np.uint8]:
    """The aligned face chip, equal to ``dlib.get_face_chip(rgb, shape, size, padding)``.

    ``landmarks`` are dlib's 5 points (5, 2) as (x, y), e.g. ``LandmarkPredictor.predict``.
    """
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3):
        raise ValueError("expected a uint8 image shaped (H, W, 3) or (H, W)")
    return extract_image_chip(rgb, face_chip_details(landmarks, size, padding))
