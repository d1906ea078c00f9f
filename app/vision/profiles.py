"""Model profiles: which detector, landmarks, alignment, encoder and distance make one encoding.

A profile is the whole recipe from pixels to a template. Templates made by different profiles
(or different artifacts of one profile) live in different spaces: they carry the profile's
model version and are never compared with each other.

- ``sface`` (default): OpenCV Zoo's YuNet detector and its five points, a similarity transform
  onto SFace's 112x112 template, SFace (128-d), cosine distance (1 - cos, in [0, 2]).
- ``dlib``: dlib's MMOD detector, 5-point shape predictor, 150x150 face chip and ResNet (128-d),
  Euclidean distance; equal to dlib's own outputs.

Both profiles also run dlib's 5-point shape predictor on each face box: the liveness geometry
reads eye corners and the base of the nose in dlib's order, which YuNet's points do not give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.gallery.metric import Metric

ProfileName = Literal["sface", "dlib"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("sface", "dlib")


@dataclass(frozen=True)
class ProfileSpec:
    name: ProfileName
    detector: str  # manifest entry of the detector
    encoder: str  # manifest entry of the encoder
    metric: Metric
    # A distance every sensible tau stays below, for validation and plot ranges (the metric's scale).
    max_distance: float
    # The thresholds the calibration curve reports (the metric's working range).
    calibration_grid: tuple[float, ...]
    # The model authors' published 1:1 operating point, a reference in evaluation reports only
    # (dlib: L2 0.6; OpenCV's SFace: cosine similarity 0.363, i.e. distance 0.637).
    reference_tau: float


def _grid(lo: float, hi: float, step: float = 0.01) -> tuple[float, ...]:
    return tuple(round(lo + step * i, 4) for i in range(round((hi - lo) / step) + 1))


PROFILES: dict[ProfileName, ProfileSpec] = {
    "sface": ProfileSpec(
        "sface", "yunet", "sface", "cosine", 2.0, calibration_grid=_grid(0.30, 1.00), reference_tau=0.637
    ),
    "dlib": ProfileSpec(
        "dlib", "detector", "encoder", "l2", 1.2, calibration_grid=_grid(0.30, 0.80), reference_tau=0.6
    ),
}


def profile_spec(name: str) -> ProfileSpec:
    try:
        return PROFILES[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}") from None
