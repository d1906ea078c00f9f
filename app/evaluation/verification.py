"""Verification (1:1) metrics: accuracy at a threshold and cross-validated threshold choice.

A pair is predicted "same" when its distance is strictly below τ, as the door decides. A pair
with a missing distance (no face found in one image) is always an error, the strict LFW reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FoldResult:
    fold: int
    tau: float
    accuracy: float
    pairs: int


def accuracy_at(distances: NDArray[np.float64], same: NDArray[np.bool_], tau: float) -> float:
    """Fraction of pairs decided correctly at τ; NaN distances count as errors."""
    if len(distances) == 0:
        raise ValueError("no pairs")
    valid = ~np.isnan(distances)
    predicted_same = np.zeros(len(distances), dtype=bool)
    predicted_same[valid] = distances[valid] < tau
    correct = (predicted_same == same) & valid
    return float(correct.mean())


def best_threshold(distances: NDArray[np.float64], same: NDArray[np.bool_]) -> float:
    """τ maximising accuracy; candidates are midpoints between sorted distances (ties: smallest τ)."""
    d = np.unique(distances[~np.isnan(distances)])
    if len(d) == 0:
        raise ValueError("no measurable pairs")
    candidates = np.concatenate([[d[0] - 1e-6], (d[:-1] + d[1:]) / 2.0, [d[-1] + 1e-6]])
    scores = [accuracy_at(distances, same, float(t)) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def cross_validated(
    distances: NDArray[np.float64], same: NDArray[np.bool_], folds: NDArray[np.int64]
) -> list[FoldResult]:
    """For each fold: τ chosen on the other folds, accuracy measured on this one."""
    results = []
    for fold in np.unique(folds):
        test = folds == fold
        tau = best_threshold(distances[~test], same[~test])
        results.append(
            FoldResult(int(fold), tau, accuracy_at(distances[test], same[test], tau), int(test.sum()))
        )
    return results


def split_folds(same: NDArray[np.bool_], k: int = 10) -> NDArray[np.int64]:
    """Deterministic folds 1..k for a pairs list that came without them (identity-agnostic).

    Same pairs are dealt round-robin first, then the different pairs continue the deal, so every
    fold holds a near-equal share of each class and no fold is empty while there are k pairs.
    """
    if k < 2:
        raise ValueError("need at least 2 folds")
    labels = np.asarray(same, dtype=bool)
    k = min(k, len(labels))
    if k < 2:
        raise ValueError("need at least 2 pairs to make folds")
    order = np.concatenate([np.flatnonzero(labels), np.flatnonzero(~labels)])
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = np.arange(len(labels)) % k + 1
    return folds
