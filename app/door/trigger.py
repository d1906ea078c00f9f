"""When to send a burst: a cheap local check that a face-sized subject is present and still.

The service does the real detection; this only keeps the door from posting every frame. OpenCV 5
wheels have no Haar cascades, so the fallback is the largest skin-tone blob of face size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

Box = tuple[int, int, int, int]  # x, y, w, h in source pixels
Image = NDArray[Any]  # BGR or grey uint8 frames, as OpenCV gives them


class FaceFinder(Protocol):
    def __call__(self, grey: Image, bgr_small: Image, min_side: int) -> Box | None: ...


def _largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


class SkinFinder:
    """The largest face-shaped skin-tone region (YCrCb thresholds) of at least min_side."""

    def __call__(self, grey: Image, bgr_small: Image, min_side: int) -> Box | None:
        ycrcb = cv2.cvtColor(bgr_small, cv2.COLOR_BGR2YCrCb)
        mask = cv2.inRange(ycrcb, (40, 135, 85), (250, 175, 135))
        kernel = np.ones((5, 5), np.uint8)
        mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes: list[Box] = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            # A face is roughly as tall as wide (neck and hair stretch it) and mostly filled.
            if min(w, h) >= min_side and 0.4 <= w / h <= 2.0 and cv2.contourArea(c) >= 0.4 * w * h:
                boxes.append((x, y, w, h))
        return _largest(boxes)


class HaarFinder:
    """OpenCV's frontal-face Haar cascade (present in OpenCV 4 wheels only)."""

    def __init__(self) -> None:
        # Attribute lookups by name: OpenCV 5 has neither, so its stubs do not know them.
        folder = getattr(cv2, "data").haarcascades  # noqa: B009
        path = os.path.join(folder, "haarcascade_frontalface_default.xml")
        self._cascade = getattr(cv2, "CascadeClassifier")(path)  # noqa: B009
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")

    def __call__(self, grey: Image, bgr_small: Image, min_side: int) -> Box | None:
        found = self._cascade.detectMultiScale(grey, 1.15, 4, minSize=(min_side, min_side))
        return _largest([tuple(int(v) for v in b) for b in found])  # type: ignore[misc]


def haar_available() -> bool:
    data = getattr(cv2, "data", None)
    return (
        hasattr(cv2, "CascadeClassifier")
        and data is not None
        and os.path.isfile(os.path.join(data.haarcascades, "haarcascade_frontalface_default.xml"))
    )


def make_finder(kind: Literal["auto", "haar", "skin"]) -> FaceFinder:
    if kind == "haar" or (kind == "auto" and haar_available()):
        return HaarFinder()
    return SkinFinder()


@dataclass(frozen=True)
class TriggerSettings:
    min_face_px: int
    still_s: float
    still_diff: float
    still_shift: float
    analysis_width: int = 320


class StillFaceTrigger:
    """Feed frames with their capture times; ``update`` says True once a face of at least min_face_px
    has been present and still (small box move, small grey-level change inside it) for still_s."""

    def __init__(self, settings: TriggerSettings, finder: FaceFinder) -> None:
        self.s = settings
        self.finder = finder
        self._prev_grey: Image | None = None
        self._prev_box: Box | None = None
        self._still_since: float | None = None
        self.last_box: Box | None = None  # in source pixels, for the preview window

    def reset(self) -> None:
        """Start over: the subject must be still for still_s again."""
        self._still_since = None

    def update(self, frame: Image, t: float) -> bool:
        scale = min(1.0, self.s.analysis_width / frame.shape[1])
        small = (
            frame
            if scale == 1.0
            else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        box = self.finder(grey, small, max(8, round(self.s.min_face_px * scale)))
        still = box is not None and self._is_still(grey, box)
        self._prev_grey, self._prev_box = grey, box
        self.last_box = None if box is None else tuple(round(v / scale) for v in box)
        if not still:
            self._still_since = t if box is not None else None
            return False
        if self._still_since is None:
            self._still_since = t
        return t - self._still_since >= self.s.still_s - 1e-6  # frame times are float sums

    def _is_still(self, grey: Image, box: Box) -> bool:
        prev, pbox = self._prev_grey, self._prev_box
        if prev is None or pbox is None or prev.shape != grey.shape:
            return False
        x, y, w, h = box
        shift = max(abs(x + w / 2 - pbox[0] - pbox[2] / 2), abs(y + h / 2 - pbox[1] - pbox[3] / 2))
        if shift > self.s.still_shift * w:
            return False
        diff = cv2.absdiff(grey[y : y + h, x : x + w], prev[y : y + h, x : x + w])
        return float(diff.mean()) <= self.s.still_diff
