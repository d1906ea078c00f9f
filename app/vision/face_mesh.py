"""MediaPipe's 468-point face mesh (ONNX, see models.convert_face_mesh) on a face box or a track.

MediaPipe's ROI rule: a square of the face box's long side x 1.5 around the box centre, rotated so
that the eye line is horizontal, resampled to 192x192 (bilinear, border replicated). In a track
the next frame's ROI comes from the previous mesh (its bounding box, points 33 -> 263 for the
angle), as MediaPipe's FaceLandmarkLandmarksToRoi does.

Coordinates are OpenCV's: pixel (i, j) has its centre at (i, j). Points come back in image pixels
with z scaled like x (the crop's pixels times side / 192); z is relative depth, smaller = nearer
the camera, centred near the face's middle, and a flat print still gets a face-like z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from app.vision.manifest import ModelArtifactError

Box = tuple[int, int, int, int]  # left, top, right, bottom, inclusive
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # on the image's left and right for an upright face


class OrtSession(Protocol):
    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...

    def get_inputs(self) -> list[Any]: ...


@dataclass(frozen=True)
class MeshRoi:
    """A rotated square in the image: centre (pixel-centre coordinates), side in pixels, angle in
    radians of the crop's x axis in the image (y down, so positive turns clockwise on screen)."""

    cx: float
    cy: float
    side: float
    angle: float

    def affine(self, size: int) -> NDArray[np.float64]:
        """2x3 map from image pixel coordinates to crop pixel coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = size / self.side
        # crop continuous u = k * R^T (x_cont - centre_cont) + size / 2; both pixel-centre shifts
        # of 0.5 cancel except on the crop side.
        rot = np.array([[c, s], [-s, c]]) * k
        shift = size / 2 - 0.5 - rot @ np.array([self.cx, self.cy])
        return np.hstack([rot, shift[:, None]])


def eye_angle(eyes: NDArray[np.float64]) -> float:
    """Angle of the line from the eye on the image's left (row 0) to the other (row 1)."""
    (x0, y0), (x1, y1) = eyes[0], eyes[1]
    return math.atan2(y1 - y0, x1 - x0)


def roi_from_box(box: Box, eyes: NDArray[np.float64] | None = None, scale: float = 1.5) -> MeshRoi:
    """MediaPipe's detection ROI: the box's centre, long side x scale, eye line horizontal."""
    left, top, right, bottom = box
    side = max(right - left + 1, bottom - top + 1) * scale
    angle = 0.0 if eyes is None else eye_angle(np.asarray(eyes, dtype=np.float64))
    return MeshRoi((left + right) / 2, (top + bottom) / 2, float(side), angle)


def roi_from_mesh(points: NDArray[np.float64], scale: float = 1.5) -> MeshRoi:
    """MediaPipe's tracking ROI from a previous mesh: its x-y bounding box, 33 -> 263 upright.

    MediaPipe takes the box of the points in image axes (LandmarksToDetection), not in the
    rotated frame; so does this.
    """
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    side = float(max(hi - lo)) * scale
    angle = eye_angle(points[[RIGHT_EYE_OUTER, LEFT_EYE_OUTER], :2])
    return MeshRoi(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, side, angle)


class FaceMesh:
    def __init__(self, session: OrtSession, details: dict[str, Any], max_batch: int = 16) -> None:
        inp, outs = details["input"], details["outputs"]
        ins = session.get_inputs()
        size = int(details["crop"]["size"])
        if (
            len(ins) != 1
            or ins[0].name != inp["name"]
            or ins[0].type != "tensor(uint8)"
            or list(ins[0].shape[1:]) != [size, size, 3]
        ):
            raise ModelArtifactError(
                f"face mesh graph does not match its manifest entry (input {inp['name']} uint8 "
                f"{size}x{size}x3); run `facegate models build --force`"
            )
        self._session = session
        self._input = str(inp["name"])
        self._outputs = [str(outs["landmarks"]["name"]), str(outs["face_score"]["name"])]
        self.size = size
        self.scale = float(details["crop"]["scale"])
        self.threshold = float(details["crop"].get("presence_threshold", 0.5))
        self.max_batch = max_batch

    def crop_roi(self, rgb: NDArray[np.uint8], roi: MeshRoi) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        affine = roi.affine(self.size)
        patch = cv2.warpAffine(
            rgb, affine, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return np.ascontiguousarray(patch, dtype=np.uint8), affine

    def crop(
        self, rgb: NDArray[np.uint8], box: Box, eyes: NDArray[np.float64] | None = None
    ) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        """The 192x192 RGB patch MediaPipe would feed, and the 2x3 image -> patch map."""
        return self.crop_roi(rgb, roi_from_box(box, eyes, self.scale))

    def run(self, patches: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Patches [N, 192, 192, 3] uint8 RGB -> points [N, 468, 3] in patch pixels, scores [N]."""
        if patches.ndim != 4 or patches.shape[1:] != (self.size, self.size, 3) or patches.dtype != np.uint8:
            raise ValueError(f"expected uint8 patches of shape [N, {self.size}, {self.size}, 3]")
        if len(patches) == 0:
            return np.zeros((0, 468, 3), np.float32), np.zeros(0, np.float32)
        points, scores = [], []
        for i in range(0, len(patches), self.max_batch):
            lm, sc = self._session.run(
                self._outputs, {self._input: np.ascontiguousarray(patches[i : i + self.max_batch])}
            )
            points.append(np.asarray(lm, np.float32))
            scores.append(np.asarray(sc, np.float32).reshape(-1))
        return np.concatenate(points), np.concatenate(scores)

    def to_image(self, points: NDArray[np.float32], affine: NDArray[np.float64]) -> NDArray[np.float64]:
        """Patch points (468, 3) -> image pixels; z scaled by the same factor as x and y."""
        inv = cv2.invertAffineTransform(affine)
        xy = points[:, :2].astype(np.float64) @ inv[:, :2].T + inv[:, 2]
        z = points[:, 2:3].astype(np.float64) * math.sqrt(abs(np.linalg.det(inv[:, :2])))
        return np.hstack([xy, z])

    def predict_rois(
        self, frames: Sequence[NDArray[np.uint8]], rois: Sequence[MeshRoi]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """One ROI per frame, one batched run: points [F, 468, 3] in image pixels, scores [F]."""
        if len(frames) != len(rois):
            raise ValueError("one ROI per frame")
        crops = [self.crop_roi(f, r) for f, r in zip(frames, rois, strict=True)]
        if not crops:
            return np.zeros((0, 468, 3)), np.zeros(0, np.float32)
        raw, scores = self.run(np.stack([p for p, _ in crops]))
        pts = np.stack([self.to_image(raw[i], a) for i, (_, a) in enumerate(crops)])
        return pts, scores

    def predict(
        self, rgb: NDArray[np.uint8], box: Box, eyes: NDArray[np.float64] | None = None
    ) -> tuple[NDArray[np.float64], float]:
        """Mesh of the face in box: points (468, 3) in image pixels (z like x), presence score."""
        pts, scores = self.predict_rois([rgb], [roi_from_box(box, eyes, self.scale)])
        return pts[0], float(scores[0])

    def predict_batch(
        self,
        frames: Sequence[NDArray[np.uint8]],
        boxes: Sequence[Box],
        eyes: Sequence[NDArray[np.float64] | None] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """Several frames' faces in one run: points [F, 468, 3], scores [F]."""
        eye_list = list(eyes) if eyes is not None else [None] * len(boxes)
        rois = [roi_from_box(b, e, self.scale) for b, e in zip(boxes, eye_list, strict=True)]
        return self.predict_rois(frames, rois)

    def track(
        self,
        frames: Sequence[NDArray[np.uint8]],
        box: Box,
        eyes: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
        """MediaPipe's tracking over a burst: frame 0 from the box, each next frame from the previous
        mesh (sequential, so one run per frame). A frame whose score falls below the presence
        threshold restarts from the box.

        Only for video-rate frames. At burst rates (about 5 fps) a hand-held print moves too far
        between frames: on NUAA print runs the ROI lagged, the mesh landed on the nose and mouth,
        and the presence score stayed at 1.0. With a detection per frame, use predict_batch."""
        points: list[NDArray[np.float64]] = []
        scores: list[float] = []
        roi = roi_from_box(box, eyes, self.scale)
        for frame in frames:
            pts, sc = self.predict_rois([frame], [roi])
            points.append(pts[0])
            scores.append(float(sc[0]))
            roi = (
                roi_from_mesh(pts[0], self.scale)
                if sc[0] >= self.threshold
                else roi_from_box(box, eyes, self.scale)
            )
        if not points:
            return np.zeros((0, 468, 3)), np.zeros(0, np.float32)
        return np.stack(points), np.asarray(scores, np.float32)

    def warm_up(self) -> None:
        self.run(np.zeros((1, self.size, self.size, 3), dtype=np.uint8))
