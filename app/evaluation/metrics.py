"""Error-rate metrics over distance scores: ROC, TAR@FAR, EER, DET, FNIR@FPIR, rank-1. Pure numpy.

Conventions, the same as the door's: a score is a Euclidean distance (smaller = more alike) and
a comparison is *accepted* when its distance is strictly below τ. A missing score (no face found)
is passed as NaN or +inf and is never accepted: a genuine pair or mated search without a face is
a false reject, an impostor pair or non-mated search without a face is a correct reject. Both
stay in the denominators (NIST counts failures to enrol/acquire as errors, not as absent).

Verification (1:1) has genuine and impostor *pairs*: FAR(τ) = impostors accepted, TAR(τ) =
genuine accepted, FRR = 1 - TAR.

Identification (1:N, NIST FRVT 1:N, Grother et al., NISTIR 8271) has *searches*:

- FPIR(τ): fraction of non-mated searches (the person is not enrolled) whose best candidate is
  within τ; the score of a non-mated search is its rank-1 distance.
- FNIR(τ): fraction of mated searches whose mate is not returned at rank 1 within τ; the score
  of a mated search is its rank-1 distance when the rank-1 person is the mate, else +inf (a miss
  at every τ).

Both are the same error trade-off over two score sets, so one function computes both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# floor(rate * n) with a rate like 0.003 must not lose a count to 2.9999999999999996.
_COUNT_EPS = 1e-9


@dataclass(frozen=True)
class Tradeoff:
    """Error trade-off at every distinct threshold, τ ascending.

    ``false_accept[i]``: fraction of negatives (impostor pairs / non-mated searches) accepted at
    ``thresholds[i]``; ``false_reject[i]``: fraction of positives (genuine pairs / mated searches)
    not accepted. The first point accepts nothing, the last everything finite.
    """

    thresholds: NDArray[np.float64]
    false_accept: NDArray[np.float64]
    false_reject: NDArray[np.float64]
    positives: int
    negatives: int

    @property
    def true_accept(self) -> NDArray[np.float64]:
        return 1.0 - self.false_reject


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and its error rates (FAR/FPIR and FRR/FNIR)."""

    tau: float
    false_accept: float
    false_reject: float

    @property
    def true_accept(self) -> float:
        return 1.0 - self.false_reject


def _clean(scores: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """Scores as float64 with NaN (no face) turned into +inf, which no threshold accepts."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"no {name}")
    return np.where(np.isnan(arr), np.inf, arr)


def accepted_fraction(scores: NDArray[np.float64], tau: float) -> float:
    """Fraction of scores strictly below τ (NaN never is)."""
    arr = _clean(scores, "scores")
    return float(np.count_nonzero(arr < tau) / len(arr))


def tradeoff(positive: NDArray[np.float64], negative: NDArray[np.float64]) -> Tradeoff:
    """FAR/FRR at every threshold that changes them: ROC (TAR vs FAR) and DET (FNIR vs FPIR).

    Thresholds are the midpoints between consecutive distinct finite scores, plus one below the
    smallest (nothing accepted) and one above the largest (every finite score accepted).
    """
    pos = _clean(positive, "positive scores")
    neg = _clean(negative, "negative scores")
    finite = np.unique(np.concatenate([pos[np.isfinite(pos)], neg[np.isfinite(neg)]]))
    if len(finite) == 0:
        thresholds = np.array([0.0])
    else:
        thresholds = np.concatenate(
            [[finite[0] - 1e-6], (finite[:-1] + finite[1:]) / 2.0, [finite[-1] + 1e-6]]
        )
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    # searchsorted(side="left") counts the scores strictly below each threshold.
    false_accept = np.searchsorted(neg_sorted, thresholds, side="left") / len(neg)
    true_accept = np.searchsorted(pos_sorted, thresholds, side="left") / len(pos)
    return Tradeoff(
        thresholds=thresholds.astype(np.float64),
        false_accept=false_accept.astype(np.float64),
        false_reject=(1.0 - true_accept).astype(np.float64),
        positives=len(pos),
        negatives=len(neg),
    )


def threshold_at_false_accept(negative: NDArray[np.float64], rate: float) -> float:
    """The largest τ whose false-accept rate over ``negative`` is at most ``rate``.

    With n negatives at most floor(rate·n) may be accepted, so τ is the (floor(rate·n)+1)-th
    smallest negative score: everything strictly below it is accepted. +inf when ``rate`` allows
    every negative.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    neg = np.sort(_clean(negative, "negative scores"))
    allowed = math.floor(rate * len(neg) + _COUNT_EPS)
    return float(neg[allowed]) if allowed < len(neg) else math.inf


def operating_point(
    positive: NDArray[np.float64], negative: NDArray[np.float64], tau: float
) -> OperatingPoint:
    """FAR (FPIR) and FRR (FNIR) at a given τ."""
    return OperatingPoint(
        tau=tau,
        false_accept=accepted_fraction(negative, tau),
        false_reject=1.0 - accepted_fraction(positive, tau),
    )


def at_false_accept(
    positive: NDArray[np.float64], negative: NDArray[np.float64], rate: float
) -> OperatingPoint:
    """The operating point at the largest τ with FAR (FPIR) ≤ ``rate``: TAR@FAR, FNIR@FPIR."""
    return operating_point(positive, negative, threshold_at_false_accept(negative, rate))


def equal_error_rate(curve: Tradeoff) -> OperatingPoint:
    """Where FAR = FRR, linearly interpolated between the two points on either side of the crossing.

    The returned point's ``false_accept`` and ``false_reject`` are both the EER.
    """
    diff = curve.false_accept - curve.false_reject  # rises from -FRR(0) to FAR(inf) - FRR(inf)
    after = int(np.searchsorted(diff, 0.0, side="left"))
    if after >= len(diff):
        # FAR stays below FRR everywhere (positives without a face): the closest is the last point.
        after = len(diff) - 1
    if after == 0 or diff[after] == 0.0:
        eer = float((curve.false_accept[after] + curve.false_reject[after]) / 2.0)
        return OperatingPoint(float(curve.thresholds[after]), eer, eer)
    before = after - 1
    t = float(-diff[before] / (diff[after] - diff[before]))
    eer = float(curve.false_accept[before] + t * (curve.false_accept[after] - curve.false_accept[before]))
    tau = float(curve.thresholds[before] + t * (curve.thresholds[after] - curve.thresholds[before]))
    return OperatingPoint(tau, eer, eer)


def rank1_rate(correct: NDArray[np.bool_]) -> float:
    """Rank-1 identification rate: mated searches whose nearest enrolled person is the mate."""
    arr = np.asarray(correct, dtype=bool)
    if len(arr) == 0:
        raise ValueError("no mated searches")
    return float(arr.mean())


def mated_scores(
    rank1_distance: NDArray[np.float64], rank1_is_mate: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """FRVT's mated score for FNIR at rank 1: the rank-1 distance if it is the mate, else +inf."""
    d = np.asarray(rank1_distance, dtype=np.float64)
    return np.where(np.asarray(rank1_is_mate, dtype=bool) & ~np.isnan(d), d, np.inf)
