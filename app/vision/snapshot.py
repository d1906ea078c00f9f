"""The picture an access event keeps: the burst subject's best face, cropped with a margin, as JPEG.

Pure image work (OpenCV), run in the inference thread after the subject has been tracked: no SQL,
no HTTP. The best view is the sharpest of the subject's largest faces (within ``NEAR_LARGEST`` of
the largest width): a reviewer checks a face by its detail, and a face far from the camera has
less of it however sharp it is. The crop keeps a margin around the detector's box (hair, ears,
the chin) so that a reviewer sees a head, not a tight rectangle, and is scaled down to at most
``MAX_SIDE_PX``; the whole frame, when the door asks for it, is re-encoded too, so that no
metadata the camera wrote (EXIF) is ever kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from app.vision.quality import sharpness

Box = tuple[int, int, int, int]  # left, top, right, bottom; inclusive, frame pixels

# A face at least this share of the largest width competes on sharpness.
NEAR_LARGEST = 0.8
# Margin added on every side of the detector's box, as a share of the box's larger side.
MARGIN = 0.4
# Longest side of the stored face crop; larger crops are scaled down (never up).
MAX_SIDE_PX = 256


class SnapshotError(ValueError):
    """The crop could not be made or encoded (an empty box, an encoder failure)."""


class Viewed(Protocol):
    """A face of the subject: its box in the frame and its aligned chip (for sharpness)."""

    @property
    def box(self) -> Box: ...

    @property
    def chip(self) -> NDArray[np.uint8]: ...


@dataclass(frozen=True)
class Snapshot:
    face_jpeg: bytes
    frame_jpeg: bytes | None  # the whole frame of the chosen view, when the door asks for it
    view: int  # which of the subject's faces was chosen (index into the faces given)
    box: Box  # the chosen face's box in its frame


def best_view(faces: Sequence[Viewed]) -> int:
    """Index of the sharpest face among those at least ``NEAR_LARGEST`` of the largest width."""
    if not faces:
        raise ValueError("no face to choose from")
    widths = [f.box[2] - f.box[0] + 1 for f in faces]
    widest = max(widths)
    near = [i for i, w in enumerate(widths) if w >= NEAR_LARGEST * widest]
    if len(near) == 1:
        return near[0]
    return max(near, key=lambda i: sharpness(faces[i].chip))


def crop_box(box: Box, shape: tuple[int, ...], margin: float = MARGIN) -> Box:
    """The box grown by ``margin`` x its larger side on every side, clipped to the frame; inclusive."""
    height, width = shape[:2]
    side = max(box[2] - box[0] + 1, box[3] - box[1] + 1)
    pad = round(margin * side)
    left, top = max(0, box[0] - pad), max(0, box[1] - pad)
    right, bottom = min(width - 1, box[2] + pad), min(height - 1, box[3] + pad)
    if right < left or bottom < top:
        raise SnapshotError(f"the face box {box} lies outside the {width}x{height} frame")
    return left, top, right, bottom


def encode_jpeg(bgr: NDArray[np.uint8], quality: int) -> bytes:
    """Baseline JPEG of a BGR image; no metadata."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise SnapshotError("the JPEG encoder failed")
    return buf.tobytes()


def face_crop(
    frame: NDArray[np.uint8], box: Box, *, margin: float = MARGIN, max_side: int = MAX_SIDE_PX
) -> NDArray[np.uint8]:
    """The face with its margin, scaled down so that its longer side is at most ``max_side``."""
    left, top, right, bottom = crop_box(box, frame.shape, margin)
    crop = frame[top : bottom + 1, left : right + 1]
    longest = max(crop.shape[0], crop.shape[1])
    if longest > max_side:
        scale = max_side / longest
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return np.ascontiguousarray(crop)


def take_snapshot(
    frames: Sequence[NDArray[np.uint8]],
    faces: Sequence[Viewed],
    *,
    full_frame: bool = False,
    quality: int = 85,
) -> Snapshot | None:
    """The subject's best face as JPEG (and its whole frame with ``full_frame``); None without faces.

    ``frames[i]`` is the BGR frame in which ``faces[i]`` was found (the tracked subject's frames).
    """
    if len(frames) != len(faces):
        raise ValueError(f"{len(frames)} frames for {len(faces)} faces")
    if not faces:
        return None
    view = best_view(faces)
    frame, box = frames[view], faces[view].box
    face_jpeg = encode_jpeg(face_crop(frame, box), quality)
    frame_jpeg = encode_jpeg(frame, quality) if full_frame else None
    return Snapshot(face_jpeg=face_jpeg, frame_jpeg=frame_jpeg, view=view, box=box)
