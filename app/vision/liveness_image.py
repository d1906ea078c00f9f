"""Reject-only image cues of a presentation attack, each cheap and testable alone.

Each can only turn a verdict into "spoof", never into "live": a missing border proves nothing,
a border around the face is damning. All work on small grey regions (at most 128 px a side),
so the cost per frame stays well under a millisecond or two.

* ``border_sides``: straight edges around the face, parallel to it: the rim of a print, the
  bezel of a phone or tablet. The region is first rotated upright by the eye line (a picture
  is held the way its face is), then each side is searched for a row (column) of coherent
  gradient spanning the face.
* ``moire_peak``: isolated peaks in the face's spectrum, from a screen's pixel grid beating
  with the camera's (moire) or a halftone print. JPEG's 8-pixel block frequencies are masked.
* ``glare_fraction``: the largest saturated, colourless blob on the face: the specular
  reflection of a glossy print or a screen's glass.
* ``identical_fraction``: consecutive frames whose face region is the same to the pixel: a
  replayed still or injected duplicates (a camera always adds some sensor noise).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

Box = tuple[int, int, int, int]

REGION_PX = 128
_BORDER_REACH = 1.6  # the region spans this many face widths (heights) either side of the face centre
_BORDER_MIN_COHERENCE = 0.6  # |sum of gradients| / sum of |gradients| along the line
_BORDER_MIN_STRENGTH = 6.0  # mean signed gradient along the line (grey levels per pixel)


def _gray(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if frame.ndim == 2:
        return frame
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def upright_region(
    frame: NDArray[np.uint8], box: Box, eye_angle: float, reach: float = _BORDER_REACH, size: int = REGION_PX
) -> tuple[NDArray[np.float32], float]:
    """A size x size grey region around the face, rotated so the eye line is horizontal.

    Returns the region and the face's half-width in region pixels (the face spans
    centre +- that). Pixels beyond the frame are replicated edge pixels (no false edge there).
    """
    left, top, right, bottom = box
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    half = max(right - left + 1, bottom - top + 1) / 2.0
    scale = size / (2.0 * reach * 2.0 * half)  # region pixels per frame pixel
    rot = cv2.getRotationMatrix2D((cx, cy), math.degrees(eye_angle), scale)
    rot[0, 2] += size / 2.0 - cx
    rot[1, 2] += size / 2.0 - cy
    region = cv2.warpAffine(
        _gray(frame), rot, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return region.astype(np.float32), half * scale


def border_sides(region: NDArray[np.float32], face_half: float) -> int:
    """How many sides of the face (0-4) have a straight edge parallel to it, beyond the face.

    An edge counts when, on one row (column) between 1.15 and ``_BORDER_REACH`` x 2 face
    half-widths from the centre, the gradient across it has the same sign along the whole
    span of the face (plus a margin) and is strong on average.
    """
    size = region.shape[0]
    c = size / 2.0
    # Sobel, then three neighbouring lines averaged: tolerate an edge tilted by a degree or two.
    sobel_y = np.asarray(cv2.Sobel(region, cv2.CV_32F, 0, 1, ksize=3), dtype=np.float32) / np.float32(4.0)
    sobel_x = np.asarray(cv2.Sobel(region, cv2.CV_32F, 1, 0, ksize=3), dtype=np.float32) / np.float32(4.0)
    gy = np.asarray(cv2.blur(sobel_y, (1, 3)), dtype=np.float32)
    gx = np.asarray(cv2.blur(sobel_x, (3, 1)), dtype=np.float32)
    lo, hi = int(c - 1.2 * face_half), math.ceil(c + 1.2 * face_half)
    lo, hi = max(lo, 0), min(hi, size)
    near, far = 1.15 * face_half, min(c - 2.0, 2.0 * _BORDER_REACH * face_half)
    if far <= near or hi - lo < 4:
        return 0

    def has_line(lines: NDArray[np.float32]) -> bool:  # rows of gradients across candidate lines
        total = np.abs(lines.sum(axis=1))
        coherence = total / np.maximum(np.abs(lines).sum(axis=1), 1e-6)
        strength = total / lines.shape[1]
        return bool(np.any((coherence >= _BORDER_MIN_COHERENCE) & (strength >= _BORDER_MIN_STRENGTH)))

    n0, n1 = int(c + near), int(c + far)
    f0, f1 = int(c - far), int(c - near)
    sides = 0
    sides += has_line(gy[f0:f1, lo:hi])  # above
    sides += has_line(gy[n0:n1, lo:hi])  # below
    sides += has_line(gx[lo:hi, f0:f1].T)  # left
    sides += has_line(gx[lo:hi, n0:n1].T)  # right
    return sides


def _face_patch(frame: NDArray[np.uint8], box: Box, size: int) -> NDArray[np.float32] | None:
    """The centre of the face at native resolution (no resampling: it would blur screen pixels)."""
    left, top, right, bottom = box
    width = right - left + 1
    side = min(size, int(0.7 * width)) // 2 * 2
    if side < 32:
        return None
    cx, cy = (left + right) // 2, (top + bottom) // 2
    x0, y0 = cx - side // 2, cy - side // 2
    if x0 < 0 or y0 < 0 or x0 + side > frame.shape[1] or y0 + side > frame.shape[0]:
        return None
    return _gray(frame[y0 : y0 + side, x0 : x0 + side]).astype(np.float32)


_WINDOWS: dict[int, NDArray[np.float32]] = {}


def moire_peak(frame: NDArray[np.uint8], box: Box) -> float:
    """Largest isolated spectral peak on the face, in natural-log power over its surroundings.

    Peakness of a bin is the smallest, over four directions, of its log power minus the mean log
    power of its two neighbours four bins away in that direction: an isolated peak (a periodic
    pattern) is high in every direction; the line of energy a straight edge leaves is not.
    Natural faces stay around 2-3; a visible screen grid or halftone is far above.
    """
    patch = _face_patch(frame, box, REGION_PX)
    if patch is None:
        return 0.0
    n = patch.shape[0]
    window = _WINDOWS.get(n)
    if window is None:
        hann = np.hanning(n).astype(np.float32)
        window = _WINDOWS.setdefault(n, np.outer(hann, hann))
    spectrum = np.fft.fftshift(np.abs(np.fft.fft2((patch - patch.mean()) * window)) ** 2)
    logp = np.log(spectrum + 1e-3)
    d = 4  # beyond the main lobe of a Hann-windowed sinusoid between two bins
    padded = np.pad(logp, d, mode="edge")
    core = padded[d:-d, d:-d]
    peak = np.full_like(core, np.inf)
    for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
        a = padded[d + dy : d + dy + n, d + dx : d + dx + n]
        b = padded[d - dy : d - dy + n, d - dx : d - dx + n]
        peak = np.minimum(peak, core - (a + b) / 2.0)
    freq = np.arange(n) - n // 2
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fx, fy) / n  # cycles per pixel
    band = (radius >= 0.06) & (radius <= 0.5)
    # JPEG's 8x8 blocks put isolated peaks on the grid of multiples of 1/8 cycle per pixel.
    block = n / 8.0
    near_x = np.abs(fx - np.round(fx / block) * block) <= 1.5
    near_y = np.abs(fy - np.round(fy / block) * block) <= 1.5
    band &= ~(near_x & near_y)
    if not np.any(band):
        return 0.0
    return float(np.max(peak[band]))


def glare_fraction(frame: NDArray[np.uint8], box: Box) -> float:
    """Area of the largest near-white blob on the face, as a fraction of the face box."""
    left, top, right, bottom = box
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right + 1, w), min(bottom + 1, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    face = cv2.resize(frame[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_AREA)
    # Specular glare is saturated in every channel; bright skin keeps some colour.
    white = (face.min(axis=2) >= 240) if face.ndim == 3 else (face >= 245)
    if not np.any(white):
        return 0.0
    count, _, stats, _ = cv2.connectedComponentsWithStats(white.astype(np.uint8), connectivity=8)
    largest = int(stats[1:count, cv2.CC_STAT_AREA].max())
    return largest / (64.0 * 64.0)


def identical_fraction(frames: list[NDArray[np.uint8]], boxes: list[Box]) -> float:
    """Fraction of consecutive frame pairs identical to the pixel around both faces."""
    if len(frames) < 2:
        return 0.0
    same = 0
    for i in range(1, len(frames)):
        a, b = frames[i - 1], frames[i]
        if a.shape != b.shape:
            continue
        (l0, t0, r0, b0), (l1, t1, r1, b1) = boxes[i - 1], boxes[i]
        region = (slice(max(min(t0, t1), 0), max(b0, b1) + 1), slice(max(min(l0, l1), 0), max(r0, r1) + 1))
        same += bool(np.array_equal(a[region], b[region]))
    return same / (len(frames) - 1)
