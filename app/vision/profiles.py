"""Model profiles: which detector, landmarks, alignment, encoder and distance make one encoding.

A profile is the whole recipe from pixels to a template. Templates made by different profiles
(or different artifacts of one profile) live in different spaces: they carry the profile's
model version and are never compared with each other.

- ``sface`` (default): OpenCV Zoo's YuNet detector and its five points, a similarity transform
  onto SFace's 112x112 template, SFace (128-d), cosine distance (1 - cos, in [0, 2]).
- ``dlib``: dlib's MMOD detector, 5-point shape predictor, 150x150 face chip and ResNet (128-d),
  Euclidean distance; equal to dlib's own outputs.
- ``fusion``: YuNet, then both encoders on the same face: SFace on YuNet's points and dlib's
  ResNet on dlib's 5 points found in YuNet's box. One score, ``0.756 * (1 - cos) + 0.460 * L2^2``
  (SFace's cosine distance and dlib's squared Euclidean distance, each divided by its impostor
  spread on LFW dev pairs, weighted equally; the weight 0.5 was chosen by cross-validated
  accuracy on those pairs, and the sum scaled so that an impostor's mean is about 1). It is
  stored as one 256-d vector ``[sqrt(0.756) s, sqrt(0.920) d]`` whose half squared Euclidean
  distance is exactly that score, so FAISS searches it exactly. Measured better than SFace
  alone on every LFW dev figure (README).

Both profiles also run dlib's 5-point shape predictor on each face box: the liveness geometry
reads eye corners and the base of the nose in dlib's order, which YuNet's points do not give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.gallery.metric import Metric

ProfileName = Literal["fusion", "sface", "dlib"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("fusion", "sface", "dlib")
# The fused score's coefficients (see the module doc): on SFace's cosine distance and on dlib's
# squared Euclidean distance.
FUSION_SFACE_COSINE = 0.756
FUSION_DLIB_SQUARED_L2 = 0.460


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
    # The model authors' published 1:1 operating point, the last-resort τ when no calibration is
    # possible (dlib: L2 0.6; OpenCV's SFace: cosine similarity 0.363, i.e. distance 0.637; the
    # fusion: its score at the two, 0.756 * 0.637 + 0.460 * 0.36).
    reference_tau: float
    # A second encoder on dlib's chip, fused with the first (the fusion profile).
    dlib_encoder: str | None = None
    # Encode chip + mirror by default (FACEGATE_ENCODE_FLIP_AVERAGE overrides).
    flip_average: bool = False

    @property
    def encoders(self) -> tuple[str, ...]:
        return (self.encoder,) if self.dlib_encoder is None else (self.encoder, self.dlib_encoder)


def _grid(lo: float, hi: float, step: float = 0.01) -> tuple[float, ...]:
    return tuple(round(lo + step * i, 4) for i in range(round((hi - lo) / step) + 1))


PROFILES: dict[ProfileName, ProfileSpec] = {
    "fusion": ProfileSpec(
        "fusion",
        "yunet",
        "sface",
        "fused",
        3.0,
        calibration_grid=_grid(0.30, 1.00),
        reference_tau=round(FUSION_SFACE_COSINE * 0.637 + FUSION_DLIB_SQUARED_L2 * 0.36, 3),
        dlib_encoder="encoder",
    ),
    "sface": ProfileSpec(
        "sface", "yunet", "sface", "cosine", 2.0, calibration_grid=_grid(0.30, 1.00), reference_tau=0.637
    ),
    "dlib": ProfileSpec(
        "dlib",
        "detector",
        "encoder",
        "l2",
        1.2,
        calibration_grid=_grid(0.30, 0.80),
        reference_tau=0.6,
        flip_average=True,
    ),
}


def profile_spec(name: str) -> ProfileSpec:
    try:
        return PROFILES[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}") from None
