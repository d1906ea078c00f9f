"""Reject-only image cues of a presentation attack, each cheap and testable alone.

Each can only turn a verdict into "spoof", never into "live": a missing border proves nothing,
a border around the face is damning. All work on small grey regions (at most 128 px a side),
so the cost per frame stays well under a millisecond or two.

* ``border_sides`` / ``border_lines``: straight edges around the face, parallel to it: the rim
  of a print, the bezel of a phone or tablet. The region is first rotated upright by the eye
  line (a picture is held the way its face is), then each side is searched for a row (column)
  of coherent gradient spanning the face; ``border_lines`` also says where each side's line lies.
* ``border_motion``: whether that border moves with the face over the burst. A rim is part of
  the picture: relative to the face (origin the eye midpoint, unit the face half-width, axes
  the eye line's) it stays put however the picture moves. A scene edge (a curtain, a stand, a
  door frame) stays put in the image instead, so relative to the face it moves by the face's
  displacement over its size. Each side's line, anchored where it was found in a frame with
  the full border, is looked for in every frame at that face-relative place (within 0.06 +
  0.03 x its distance face half-widths; at 0.7 of the detection thresholds, as blur and light
  change a rim's contrast); ``follow`` is the fraction of frames that have it. A side counts
  only when a static edge at that place would have left that band (moved by more than twice
  the tolerance: 0.2-0.3 face half-widths of translation, or 10-17% of scale at zero
  translation; the landmarks of a still photo alone already jitter by up to 0.18 half-widths
  and 7% of scale over a burst); when no side counts, the face moved too little to tell and
  ``follow`` is 1.0, so a picture held still (or on a stand) stays rejected. The face's centre
  and scale come from the eyes: the detector's box snaps to coarse steps (its size by ~20%).
  On the evaluation (rendered attacks, live stage video) this kept 285 of the 288 attack bursts
  the border caught and dropped it on 117 of 126 live windows. Those live borders were the
  subject's own outline (hair, collar, hands, microphone) as much as stage edges: lines that
  neither stay in the image nor keep one face-relative place for most of a burst.
* ``moire_peak``: isolated peaks in the face's spectrum, from a screen's pixel grid beating
  with the camera's (moire) or a halftone print. JPEG's 8-pixel block frequencies are masked.
* ``glare_fraction``: the largest saturated, colourless blob on the face: the specular
  reflection of a glossy print or a screen's glass.
* ``identical_fraction``: consecutive frames whose face region is the same to the pixel: a
  replayed still or injected duplicates (a camera always adds some sensor noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


SIDES = ("above", "below", "left", "right")
_SIDE_AXIS = (1, 1, 0, 0)  # the upright region's axis across each side's line: y, y, x, x


@dataclass(frozen=True)
class SideLines:
    """Every candidate line of one side: where it lies and how line-like it is.

    ``positions``: signed distance of each candidate row (column) from the face centre along the
    region's axis across it, in face half-widths (above and left negative). ``strength``: the
    mean signed gradient across the line (its sign is the edge's polarity, dark-to-light or
    light-to-dark); ``coherence``: |sum| / sum of |gradients| along it.
    """

    positions: NDArray[np.float32]
    strength: NDArray[np.float32]
    coherence: NDArray[np.float32]

    def qualifying(self, relax: float = 1.0) -> NDArray[np.bool_]:
        """Rows that pass the detection thresholds, each scaled by ``relax``."""
        return np.asarray(
            (np.abs(self.strength) >= relax * _BORDER_MIN_STRENGTH)
            & (self.coherence >= relax * _BORDER_MIN_COHERENCE)
        )

    def peaks(self) -> list[tuple[float, float]]:
        """(position, polarity) of each qualifying row that is a local maximum of |strength|."""
        mag = np.abs(self.strength)
        left = np.concatenate([[-np.inf], mag[:-1]])
        right = np.concatenate([mag[1:], [-np.inf]])
        keep = self.qualifying() & (mag >= left) & (mag >= right)
        return [(float(self.positions[i]), float(np.sign(self.strength[i]))) for i in np.flatnonzero(keep)]


_NO_LINES = SideLines(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class BorderLines:
    """One frame's border search, side by side in ``SIDES`` order.

    ``offsets``: where each side's line was found: the strongest qualifying line's position from
    the face centre in face half-widths (the region's: the box's centre and half-width; above and
    left negative; refined between rows by a parabola), or None where that side has none.
    ``lines``: every candidate of each side, for following a line across the burst
    (``border_motion``).
    """

    offsets: tuple[float | None, float | None, float | None, float | None]
    lines: tuple[SideLines, SideLines, SideLines, SideLines]

    @property
    def sides(self) -> int:
        return sum(o is not None for o in self.offsets)


def _side_lines(grads: NDArray[np.float32], start: int, centre: float, face_half: float) -> SideLines:
    """Rows of gradients across candidate lines (row i at region coordinate ``start + i``)."""
    total = grads.sum(axis=1)
    coherence = np.abs(total) / np.maximum(np.abs(grads).sum(axis=1), 1e-6)
    positions = (np.arange(len(total)) + start - centre) / face_half
    return SideLines(
        positions.astype(np.float32),
        (total / grads.shape[1]).astype(np.float32),
        coherence.astype(np.float32),
    )


def _strongest(side: SideLines, face_half: float) -> float | None:
    ok = side.qualifying()
    if not np.any(ok):
        return None
    mag = np.abs(side.strength)
    i = int(np.argmax(np.where(ok, mag, -np.inf)))
    frac = 0.0
    if 0 < i < len(mag) - 1:
        # A parabola through the neighbours: one region row is 0.05 face half-widths.
        a, b, c = float(mag[i - 1]), float(mag[i]), float(mag[i + 1])
        if a - 2.0 * b + c < 0.0:
            frac = float(np.clip(0.5 * (a - c) / (a - 2.0 * b + c), -0.5, 0.5))
    return float(side.positions[i]) + frac / face_half


def border_lines(region: NDArray[np.float32], face_half: float) -> BorderLines:
    """Straight edges parallel to the face beyond it, side by side, and where each lies.

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
        return BorderLines((None, None, None, None), (_NO_LINES, _NO_LINES, _NO_LINES, _NO_LINES))
    n0, n1 = int(c + near), int(c + far)
    f0, f1 = int(c - far), int(c - near)
    lines = (
        _side_lines(gy[f0:f1, lo:hi], f0, c, face_half),  # above
        _side_lines(gy[n0:n1, lo:hi], n0, c, face_half),  # below
        _side_lines(gx[lo:hi, f0:f1].T, f0, c, face_half),  # left
        _side_lines(gx[lo:hi, n0:n1].T, n0, c, face_half),  # right
    )
    s0, s1, s2, s3 = (_strongest(side, face_half) for side in lines)
    return BorderLines((s0, s1, s2, s3), lines)


def border_sides(region: NDArray[np.float32], face_half: float) -> int:
    """How many sides of the face (0-4) have a straight edge parallel to it, beyond the face."""
    return border_lines(region, face_half).sides


# Following a border across the burst (see the module docstring), measured on the liveness
# evaluation (``facegate eval liveness``): the rims of rendered prints and screens stay within
# 0.04-0.06 face half-widths of their place in 95% of frames when near the face (1-2 half-widths
# out), 0.06-0.09 when far (2-3.2): landmark noise of the eye midpoint, and the scale error
# (inter-ocular noise, a turned print's perspective) that grows with the distance.
_FOLLOW_TOL = 0.06  # face half-widths ...
_FOLLOW_TOL_PER_OFFSET = 0.03  # ... plus this per face half-width of the line's distance
# A rim found in one frame is looked for in the others at this fraction of the detection
# thresholds: blur and light change its contrast, and full thresholds miss it in 1 frame in 4.
_FOLLOW_RELAX = 0.7


@dataclass(frozen=True)
class BorderFrame:
    """What ``border_motion`` needs of one frame: its border search and where the face was.

    ``box`` and ``eye_angle`` are those ``upright_region`` was given; ``eye_mid`` (image pixels)
    and ``iod`` (inter-ocular distance, pixels) come from the landmarks.
    """

    lines: BorderLines
    box: Box
    eye_angle: float
    eye_mid: tuple[float, float]
    iod: float


@dataclass(frozen=True)
class BorderMotion:
    """Does the border move with the face? ``follow`` is the smallest, over the sides that can
    tell, fraction of the burst's frames in which that side's line kept its place relative to the
    face; 1.0 when no side can tell (the face moved too little). ``shift``: the largest motion,
    relative to the face, that a static image edge on one of the sides would have shown over the
    burst (face half-widths). ``decisive_sides``: how many sides could tell."""

    follow: float
    shift: float
    decisive_sides: int


def border_frame(
    frame: NDArray[np.uint8], box: Box, left_eye: tuple[float, float], right_eye: tuple[float, float]
) -> BorderFrame:
    """One frame's border search, upright by the eye line (eye centres in image pixels)."""
    (lx, ly), (rx, ry) = left_eye, right_eye
    angle = math.atan2(ry - ly, rx - lx)
    region, half = upright_region(frame, box, angle)
    return BorderFrame(
        border_lines(region, half),
        box,
        angle,
        ((lx + rx) / 2.0, (ly + ry) / 2.0),
        math.hypot(rx - lx, ry - ly),
    )


def _rotation(angle: float) -> NDArray[np.float64]:
    """Image to upright region axes (as ``upright_region`` turns the frame)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, s], [-s, c]])


def border_motion(frames: Sequence[BorderFrame], min_sides: int = 4) -> BorderMotion:
    """Whether the border found around the face is attached to it, judged over the burst.

    Lines are anchored where they were found in the frames with at least ``min_sides`` sides (the
    frames the border cue counts); each side keeps the anchor seen in the most frames.
    """
    n = len(frames)
    full = [k for k, f in enumerate(frames) if f.lines.sides >= min_sides]
    if len(full) < 2 or any(f.iod <= 0.0 for f in frames):
        return BorderMotion(1.0, 0.0, 0)
    boxes = np.array([f.box for f in frames], dtype=np.float64)
    centre = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0])
    half = np.maximum(boxes[:, 2] - boxes[:, 0] + 1.0, boxes[:, 3] - boxes[:, 1] + 1.0) / 2.0
    eye_mid = np.array([f.eye_mid for f in frames], dtype=np.float64)
    iod = np.array([f.iod for f in frames], dtype=np.float64)
    # The detector's box snaps to coarse steps (its size jumps by ~20% between frames of one
    # face): the face's centre and scale come from the eyes instead, in the box's units.
    unit = float(np.median(half / iod)) * iod  # one face half-width per frame, pixels
    # Where the box centre (the region's) lies from the eyes, per frame: upright axes, unit.
    box_offset = (
        np.array([_rotation(f.eye_angle) @ (c - e) for f, c, e in zip(frames, centre, eye_mid, strict=True)])
        / unit[:, None]
    )
    box_scale = half / unit  # region offsets are in box half-widths
    # The eyes in one upright frame for the whole burst, for where a static image edge would stay.
    eyes = eye_mid @ _rotation(float(np.median([f.eye_angle for f in frames]))).T
    follow, shift, decisive = 1.0, 0.0, 0
    for side in range(4):
        axis = _SIDE_AXIS[side]
        lines = [f.lines.lines[side] for f in frames]
        # Every candidate row of the burst, face-relative, with its frame; and the anchors.
        rows = np.concatenate([box_offset[k, axis] + box_scale[k] * lines[k].positions for k in range(n)])
        frame_of = np.concatenate([np.full(len(line.positions), k) for k, line in enumerate(lines)])
        strength = np.concatenate([line.strength for line in lines])
        usable = np.concatenate([line.qualifying(_FOLLOW_RELAX) for line in lines])  # a faded rim passes
        peaks = [
            (float(box_offset[k, axis] + box_scale[k] * position), polarity)
            for k in full
            for position, polarity in lines[k].peaks()
        ]
        if not peaks:
            continue
        anchors, polarity = (np.array(v) for v in zip(*peaks, strict=True))
        # How far (face half-widths) an attached line at each anchor may wander between frames.
        tolerance = _FOLLOW_TOL + _FOLLOW_TOL_PER_OFFSET * np.abs(anchors)
        match = (
            usable[None, :]
            & (np.abs(rows[None, :] - anchors[:, None]) <= tolerance[:, None])
            & (polarity[:, None] * strength[None, :] > 0)
        )
        hit = np.zeros((len(anchors), n), dtype=bool)
        which, row = np.nonzero(match)
        hit[which, frame_of[row]] = True
        best = int(np.argmax(hit.sum(axis=1)))
        seen, anchor = int(hit[best].sum()), float(anchors[best])
        # A static image edge at the anchor's place in the median frame, seen from the moving face.
        edge = float(np.median(eyes[:, axis])) + float(np.median(unit)) * anchor
        moved = float(np.ptp((edge - eyes[:, axis]) / unit))
        shift = max(shift, moved)
        # Moving less than twice the tolerance, a static edge stays inside the band an attached
        # line may wander in: this side cannot tell the two apart.
        if moved < 2.0 * float(tolerance[best]):
            continue
        decisive += 1
        follow = min(follow, seen / n)
    return BorderMotion(follow, shift, decisive)


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
