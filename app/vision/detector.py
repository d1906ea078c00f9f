"""Face detection with dlib's MMOD CNN, run through ONNX Runtime, reproducing dlib exactly.

dlib's ``cnn_face_detection_model_v1(img, upsample)`` does, in order:

1. ``upsample`` times ``pyramid_up`` (2x bilinear, ``pyramid_down<2>`` geometry) on the uint8 image;
2. ``input_rgb_image_pyramid<pyramid_down<6>>``: normalize to ``(rgb - mean) / 256`` and pack the
   image and its 5/6, 25/36, ... downscaled copies into one zero-padded tiled image, each level
   resized from the previous level's floats with align-corners bilinear interpolation;
3. the fully convolutional network (the ONNX model);
4. ``loss_mmod::to_label``: every score > 0 is a window centred on its input-tensor point,
   mapped back through its pyramid level, rounded to an integer rectangle, sorted by score,
   then greedy non-maximum suppression;
5. boxes mapped back through the ``pyramid_up`` steps and rounded again.

Each step below follows the dlib source it names. The constants dlib stores in the model
file (mean, window, NMS thresholds) or implies by the network (stride and offset of the
score map) come from the manifest written by ``models.convert_detector``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

Box = tuple[int, int, int, int]


class InferenceSessionLike(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the detector uses."""

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any]) -> Sequence[Any]: ...


@dataclass(frozen=True)
class Detection:
    box: Box  # left, top, right, bottom, inclusive, dlib's convention
    score: float


@dataclass(frozen=True)
class DetectorConfig:
    """What the runtime needs to know about the detector; see ``models.convert_detector``."""

    input_name: str
    output_name: str
    mean_rgb: tuple[float, float, float]
    window: tuple[int, int]  # width, height
    stride: int  # score (c, r) -> input tensor point (stride * c + offset, stride * r + offset)
    offset: int
    threshold: float
    min_input_size: int  # smaller tiled images have no score map
    nms_iou: float
    nms_percent_covered: float
    pyramid_n: int  # pyramid_down<N>: each level is (N - 1) / N of the previous one
    padding: int
    outer_padding: int
    min_level_height: int

    @classmethod
    def from_manifest(cls, m: Mapping[str, Any]) -> DetectorConfig:
        num, den = (int(v) for v in str(m["pyramid"]["downsample"]).split("/"))
        if num != den - 1 or den < 2:
            raise ValueError(f"pyramid downsample {m['pyramid']['downsample']!r} is not (N-1)/N")
        mean = [float(v) for v in m["input"]["mean_rgb"]]
        if len(mean) != 3:
            raise ValueError(f"mean_rgb needs 3 values, got {mean}")
        return cls(
            input_name=str(m["input"].get("name", "input")),
            output_name=str(m["output"].get("name", "scores")),
            mean_rgb=(mean[0], mean[1], mean[2]),
            window=(int(m["window"][0]), int(m["window"][1])),
            stride=int(m["output"]["stride"]),
            offset=int(m["output"]["offset"]),
            threshold=float(m["output"].get("threshold", 0.0)),
            min_input_size=int(m.get("min_input_size", 1)),
            nms_iou=float(m["nms_overlap"]),
            nms_percent_covered=float(m.get("nms_percent_covered", 1.0)),
            pyramid_n=den,
            padding=int(m["pyramid"]["padding"]),
            outer_padding=int(m["pyramid"]["outer_padding"]),
            min_level_height=int(m["pyramid"].get("min_level_height", 5)),
        )


# ---------------------------------------------------------------------------------------------
# Rounding helpers: dlib converts double -> long with std::lround (half away from zero).


def _lround(x: NDArray[np.float64]) -> NDArray[np.int64]:
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# pyramid_up: dlib/image_transforms/interpolation.h, pyramid_up() + the RGB resize_image()
# specialization. Reproduced bit for bit, float32 SIMD lanes included.


def pyramid_up_size(nr: int, nc: int) -> tuple[int, int]:
    """Output size of pyramid_up with pyramid_down<2>: rect_up((0, 0, nc-1, nr-1)), lround-ed.

    point_up(p) = (p + (1.25, 0.75)) * 2, so the image grows to (2 nr + 1) x (2 nc + 2).
    """
    bottom = _lround(np.array([(nr - 1 + 0.75) * 2.0]))[0]
    right = _lround(np.array([(nc - 1 + 1.25) * 2.0]))[0]
    return int(bottom) + 1, int(right) + 1


@dataclass(frozen=True)
class _RgbResizePlan:
    top: NDArray[np.intp]
    bottom: NDArray[np.intp]
    tb: NDArray[np.float32]  # per output row, float32 as the SIMD lanes hold it
    inv_tb: NDArray[np.float32]
    tb64: NDArray[np.float64]  # the double the scalar tail uses
    left: NDArray[np.intp]  # SIMD part: columns [0, n_simd)
    lr: NDArray[np.float32]
    inv_lr: NDArray[np.float32]
    tail_left: NDArray[np.intp]  # scalar tail: columns [n_simd, out_nc)
    tail_right: NDArray[np.intp]
    tail_lr: NDArray[np.float64]


def _row_coords(in_n: int, out_n: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Rows of dlib's resize_image: y starts at -scale and accumulates += scale in double."""
    scale = (in_n - 1) / max(out_n - 1, 1)
    steps = np.full(out_n + 1, scale)
    steps[0] = -scale
    y = np.add.accumulate(steps)[1:]  # sequential, like the C++ loop
    top = np.floor(y).astype(np.intp)
    bottom = np.minimum(top + 1, in_n - 1)
    return top, bottom, y - top


def _simd_columns(in_nc: int, out_nc: int) -> tuple[NDArray[np.float32], int]:
    """The float32 x coordinates of resize_image's 4-lane loop, and how many columns it covers.

    Lanes start at float(x0 + j*scale) with x0 = -4*scale and each adds float(4*scale) per
    step in float32; the loop stops at the first group whose last lane's right neighbour
    would leave the image.
    """
    scale = (in_nc - 1) / max(out_nc - 1, 1)
    groups = out_nc // 4 + 2
    x0 = -4 * scale
    lanes = np.empty((groups + 1, 4), dtype=np.float32)
    lanes[0] = np.array([x0, x0 + scale, x0 + 2 * scale, x0 + 3 * scale], dtype=np.float64).astype(np.float32)
    lanes[1:] = np.float32(4 * scale)
    x = np.add.accumulate(lanes, axis=0, dtype=np.float32)[1:]  # sequential float32 sums per lane
    right_last = np.trunc(x[:, 3]).astype(np.int64) + 1
    n_groups = int(np.argmax(right_last >= in_nc)) if np.any(right_last >= in_nc) else groups
    return x[:n_groups].reshape(-1), 4 * n_groups


def _rgb_resize_plan(in_nr: int, in_nc: int, out_nr: int, out_nc: int) -> _RgbResizePlan:
    top, bottom, tb64 = _row_coords(in_nr, out_nr)
    xs, n_simd = _simd_columns(in_nc, out_nc)
    n_simd = min(n_simd, out_nc)
    xs = xs[:n_simd]
    left = np.trunc(xs).astype(np.intp)  # _mm_cvttps_epi32
    lr = (xs - left.astype(np.float32)).astype(np.float32)
    # Scalar tail: x = -scale + c*scale, then += scale per column, in double.
    scale = (in_nc - 1) / max(out_nc - 1, 1)
    n_tail = out_nc - n_simd
    steps = np.full(n_tail + 1, scale)
    steps[0] = -scale + n_simd * scale
    tx = np.add.accumulate(steps)[1:]
    tail_left = np.floor(tx).astype(np.intp)
    return _RgbResizePlan(
        top=top,
        bottom=bottom,
        tb=tb64.astype(np.float32),
        inv_tb=(1.0 - tb64).astype(np.float32),
        tb64=tb64,
        left=left,
        lr=lr,
        inv_lr=(np.float32(1) - lr).astype(np.float32),
        tail_left=tail_left,
        tail_right=np.minimum(tail_left + 1, in_nc - 1),
        tail_lr=tx - tail_left,
    )


def resize_rgb_bilinear(rgb: NDArray[np.uint8], out_nr: int, out_nc: int) -> NDArray[np.uint8]:
    """dlib's resize_image(rgb_in, rgb_out) (interpolate_bilinear, align corners), bit-exact."""
    in_nr, in_nc = rgb.shape[:2]
    p = _rgb_resize_plan(in_nr, in_nc, out_nr, out_nc)
    n = p.left.size
    planes = [np.asarray(c, dtype=np.uint8).astype(np.float32) for c in cv2.split(np.ascontiguousarray(rgb))]
    out = [np.empty((out_nr, out_nc), dtype=np.uint8) for _ in range(3)]
    if n:
        # SIMD lanes: four float32 weight products, summed ((tl + tr) + bl) + br in float32 and
        # truncated. Columns are gathered once per channel, rows per block of output rows.
        cols = [(np.take(plane, p.left, axis=1), np.take(plane, p.left + 1, axis=1)) for plane in planes]
        block = max(1, (1 << 15) // n)  # rows per block: keeps the temporaries in L2
        w = np.empty((4, block, n), dtype=np.float32)
        acc = np.empty((block, n), dtype=np.float32)
        tmp = np.empty((block, n), dtype=np.float32)
        for r0 in range(0, out_nr, block):
            r1 = min(r0 + block, out_nr)
            rows = r1 - r0
            inv_tb, tb = p.inv_tb[r0:r1, None], p.tb[r0:r1, None]
            np.multiply(inv_tb, p.inv_lr, out=w[0, :rows])
            np.multiply(inv_tb, p.lr, out=w[1, :rows])
            np.multiply(tb, p.inv_lr, out=w[2, :rows])
            np.multiply(tb, p.lr, out=w[3, :rows])
            neighbours = ((p.top, 0), (p.top, 1), (p.bottom, 0), (p.bottom, 1))
            for c in range(3):
                a, t = acc[:rows], tmp[:rows]
                for k, (which_rows, side) in enumerate(neighbours):
                    np.take(cols[c][side], which_rows[r0:r1], axis=0, out=t, mode="clip")
                    if k == 0:
                        np.multiply(w[0, :rows], t, out=a)
                    else:
                        t *= w[k, :rows]
                        a += t
                np.copyto(out[c][r0:r1, :n], a, casting="unsafe")  # float -> uint8 truncates
    if p.tail_left.size:
        # Scalar tail in double, truncated by vector_to_pixel's static_cast.
        tb64 = p.tb64[:, None]
        lr64 = p.tail_lr[None, :]
        for c in range(3):
            t64 = planes[c][p.top].astype(np.float64)
            b64 = planes[c][p.bottom].astype(np.float64)
            upper = (1 - lr64) * t64[:, p.tail_left] + lr64 * t64[:, p.tail_right]
            lower = (1 - lr64) * b64[:, p.tail_left] + lr64 * b64[:, p.tail_right]
            np.copyto(out[c][:, n:], (1 - tb64) * upper + tb64 * lower, casting="unsafe")
    return np.asarray(cv2.merge(out), dtype=np.uint8)


def pyramid_up(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """dlib's ``pyramid_up(img, pyramid_down<2>())`` on an RGB uint8 image."""
    nr, nc = rgb.shape[:2]
    if nr == 0 or nc == 0:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    return resize_rgb_bilinear(rgb, *pyramid_up_size(nr, nc))


def rect_down_2(box: Box, levels: int) -> Box:
    """pyramid_down<2>::rect_down(rect, levels): p/2 - (1.25, 0.75) per level, then lround."""
    p = np.array(box, dtype=np.float64)
    for _ in range(levels):
        p = p / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])
    q = _lround(p)
    return int(q[0]), int(q[1]), int(q[2]), int(q[3])


# ---------------------------------------------------------------------------------------------
# The tiled pyramid: dlib/image_transforms/image_pyramid.h compute_tiled_image_pyramid_details()
# and dlib/dnn/input.h input_rgb_image_pyramid::to_tensor().


def tiled_pyramid_layout(
    nr: int, nc: int, *, pyramid_n: int, padding: int, outer_padding: int, min_height: int = 5
) -> tuple[list[Box], int, int]:
    """Rectangles (l, t, r, b) of each pyramid level in the tiled image, and its (rows, cols)."""
    if nr * nc == 0:
        return [], 0, 0
    rate = (pyramid_n - 1.0) / pyramid_n
    sizes = [(nr, nc)]
    while True:
        nr, nc = int(np.floor(rate * nr)), int(np.floor(rate * nc))
        if nr * nc == 0 or nr < min_height:
            break
        sizes.append((nr, nc))

    h0, w0 = sizes[0]
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    for h, w in sizes:
        # Go down the first column until the next image fits beside the previous one.
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= total_height - h0:
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = w0

    rects: list[Box] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        # Second column, right-aligned, from the bottom up.
        h, w = sizes[i]
        rect = (outer_padding + width - w, y - h, outer_padding + width - 1, y - 1)
        if max(first[0], rect[0]) <= min(first[2], rect[2]) and max(first[1], rect[1]) <= min(
            first[3], rect[3]
        ):
            break  # would overlap the original image: drop the remaining levels
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, height + 2 * outer_padding, width + 2 * outer_padding


@dataclass(frozen=True)
class _LevelResize:
    """Align-corners bilinear from one level to the next, as separable row gathers.

    dlib's float resize_image() weighs the four neighbours in one expression; doing columns
    then rows differs by about one float32 ulp, far below the network's own rounding. The
    neighbour indices are dlib's own (its float32 SIMD lanes included), so no sample moves.
    """

    src: Box
    dst: Box
    top: NDArray[np.intp]
    bottom: NDArray[np.intp]
    fy: NDArray[np.float32]  # (out_h, 1)
    left: NDArray[np.intp]
    right: NDArray[np.intp]
    fx: NDArray[np.float32]  # (out_w, 1)


def _level_resize(src: Box, dst: Box) -> _LevelResize:
    in_h, in_w = src[3] - src[1] + 1, src[2] - src[0] + 1
    out_h, out_w = dst[3] - dst[1] + 1, dst[2] - dst[0] + 1
    top, bottom, fy = _row_coords(in_h, out_h)
    xs, n_simd = _simd_columns(in_w, out_w)
    n_simd = min(n_simd, out_w)
    left = np.empty(out_w, dtype=np.intp)
    fx = np.empty(out_w, dtype=np.float64)
    left[:n_simd] = np.trunc(xs[:n_simd])
    fx[:n_simd] = xs[:n_simd] - left[:n_simd]
    if n_simd < out_w:  # the scalar tail: double x accumulated from -scale + n_simd * scale
        scale = (in_w - 1) / max(out_w - 1, 1)
        steps = np.full(out_w - n_simd + 1, scale)
        steps[0] = -scale + n_simd * scale
        tx = np.add.accumulate(steps)[1:]
        left[n_simd:] = np.floor(tx)
        fx[n_simd:] = tx - left[n_simd:]
    return _LevelResize(
        src=src,
        dst=dst,
        top=top,
        bottom=bottom,
        fy=fy.astype(np.float32)[:, None],
        left=left,
        right=np.minimum(left + 1, in_w - 1),
        fx=fx.astype(np.float32)[:, None],
    )


@dataclass(frozen=True)
class _PyramidPlan:
    rects: list[Box]
    shape: tuple[int, int]  # rows, cols of the tiled image
    resizes: list[_LevelResize]
    rect_array: NDArray[np.int64]  # (levels, 4)
    n_parallel: int  # the first resizes are large enough to run one thread per channel


# Below this many pixels a level costs less than the Python calls of three channel threads.
_PARALLEL_MIN_PIXELS = 20_000


def _pyramid_plan(nr: int, nc: int, cfg: DetectorConfig) -> _PyramidPlan:
    rects, tnr, tnc = tiled_pyramid_layout(
        nr,
        nc,
        pyramid_n=cfg.pyramid_n,
        padding=cfg.padding,
        outer_padding=cfg.outer_padding,
        min_height=cfg.min_level_height,
    )
    resizes = [_level_resize(rects[i - 1], rects[i]) for i in range(1, len(rects))]
    n_parallel = sum(1 for r in rects[1:] if (r[2] - r[0] + 1) * (r[3] - r[1] + 1) >= _PARALLEL_MIN_PIXELS)
    return _PyramidPlan(
        rects, (tnr, tnc), resizes, np.array(rects, dtype=np.int64).reshape(-1, 4), n_parallel
    )


class _Workspace:
    """Per-thread scratch: the tiled buffer and three level-sized arrays, reused across frames.

    Fresh multi-megabyte temporaries cost more in page faults than the arithmetic itself.
    Each scratch array holds one level-0-sized slot per channel so channels can run in parallel.
    """

    def __init__(self, shape: tuple[int, int], level0: tuple[int, int]) -> None:
        # Only level rectangles are ever written, so the zero padding survives reuse.
        self.tiled = np.zeros((1, 3, *shape), dtype=np.float32)
        self.slot = level0[0] * level0[1]
        self.scratch = np.empty((3, 3 * self.slot), dtype=np.float32)

    def fits(self, shape: tuple[int, int], level0: tuple[int, int]) -> bool:
        return self.tiled.shape[2:] == shape and self.slot == level0[0] * level0[1]

    def channel(self, c: int) -> NDArray[np.float32]:
        """Scratch (3, slot) for work on channel ``c`` alone."""
        return self.scratch[:, c * self.slot : (c + 1) * self.slot]


def _lerp_gather(
    src: NDArray[np.float32],
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
    frac: NDArray[np.float32],
    *,
    scratch: tuple[NDArray[np.float32], NDArray[np.float32]],
    out: NDArray[np.float32],
) -> None:
    """One bilinear pass along axis 1: out = src[lo] + frac * (src[hi] - src[lo]).

    The operations and their order are dlib's (a + f * (b - a) in float32); ``out`` may be the
    first scratch array.
    """
    a, b = scratch
    np.take(src, lo, axis=1, out=a, mode="clip")
    np.take(src, hi, axis=1, out=b, mode="clip")
    b -= a
    b *= frac
    np.add(a, b, out=out)


def _resize_level(planes: NDArray[np.float32], lr: _LevelResize, scratch: NDArray[np.float32]) -> None:
    """Write one level into ``planes`` (k, rows, cols) from the previous level there.

    Both passes run as row gathers on transposed copies (cv2.transpose writes straight into
    strided views); gathering columns in place is several times slower. ``scratch`` is
    (3, n) with n >= k * level area.
    """
    sl, st, sr, sb = lr.src
    dl, dt, dr, db = lr.dst
    h0, w0 = sb - st + 1, sr - sl + 1
    h1, w1 = db - dt + 1, dr - dl + 1
    k = planes.shape[0]
    x, y, z = scratch[0], scratch[1], scratch[2]
    src_t = x[: k * w0 * h0].reshape(k, w0, h0)
    for c in range(k):
        cv2.transpose(planes[c, st : sb + 1, sl : sr + 1], dst=src_t[c])
    # Columns: out = a + fx * (b - a) over rows of the transposed level.
    a = y[: k * w1 * h0].reshape(k, w1, h0)
    b = z[: k * w1 * h0].reshape(k, w1, h0)
    _lerp_gather(src_t, lr.left, lr.right, lr.fx, scratch=(a, b), out=a)
    mid = x[: k * h0 * w1].reshape(k, h0, w1)
    for c in range(k):
        cv2.transpose(a[c], dst=mid[c])
    # Rows, written straight into the level's place in the tiled buffer.
    a = y[: k * h1 * w1].reshape(k, h1, w1)
    b = z[: k * h1 * w1].reshape(k, h1, w1)
    _lerp_gather(mid, lr.top, lr.bottom, lr.fy, scratch=(a, b), out=planes[:, dt : db + 1, dl : dr + 1])


def _channel_levels(
    planes: NDArray[np.float32],
    rgb_plane: NDArray[np.uint8],
    lut: NDArray[np.float32],
    plan: _PyramidPlan,
    scratch: NDArray[np.float32],
) -> None:
    """Level 0 and the large levels of one channel (``planes`` is (1, rows, cols))."""
    l0, t0, r0, b0 = plan.rects[0]
    # (pixel - mean) / 256 in float32, exactly dlib's values, via a lookup table.
    cv2.LUT(rgb_plane, lut, dst=planes[0, t0 : b0 + 1, l0 : r0 + 1])
    for lr in plan.resizes[: plan.n_parallel]:
        _resize_level(planes, lr, scratch)


# ---------------------------------------------------------------------------------------------
# Decoding and NMS: dlib/dnn/loss.h loss_mmod_::tensor_to_dets() and to_label().


def _nearest_level(
    rects: NDArray[np.int64], px: NDArray[np.int64], py: NDArray[np.int64]
) -> NDArray[np.intp]:
    """dlib's nearest_rect(): the first level containing the point, else the closest one."""
    lft, top, rgt, bot = (rects[:, k][None, :] for k in range(4))
    x, y = px[:, None], py[:, None]
    inside = (x >= lft) & (x <= rgt) & (y >= top) & (y <= bot)
    dx = np.where(x < lft, lft - x, np.where(x > rgt, x - rgt, 0)).astype(np.float64)
    dy = np.where(y < top, top - y, np.where(y > bot, y - bot, 0)).astype(np.float64)
    dist = np.sqrt(dx * dx + dy * dy)
    level: NDArray[np.intp] = np.where(inside.any(axis=1), np.argmax(inside, axis=1), np.argmin(dist, axis=1))
    return level


def _overlaps(a: Box, b: Box, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap: intersection over the *bounding box* of both, inclusive areas."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = float(iw * ih)
    outer = float((max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1))
    area_a = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1))
    area_b = float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


class FaceDetector:
    """dlib's cnn_face_detection_model_v1 on an ONNX Runtime session of the converted network."""

    def __init__(self, session: InferenceSessionLike, manifest: Mapping[str, Any]) -> None:
        self.session = session
        self.config = DetectorConfig.from_manifest(manifest)
        levels = np.arange(256, dtype=np.float32)
        # dlib: (pixel - float mean) / 256.0 stored as float; exact in float32.
        self._lut = [
            ((levels - np.float32(m)) / np.float32(256)).reshape(256, 1) for m in self.config.mean_rgb
        ]
        self._plans: dict[tuple[int, int], _PyramidPlan] = {}
        self._local = threading.local()  # per-thread _Workspace: detect() may run in a thread pool
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="facegate-pyramid")

    def detect(self, rgb: NDArray[np.uint8], upsample: int = 0, min_size: int = 0) -> list[Detection]:
        """Faces in an HxWx3 RGB uint8 image, best first, as dlib's detector(img, upsample) gives them.

        ``min_size`` drops boxes narrower than that many pixels (0 keeps all).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if upsample < 0:
            raise ValueError("upsample must be >= 0")
        img = rgb
        for _ in range(upsample):
            img = pyramid_up(img)
        tensor, plan = self.tiled_pyramid(img)
        if plan is None or min(plan.shape) < self.config.min_input_size:
            return []  # too small for the network (dlib raises here)
        scores = self.scores(tensor)
        dets = self.decode(scores, plan)
        if upsample:
            dets = [Detection(rect_down_2(d.box, upsample), d.score) for d in dets]
        if min_size > 0:
            dets = [d for d in dets if d.box[2] - d.box[0] + 1 >= min_size]
        return dets

    def close(self) -> None:
        """Stop the pyramid worker threads (the session belongs to the caller)."""
        self._pool.shutdown(wait=True)

    # -- stages (public for benchmarks and tests) ---------------------------------------------

    def plan(self, nr: int, nc: int) -> _PyramidPlan:
        plan = self._plans.get((nr, nc))
        if plan is None:
            plan = _pyramid_plan(nr, nc, self.config)
            if len(self._plans) >= 16:  # a door camera has one or two frame sizes
                self._plans.clear()
            self._plans[(nr, nc)] = plan
        return plan

    def tiled_pyramid(self, rgb: NDArray[np.uint8]) -> tuple[NDArray[np.float32], _PyramidPlan | None]:
        """The network input (1, 3, rows, cols): normalized image and its levels, zeros elsewhere.

        The array is this thread's reusable buffer: it is overwritten by the next call.
        """
        nr, nc = rgb.shape[:2]
        plan = self.plan(nr, nc)
        if not plan.rects:
            return np.zeros((1, 3, 0, 0), dtype=np.float32), None
        ws: _Workspace | None = getattr(self._local, "ws", None)
        if ws is None or not ws.fits(plan.shape, (nr, nc)):
            ws = _Workspace(plan.shape, (nr, nc))
            self._local.ws = ws
        buf = ws.tiled[0]
        rgb_planes = [np.asarray(p, dtype=np.uint8) for p in cv2.split(np.ascontiguousarray(rgb))]
        # Channels are independent: the large levels run one thread per channel (numpy and
        # OpenCV release the GIL), the small ones batched over channels in this thread.
        jobs = [
            self._pool.submit(
                _channel_levels, buf[c : c + 1], rgb_planes[c], self._lut[c], plan, ws.channel(c)
            )
            for c in (1, 2)
        ]
        _channel_levels(buf[0:1], rgb_planes[0], self._lut[0], plan, ws.channel(0))
        for job in jobs:
            job.result()
        for lr in plan.resizes[plan.n_parallel :]:
            _resize_level(buf, lr, ws.scratch)
        return ws.tiled, plan

    def scores(self, tensor: NDArray[np.float32]) -> NDArray[np.float32]:
        out = self.session.run([self.config.output_name], {self.config.input_name: tensor})
        return np.asarray(out[0], dtype=np.float32)

    def decode(self, scores: NDArray[np.float32], plan: _PyramidPlan) -> list[Detection]:
        cfg = self.config
        rows, cols = np.nonzero(scores[0, 0] > cfg.threshold)
        if rows.size == 0:
            return []
        values = scores[0, 0, rows, cols].astype(np.float64)
        px = cfg.stride * cols.astype(np.int64) + cfg.offset
        py = cfg.stride * rows.astype(np.int64) + cfg.offset
        level = _nearest_level(plan.rect_array, px, py)
        # centered_drect(p, w, h): half extents (w - 1) / 2, relative to the level's origin.
        hw, hh = (cfg.window[0] - 1) / 2.0, (cfg.window[1] - 1) / 2.0
        origin = plan.rect_array[level]
        box = np.stack(
            [px - hw - origin[:, 0], py - hh - origin[:, 1], px + hw - origin[:, 0], py + hh - origin[:, 1]],
            axis=1,
        ).astype(np.float64)
        # pyramid_down<N>::point_up, once per level: p * N/(N-1) + 0.3 (in double, as dlib).
        ratio = cfg.pyramid_n / (cfg.pyramid_n - 1.0)
        for k in range(1, int(level.max()) + 1):
            sel = level >= k
            box[sel] = box[sel] * ratio + 0.3
        ibox = _lround(box)
        # std::sort by confidence, best first, then greedy NMS against the kept boxes.
        order = np.argsort(-values, kind="stable")
        kept: list[Detection] = []
        for i in order:
            b: Box = (int(ibox[i, 0]), int(ibox[i, 1]), int(ibox[i, 2]), int(ibox[i, 3]))
            if any(_overlaps(k.box, b, cfg.nms_iou, cfg.nms_percent_covered) for k in kept):
                continue
            kept.append(Detection(b, float(values[i])))
        return kept
