"""dlib's 5-point shape predictor (an ensemble of regression trees) in numpy, bit for bit.

dlib (shape_predictor.h) starts from a mean shape normalized to the face box and runs 15
cascades. Each cascade:

1. finds the similarity transform from the mean shape to the current shape (double, then its
   2x2 part cast to float32);
2. places its 800 feature pixels: ``tform * delta + current[anchor]`` in float32, mapped into
   the image by the box transform in double and rounded with ``floor(v + 0.5)``;
3. reads each pixel's intensity ``(R + G + B) // 3`` (0 outside the image);
4. runs 500 depth-4 trees: at node i go to ``2i + 1`` if ``f[a] - f[b] > thresh`` else
   ``2i + 2``; adds the reached leaf vectors to the shape in float32, tree by tree.

The result is mapped to the image and rounded the same way: dlib's ``part(i)`` are integers.

Vectorised per cascade: all 7500 split tests at once, then the 15 test bits of a tree are
packed into an integer that indexes a table of leaves, and the 500 leaf vectors are summed with
a sequential cumulative sum (the same float32 rounding as dlib's loop).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.vision.align import find_affine_transform, find_similarity_transform

Box = tuple[int, int, int, int]

_NPZ_KEYS = (
    "initial_shape",
    "split_idx1",
    "split_idx2",
    "split_thresh",
    "leaf_values",
    "anchor_idx",
    "deltas",
)


def _leaf_table(depth: int) -> NDArray[np.intp]:
    """For every pattern of a tree's split outcomes (bit i = "went left at node i"), its leaf."""
    splits = (1 << depth) - 1
    patterns = np.arange(1 << splits, dtype=np.int64)
    node = np.zeros_like(patterns)
    for _ in range(depth):
        left = (patterns >> node) & 1
        node = 2 * node + 2 - left
    return (node - splits).astype(np.intp)


_F32 = struct.Struct("<f")


def _to_f32(v: float) -> float:
    """Round a double to float32 (round to nearest even), returned as a double."""
    return float(_F32.unpack(_F32.pack(v))[0])


def _similarity_float32(ref: Sequence[Sequence[float]], cur: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """dlib ``find_tform_between_shapes(ref, cur).get_m()`` cast to float32, row-major.

    A 2-D similarity has a closed form equal to Umeyama's SVD solution up to double rounding,
    which the cast to float32 removes. Only when a value is within a relative 1e-12 of a
    float32 rounding boundary do we run dlib's own SVD, so the cast rounds exactly as dlib's.
    """
    n = float(len(ref))
    mfx = sum(p[0] for p in ref) / n
    mfy = sum(p[1] for p in ref) / n
    mtx = sum(p[0] for p in cur) / n
    mty = sum(p[1] for p in cur) / n
    sigma = a = b = 0.0
    for (rx, ry), (cx, cy) in zip(ref, cur, strict=True):
        fx, fy, tx, ty = rx - mfx, ry - mfy, cx - mtx, cy - mty
        sigma += fx * fx + fy * fy
        a += tx * fx + ty * fy  # n * (cov00 + cov11)
        b += ty * fx - tx * fy  # n * (cov10 - cov01)
    if sigma != 0:
        vals = (a / sigma, -b / sigma, b / sigma, a / sigma)
        out = tuple(_to_f32(v) for v in vals)
        stable = all(
            _to_f32(v * (1 + 1e-12)) == o and _to_f32(v * (1 - 1e-12)) == o
            for v, o in zip(vals, out, strict=True)
        )
        if stable:
            return out
    (m00, m01), (m10, m11) = find_similarity_transform(ref, cur)[0]
    return tuple(_to_f32(v) for v in (m00, m01, m10, m11))


@dataclass(frozen=True)
class _BoxMap:
    """dlib's box transform (normalized shape space -> image) as (2, 1) columns for broadcasting."""

    col0: NDArray[np.float64]
    col1: NDArray[np.float64]
    offset: NDArray[np.float64]
    last_pixel: NDArray[np.float64]  # (width - 1, height - 1): get_rect(img).contains()


class LandmarkPredictor:
    """dlib's ``shape_predictor`` from the arrays written by ``models.convert_shape_predictor``."""

    def __init__(
        self,
        *,
        initial_shape: NDArray[np.float32],
        split_idx1: NDArray[np.integer],
        split_idx2: NDArray[np.integer],
        split_thresh: NDArray[np.float32],
        leaf_values: NDArray[np.float32],
        anchor_idx: NDArray[np.integer],
        deltas: NDArray[np.float32],
    ) -> None:
        cascades, trees, splits = split_thresh.shape
        depth = (splits + 1).bit_length() - 1
        parts = initial_shape.shape[0]
        if (1 << depth) - 1 != splits or leaf_values.shape[:3] != (cascades, trees, splits + 1):
            raise ValueError("trees must be complete binary trees with one leaf vector per leaf")
        if initial_shape.shape != (parts, 2) or leaf_values.shape[3:] != (parts, 2):
            raise ValueError("shape arrays must be (parts, 2)")
        self.num_parts = parts
        self.initial_shape = np.ascontiguousarray(initial_shape, dtype=np.float32)
        # Per cascade: split features as flat indices into that cascade's 800 pixel values.
        self._idx1 = np.ascontiguousarray(split_idx1.reshape(cascades, -1), dtype=np.intp)
        self._idx2 = np.ascontiguousarray(split_idx2.reshape(cascades, -1), dtype=np.intp)
        self._thresh = np.ascontiguousarray(split_thresh.reshape(cascades, -1), dtype=np.float32)
        self._leaves = np.ascontiguousarray(leaf_values.reshape(cascades, trees * (splits + 1), parts * 2))
        self._leaf_base = np.arange(trees, dtype=np.intp) * (splits + 1)
        self._bit_weights = (1 << np.arange(splits, dtype=np.int64)).reshape(1, splits)
        self._leaf_of_pattern = _leaf_table(depth)
        self._anchor = np.ascontiguousarray(anchor_idx, dtype=np.intp)
        self._delta = np.ascontiguousarray(deltas.transpose(0, 2, 1), dtype=np.float32)  # (cascade, 2, N)
        self._ref_points = self.initial_shape.tolist()
        self._trees = trees
        self._splits = splits

    @classmethod
    def from_npz(cls, path: Path) -> LandmarkPredictor:
        with np.load(path) as z:
            missing = [k for k in _NPZ_KEYS if k not in z]
            if missing:
                raise ValueError(f"{path}: not a shape predictor npz (missing {missing})")
            return cls(**{k: z[k] for k in _NPZ_KEYS})

    # -- public API ---------------------------------------------------------------------
    def predict(self, rgb: NDArray[np.uint8], box: Box) -> NDArray[np.float64]:
        """dlib's ``shape.part(i)`` for the face in ``box`` (left, top, right, bottom, inclusive).

        Returns (num_parts, 2) integer-valued (x, y) floats: dlib rounds every part to a pixel
        with ``floor(v + 0.5)``, and so do we.
        """
        return np.floor(self.predict_float(rgb, box) + 0.5)

    def predict_float(self, rgb: NDArray[np.uint8], box: Box) -> NDArray[np.float64]:
        """The final shape in image coordinates, before dlib rounds it to integer points."""
        return self._predict_float(self._checked_image(rgb), box)

    def predict_many(self, rgb: NDArray[np.uint8], boxes: Sequence[Box]) -> list[NDArray[np.float64]]:
        """``predict`` for each box of one image."""
        img = self._checked_image(rgb)
        return [np.floor(self._predict_float(img, box) + 0.5) for box in boxes]

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _checked_image(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
            raise ValueError("expected a uint8 image shaped (H, W, 3) RGB or (H, W) gray")
        return np.ascontiguousarray(rgb)

    @staticmethod
    def _box_map(box: Box, img: NDArray[np.uint8]) -> _BoxMap:
        """dlib unnormalizing_tform: (0,0)->tl, (1,0)->tr, (1,1)->br through dlib's pseudo-inverse.

        Its matrix is only close to diag(right - left, bottom - top) (note: not + 1); the exact
        residue of dlib's SVD decides pixels that land on a half.
        """
        left, top, right, bottom = (int(v) for v in box)
        ((m00, m01), (m10, m11)), (b0, b1) = find_affine_transform(
            [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)],
            [(float(left), float(top)), (float(right), float(top)), (float(right), float(bottom))],
        )
        h, w = img.shape[:2]
        return _BoxMap(
            col0=np.array([[m00], [m10]]),
            col1=np.array([[m01], [m11]]),
            offset=np.array([[b0], [b1]]),
            last_pixel=np.array([[w - 1], [h - 1]], dtype=np.float64),
        )

    def _predict_float(self, img: NDArray[np.uint8], box: Box) -> NDArray[np.float64]:
        box_map = self._box_map(box, img)
        shape = self._run(img, box_map).T.astype(np.float64)  # (2, parts)
        points: NDArray[np.float64] = ((box_map.col0 * shape[0] + box_map.col1 * shape[1]) + box_map.offset).T
        return points

    @staticmethod
    def _pixel_values(
        img: NDArray[np.uint8], pts: NDArray[np.float32], box_map: _BoxMap
    ) -> NDArray[np.int32]:
        """Intensities at feature points ``pts`` (2, N) float32 in shape space, 0 outside the image."""
        p64 = pts.astype(np.float64)
        # dlib: point(m*p + b), i.e. floor(v + 0.5) of the same double operations, element-wise.
        xy = np.floor(((box_map.col0 * p64[0] + box_map.col1 * p64[1]) + box_map.offset) + 0.5)
        inside = (xy >= 0) & (xy <= box_map.last_pixel)
        inside = inside[0] & inside[1]
        if img.size == 0:
            return np.zeros(pts.shape[1], dtype=np.int32)
        flat = np.where(inside, xy[1] * img.shape[1] + xy[0], 0).astype(np.intp)
        if img.ndim == 3:
            rgb = img.reshape(-1, 3)[flat].astype(np.int32)
            vals = (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) // 3  # dlib rgb -> gray: truncating average
        else:
            vals = img.reshape(-1)[flat].astype(np.int32)
        vals[~inside] = 0
        return vals

    def _run(self, img: NDArray[np.uint8], box_map: _BoxMap) -> NDArray[np.float32]:
        """The cascade, in dlib's normalized box coordinates; returns (num_parts, 2) float32."""
        cur = self.initial_shape.copy()
        for k in range(self._idx1.shape[0]):
            t00, t01, t10, t11 = _similarity_float32(self._ref_points, cur.tolist())
            t_col0 = np.array([[t00], [t10]], dtype=np.float32)
            t_col1 = np.array([[t01], [t11]], dtype=np.float32)
            # float32 like dlib: (m*delta) + current[anchor], per coordinate (m00*dx + m01*dy) + ax
            pts = (t_col0 * self._delta[k][0] + t_col1 * self._delta[k][1]) + cur[self._anchor[k]].T
            f = self._pixel_values(img, pts, box_map)
            went_left = (f[self._idx1[k]] - f[self._idx2[k]]) > self._thresh[k]
            pattern = (went_left.reshape(self._trees, self._splits) * self._bit_weights).sum(axis=1)
            leaves = self._leaves[k][self._leaf_base + self._leaf_of_pattern[pattern]]
            # current_shape += leaf, tree after tree, in float32: a cumulative sum keeps that order
            # (np.sum could pair terms up and round differently).
            stacked = np.concatenate([cur.reshape(1, -1), leaves], axis=0)
            cur = np.cumsum(stacked, axis=0, dtype=np.float32)[-1].reshape(self.num_parts, 2)
        return cur
