"""The door's liveness policy over the identity decision, and client timestamps (no models)."""

from __future__ import annotations

import pytest

from app.services.recognition import DoorPolicy, TimestampError, apply_policy, burst_times
from app.settings import Settings
from app.vision.liveness_types import LivenessResult

LIVE = LivenessResult("live", 0.97, {"parallax": 0.12}, ["parallax"])
SPOOF = LivenessResult("spoof", 0.02, {"parallax": 0.0}, ["parallax"])
UNSURE = LivenessResult("undetermined", None, {"rotation": 0.01}, ["too_little_motion"], hint="turn_head")
STRICT = DoorPolicy(liveness_required=True, liveness_undetermined="deny")
LENIENT = DoorPolicy(liveness_required=True, liveness_undetermined="grant")
OFF = DoorPolicy(liveness_required=False, liveness_undetermined="deny")


@pytest.mark.parametrize(
    ("reason", "liveness", "policy", "expected"),
    [
        ("match", LIVE, STRICT, ("match", None)),
        ("match", SPOOF, STRICT, ("spoof", None)),
        ("unknown_person", SPOOF, STRICT, ("spoof", None)),
        ("ambiguous", SPOOF, STRICT, ("spoof", None)),
        ("match", UNSURE, STRICT, ("liveness_undetermined", "turn_head")),
        ("unknown_person", UNSURE, STRICT, ("unknown_person", None)),
        ("match", UNSURE, LENIENT, ("match", None)),
        ("match", SPOOF, LENIENT, ("spoof", None)),
        ("match", SPOOF, OFF, ("match", None)),
        ("no_face", None, STRICT, ("no_face", None)),
    ],
)
def test_policy(reason: str, liveness: LivenessResult | None, policy: DoorPolicy, expected: object) -> None:
    assert apply_policy(reason, liveness, policy) == expected


def test_burst_times() -> None:
    settings = Settings(burst_nominal_fps=10.0, burst_max_span_s=3.0)
    assert burst_times(None, 3, settings) == [0.0, 0.1, 0.2]
    assert burst_times([], 2, settings) == [0.0, 0.1]
    assert burst_times([1000.0, 1000.25, 1000.5], 3, settings) == [0.0, 0.25, 0.5]
    with pytest.raises(TimestampError, match="2 timestamps for 3 frames"):
        burst_times([0.0, 1.0], 3, settings)
    with pytest.raises(TimestampError, match="increase strictly"):
        burst_times([0.0, 0.2, 0.2], 3, settings)
    with pytest.raises(TimestampError, match="finite"):
        burst_times([0.0, float("nan")], 2, settings)
    with pytest.raises(TimestampError, match="at most 3 s"):
        burst_times([0.0, 4.0], 2, settings)
