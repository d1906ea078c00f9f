"""Distances in a profile's own metric, computed through FAISS's Euclidean search.

FAISS searches by Euclidean (L2) distance. For the cosine metric the stored and query vectors are
unit length, so ``1 - cos(a, b) = |a - b|^2 / 2``: the same neighbours in the same order, and one
monotone map turns an L2 distance into the profile's distance. Every threshold (tau, calibration,
look-alikes) is then stated in the profile's metric.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

# "fused": the fusion profile's score, stored like cosine as a vector whose half squared L2
# distance is the score (see app.vision.profiles).
Metric = Literal["l2", "cosine", "fused"]
METRICS: tuple[Metric, ...] = ("l2", "cosine", "fused")


def check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return metric


def from_l2(l2: NDArray[np.floating[Any]], metric: Metric) -> NDArray[np.float64]:
    """Euclidean distances between stored vectors -> distances in ``metric``."""
    d = np.asarray(l2, dtype=np.float64)
    if metric != "l2":
        return d * d * 0.5
    return d


def from_squared_l2(sq: NDArray[np.floating[Any]], metric: Metric) -> NDArray[np.float64]:
    """Squared Euclidean distances (what FAISS returns) -> distances in ``metric``."""
    d = np.maximum(np.asarray(sq, dtype=np.float64), 0.0)
    if metric != "l2":
        return d * 0.5
    return np.sqrt(d)


def unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero): what the cosine metric stores."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (v / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return out
