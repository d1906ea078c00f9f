"""Verification as binary classification: a logistic head over a pair of encodings.

The alternative to thresholding the L2 distance: p(same | a, b) = sigmoid(w · φ(a, b) + b0), with φ
one of two element-wise pair features (both symmetric in a and b):

``abs``
    |a - b|, one weight per dimension: a learned, per-dimension weighted L1 distance.
``chi2``
    (a - b)² / (a + b + 2c), the symmetric χ² form. χ² compares histograms, i.e. non-negative
    vectors, and dlib's encodings are not (components lie in about ±0.3). Applying it to |a|, |b|
    would call a component and its negation identical, so instead each dimension is shifted by
    a constant c_d > 0 chosen on the training encodings (c_d = max |f_d| seen, plus a margin):
    on the shifted values a + c, b + c, all positive, the numerator (a - b)² is unchanged and
    the denominator is (a + c) + (b + c). On encodings outside the training range the
    denominator is floored at ``CHI2_MIN_DENOMINATOR`` so the feature stays finite.

The head is trained offline by ``models/train_pair_classifier.py`` (on LFW pairs that are not
shipped) and exported to ONNX with a JSON sidecar; the service does not use it. This module
holds what the app would need: the numpy reference model and a loader that verifies and scores
with the ONNX file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.vision.manifest import ModelArtifactError, sha256_file
from app.vision.runtime import create_session

FeatureKind = Literal["abs", "chi2"]
FEATURE_KINDS: tuple[FeatureKind, ...] = ("abs", "chi2")
CHI2_MIN_DENOMINATOR = 1e-3
SIDECAR_FORMAT = 1
INPUT_A, INPUT_B, OUTPUT = "a", "b", "p_same"


def sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Numerically stable logistic function."""
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def pair_features(
    a: NDArray[np.floating[Any]],
    b: NDArray[np.floating[Any]],
    kind: FeatureKind,
    shift: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """φ(a, b) for encodings a, b of shape [N, D] (float64 out)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape or a64.ndim != 2:
        raise ValueError(f"expected two [N, D] arrays of one shape, got {a64.shape} and {b64.shape}")
    diff = a64 - b64
    if kind == "abs":
        return np.abs(diff)
    if shift is None or shift.shape != (a64.shape[1],):
        raise ValueError("the chi2 feature needs a per-dimension shift of shape [D]")
    denominator = np.maximum(a64 + b64 + 2.0 * shift, CHI2_MIN_DENOMINATOR)
    return np.asarray(diff * diff / denominator, dtype=np.float64)


def chi2_shift(encodings: NDArray[np.floating[Any]], margin: float = 0.05) -> NDArray[np.float64]:
    """c_d = max |f_d| over the training encodings plus a margin: every shifted value is > 0."""
    return np.asarray(np.abs(encodings).max(axis=0) + margin, dtype=np.float64)


@dataclass(frozen=True)
class PairHead:
    """The numpy reference model; weights act on the raw (unstandardised) features."""

    kind: FeatureKind
    weights: NDArray[np.float64]  # [D]
    bias: float
    shift: NDArray[np.float64] | None = None  # [D], chi2 only

    def features(self, a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        return pair_features(a, b, self.kind, self.shift)

    def logit(self, a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        return np.asarray(self.features(a, b) @ self.weights + self.bias, dtype=np.float64)

    def predict(self, a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """p(same) for each pair of rows."""
        return sigmoid(self.logit(a, b))


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


class PairClassifier:
    """The exported ONNX head, verified against its sidecar, scoring pairs of encodings."""

    def __init__(self, path: Path, *, model_version: str | None = None) -> None:
        meta_path = sidecar_path(path)
        if not path.is_file() or not meta_path.is_file():
            raise ModelArtifactError(
                f"{path}: pair classifier or its sidecar {meta_path.name} is missing; "
                "run models/train_pair_classifier.py"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelArtifactError(f"{meta_path}: unreadable sidecar ({exc.__class__.__name__})") from exc
        if meta.get("format") != SIDECAR_FORMAT:
            raise ModelArtifactError(
                f"{meta_path}: sidecar format {meta.get('format')}, expected {SIDECAR_FORMAT}"
            )
        digest = sha256_file(path)
        if digest != meta.get("sha256"):
            raise ModelArtifactError(f"{path}: checksum {digest[:12]}… does not match its sidecar")
        if model_version is not None and meta.get("encoder_model_version") != model_version:
            # A head is trained on one encoder's vectors (flip-averaged or not): it means nothing on others.
            raise ModelArtifactError(
                f"{path}: trained on encodings of {meta.get('encoder_model_version')}, "
                f"the pipeline makes {model_version}"
            )
        self.meta: dict[str, Any] = meta
        self.threshold = float(meta.get("threshold", 0.5))
        self._session = create_session(path, providers=("CPUExecutionProvider",))

    def score(self, a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
        """p(same) for each pair of rows of a and b ([N, 128] float32 each)."""
        a32 = np.ascontiguousarray(np.atleast_2d(a), dtype=np.float32)
        b32 = np.ascontiguousarray(np.atleast_2d(b), dtype=np.float32)
        if a32.shape != b32.shape:
            raise ValueError(f"encodings of different shapes: {a32.shape} and {b32.shape}")
        out = self._session.run([OUTPUT], {INPUT_A: a32, INPUT_B: b32})[0]
        return np.asarray(out, dtype=np.float32)

    def same(self, a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.bool_]:
        """The decision at the sidecar's threshold."""
        return self.score(a, b) >= self.threshold
