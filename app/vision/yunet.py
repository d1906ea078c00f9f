"""Face detection with OpenCV Zoo's YuNet through ONNX Runtime, decoded as cv2.FaceDetectorYN does.

``models.convert_opencv_zoo.convert_yunet`` writes the network with a uint8 NHWC RGB input of any
size that is a multiple of 32. Around it, this module follows OpenCV's ``FaceDetectorYNImpl``
(objdetect/src/face_detect.cpp):

1. pad the image with zeros at the bottom and right to a multiple of 32;
2. per stride s in (8, 16, 32) and grid cell (row, col) of the padded image:
   score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1)), kept when score >= the score threshold;
   box centre ((col, row) + d[0:2]) * s, size exp(d[2:4]) * s; landmark k at ((col, row) + kps[k]) * s;
3. when more than one candidate is left, ``cv2.dnn.NMSBoxes`` on the boxes truncated to integers
   (score > threshold, stable sort by score, top_k, greedy IoU <= the NMS threshold).

Landmarks come in YuNet's order: the subject's right eye (the one with the smaller x in an
unmirrored photo), left eye, nose tip, right mouth corner (smaller x), left mouth corner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from app.vision.detector import Detection, InferenceSessionLike


@dataclass(frozen=True, eq=False)
class FaceDetection(Detection):
    """A detection with YuNet's five landmarks; ``box`` is inclusive ints like dlib's detector."""

    landmarks: NDArray[np.float64] = field(default_factory=lambda: np.zeros((5, 2)))  # (5, 2) x, y
    rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # YuNet's own x, y, w, h


@dataclass(frozen=True)
class YuNetConfig:
    input_name: str
    output_names: tuple[str, ...]  # cls, obj, bbox, kps, each for every stride in order
    strides: tuple[int, ...]
    divisor: int
    score_threshold: float
    nms_threshold: float
    top_k: int

    @classmethod
    def from_manifest(cls, details: Mapping[str, Any]) -> YuNetConfig:
        out = details["output"]
        strides = tuple(int(s) for s in out["strides"])
        names = tuple(str(n) for n in out["names"])
        if len(names) != 4 * len(strides):
            raise ValueError(f"expected cls/obj/bbox/kps outputs for strides {strides}, got {names}")
        return cls(
            input_name=str(details["input"]["name"]),
            output_names=names,
            strides=strides,
            divisor=int(details["input"]["size_multiple"]),
            score_threshold=float(details["score_threshold"]),
            nms_threshold=float(details["nms_threshold"]),
            top_k=int(details["top_k"]),
        )


# Context kept around a face when it is re-detected at full resolution, in face sizes per side.
REFINE_MARGIN = 0.5
# A detection on the crop is the coarse face's when their boxes overlap this much: the reduced
# frame's boxes of very large faces are shaped differently (IoU 0.47-0.5 with the whole frame's on
# LFW upscaled 5x), and the crop holds no other face that near.
REFINE_MIN_IOU = 0.3
# The narrowest face YuNet finds reliably, about twice its smallest anchor: a reduced frame keeps the
# smallest face the service uses at least this wide.
RELIABLE_FACE_PX = 20


def _iou(rect: NDArray[np.float64], rects: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of one (x, y, w, h) rect with each of rects (continuous coordinates)."""
    iw = np.minimum(rect[0] + rect[2], rects[:, 0] + rects[:, 2]) - np.maximum(rect[0], rects[:, 0])
    ih = np.minimum(rect[1] + rect[3], rects[:, 1] + rects[:, 3]) - np.maximum(rect[1], rects[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = rect[2] * rect[3] + rects[:, 2] * rects[:, 3] - inter
    out: NDArray[np.float64] = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def _round_half_up(v: NDArray[np.float64]) -> NDArray[np.int64]:
    return np.floor(v + 0.5).astype(np.int64)


def nms_boxes(
    boxes: NDArray[np.int64],
    scores: NDArray[np.float32],
    score_threshold: float,
    nms_threshold: float,
    top_k: int,
) -> NDArray[np.intp]:
    """cv2.dnn.NMSBoxes for integer (x, y, w, h) rects: kept indices, best score first."""
    cand = np.flatnonzero(scores > np.float32(score_threshold))
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    if 0 < top_k < cand.size:
        cand = cand[:top_k]
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    limit = np.float32(nms_threshold)
    while cand.size:
        i = int(cand[0])
        keep.append(i)
        rest = cand[1:]
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0).astype(np.float64)
        union = (area[i] + area[rest]).astype(np.float64) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.where(area[i] + area[rest] <= 0, 0.0, 1.0 - inter / union)
        # OpenCV: overlap = 1.f - (float)jaccardDistance, kept while overlap <= threshold.
        overlap = np.float32(1.0) - distance.astype(np.float32)
        cand = rest[overlap <= limit]
    return np.asarray(keep, dtype=np.intp)


class YuNetDetector:
    """YuNet on an ONNX Runtime session of the converted network (the session belongs to the caller)."""

    def __init__(
        self,
        session: InferenceSessionLike,
        details: Mapping[str, Any],
        *,
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        top_k: int | None = None,
    ) -> None:
        cfg = YuNetConfig.from_manifest(details)
        self.config = YuNetConfig(
            input_name=cfg.input_name,
            output_names=cfg.output_names,
            strides=cfg.strides,
            divisor=cfg.divisor,
            score_threshold=cfg.score_threshold if score_threshold is None else float(score_threshold),
            nms_threshold=cfg.nms_threshold if nms_threshold is None else float(nms_threshold),
            top_k=cfg.top_k if top_k is None else int(top_k),
        )
        self.session = session

    def detect(
        self, rgb: NDArray[np.uint8], *, scale: float = 1.0, min_size: int = 0, refine: bool = True
    ) -> list[FaceDetection]:
        """Faces in an HxWx3 RGB uint8 image, best first.

        ``scale`` < 1 finds the faces on a frame resized by that factor (area interpolation).
        YuNet's landmarks are only as precise as the resolution it sees (at 0.5 the SFace
        embedding of a door-frame face moves to a median cosine of 0.96 against full
        resolution), so with ``refine`` each face found is detected again at full resolution on
        a crop around it, aligned to the network's 32-pixel grid; the crop's detection replaces
        the coarse one when they overlap (IoU >= 0.3), and a coarse face the crop does not confirm
        is dropped (the reduced frame's false alarms, e.g. a painting behind a portrait, are
        ones the whole frame does not raise). ``min_size`` drops boxes narrower than that many
        pixels (0 keeps all). Boxes may extend past the image border.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        h, w = rgb.shape[:2]
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
            faces = self.faces(small)
            ratio = np.array([w / small.shape[1], h / small.shape[0]], dtype=np.float64)
            faces[:, 0:14] = (faces[:, 0:14].reshape(-1, 7, 2) * ratio).reshape(-1, 14)
            faces = faces[faces[:, 2] >= 0.8 * min_size]  # refining costs a run per face
            if refine and len(faces):
                faces = self.refine(rgb, faces)
        else:
            faces = self.faces(rgb)
        out: list[FaceDetection] = []
        for f in faces:
            x, y, bw, bh = (float(v) for v in f[:4])
            left, top = _round_half_up(np.array([x, y]))
            right, bottom = _round_half_up(np.array([x + bw, y + bh])) - 1
            if right - left + 1 < min_size:
                continue
            out.append(
                FaceDetection(
                    box=(int(left), int(top), int(right), int(bottom)),
                    score=float(f[14]),
                    landmarks=f[4:14].reshape(5, 2).copy(),
                    rect=(x, y, bw, bh),
                )
            )
        return out

    def refine(self, rgb: NDArray[np.uint8], coarse: NDArray[np.float64]) -> NDArray[np.float64]:
        """Face rows found on a reduced frame, re-detected at full resolution around each face;
        those not found again there are dropped."""
        h, w = rgb.shape[:2]
        d = self.config.divisor
        fine_rows: list[NDArray[np.float64]] = []
        for face in coarse:
            x, y, bw, bh = (float(v) for v in face[:4])
            margin = REFINE_MARGIN * max(bw, bh) + d
            # The crop starts on the 32-pixel grid, so every stride's cells fall where they
            # fall on the whole frame; the zero padding past its far edges is a margin away.
            x0 = max(0, int((x - margin) // d) * d)
            y0 = max(0, int((y - margin) // d) * d)
            x1 = min(w, x0 + -(-int(np.ceil(x + bw + margin - x0)) // d) * d)
            y1 = min(h, y0 + -(-int(np.ceil(y + bh + margin - y0)) // d) * d)
            found = self.faces(rgb[y0:y1, x0:x1]) if x1 > x0 and y1 > y0 else np.zeros((0, 15))
            if len(found):
                # x, y and the landmarks move with the crop; the width and height (columns 2, 3) do not.
                found[:, [0, 4, 6, 8, 10, 12]] += x0
                found[:, [1, 5, 7, 9, 11, 13]] += y0
                overlap = _iou(face[:4], found[:, :4])
                best = int(np.argmax(overlap))
                if overlap[best] >= REFINE_MIN_IOU:
                    fine_rows.append(found[best])
        if not fine_rows:
            return np.zeros((0, 15), dtype=np.float64)
        fine = np.stack(fine_rows)
        return fine[np.argsort(-fine[:, 14], kind="stable")]

    def faces(self, rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
        """cv2.FaceDetectorYN.detect's rows for this image: [N, 15] x, y, w, h, 5 x (x, y), score."""
        cfg = self.config
        h, w = rgb.shape[:2]
        if h == 0 or w == 0:
            return np.zeros((0, 15), dtype=np.float64)
        pad_h = -(-h // cfg.divisor) * cfg.divisor
        pad_w = -(-w // cfg.divisor) * cfg.divisor
        padded = np.zeros((1, pad_h, pad_w, 3), dtype=np.uint8)
        padded[0, :h, :w] = rgb
        outputs = self.session.run(list(cfg.output_names), {cfg.input_name: padded})
        return self.decode([np.asarray(o, dtype=np.float32) for o in outputs], pad_h, pad_w)

    def decode(self, outputs: Sequence[NDArray[np.float32]], pad_h: int, pad_w: int) -> NDArray[np.float64]:
        """The network's twelve outputs (batch 1) -> NMS-ed face rows, best first."""
        cfg = self.config
        n = len(cfg.strides)
        rows_out: list[NDArray[np.float32]] = []
        for i, stride in enumerate(cfg.strides):
            cols = pad_w // stride
            cls_, obj = outputs[i].reshape(-1), outputs[i + n].reshape(-1)
            bbox, kps = outputs[i + 2 * n].reshape(-1, 4), outputs[i + 3 * n].reshape(-1, 10)
            score = np.sqrt(np.clip(cls_, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
            idx = np.flatnonzero(score >= np.float32(cfg.score_threshold))
            if idx.size == 0:
                continue
            s = np.float32(stride)
            grid = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (col, row)
            b = bbox[idx]
            centre = (grid + b[:, 0:2]) * s
            size = np.exp(b[:, 2:4]) * s
            corner = centre - size / np.float32(2.0)
            points = (kps[idx].reshape(-1, 5, 2) + grid[:, None, :]) * s
            rows_out.append(
                np.concatenate(
                    [corner, size, points.reshape(-1, 10), score[idx, None]], axis=1, dtype=np.float32
                )
            )
        if not rows_out:
            return np.zeros((0, 15), dtype=np.float64)
        faces = np.concatenate(rows_out)
        if len(faces) > 1:
            rects = np.trunc(faces[:, 0:4]).astype(np.int64)  # OpenCV's Rect2i(int(x), ...)
            keep = nms_boxes(rects, faces[:, 14], cfg.score_threshold, cfg.nms_threshold, cfg.top_k)
            faces = faces[keep]
        return faces.astype(np.float64)

    def warm_up(self, height: int = 480, width: int = 640) -> None:
        self.faces(np.zeros((height, width, 3), dtype=np.uint8))

    def close(self) -> None:
        """Nothing of its own to release: the session belongs to the caller."""
