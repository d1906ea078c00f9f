"""What liveness reads and returns: one tracked face over a burst in, a verdict with its cues out.

Shared by the cue functions (`liveness_cues`), the classifier (`liveness`), the service that
tracks the face across the burst, and the evaluation that renders attacks. Pure data: no HTTP,
no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Outcome = Literal["live", "spoof", "undetermined"]


@dataclass(frozen=True)
class TrackedFace:
    """One frame's observation of the face being judged (the same person in every frame)."""

    t: float  # seconds since the burst's first frame (client timestamps, else frame index / nominal fps)
    box: tuple[int, int, int, int]  # left, top, right, bottom; inclusive, frame pixels
    landmarks: NDArray[np.float64]  # (5, 2) in dlib's 5-point order (the geometry's input)
    frame: NDArray[np.uint8]  # the whole BGR frame: image cues look around the face too
    landmarks68: NDArray[np.float64] | None = None  # (68, 2) when the operator enabled them (blink)


@dataclass(frozen=True)
class LivenessResult:
    outcome: Outcome
    score: float | None  # the classifier's P(live); None when it abstained before scoring
    cues: dict[str, float] = field(default_factory=dict)  # every cue measured, by name
    drivers: list[str] = field(default_factory=list)  # the cues that decided the outcome
    hint: str | None = None  # for the door client, e.g. "turn_head" when undetermined
