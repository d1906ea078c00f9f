"""The trained liveness classifier: ONNX equals numpy, training is deterministic, judge() verdicts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision.liveness import LivenessModel
from app.vision.liveness_cues import FEATURE_NAMES, geometry_features
from app.vision.liveness_types import TrackedFace
from app.vision.manifest import Manifest, ModelArtifactError
from models import train_liveness as tl
from models.liveness_sim import ATTACKS, simulate_set
from tests.conftest import shared_faces


@pytest.fixture(scope="module")
def liveness(model_dir: Path, manifest: Manifest) -> LivenessModel:
    return LivenessModel.from_manifest(model_dir, manifest, providers=("CPUExecutionProvider",))


_FRAMES = [
    np.clip(np.random.default_rng(i).normal(120, 4, size=(480, 640, 3)), 0, 255).astype(np.uint8)
    for i in range(16)
]


def _frame(index: int) -> NDArray[np.uint8]:
    """A plain noisy frame: no border, moire or glare, different in every frame of a burst."""
    return _FRAMES[index % len(_FRAMES)]


def _track(landmarks: NDArray[np.float64], t: NDArray[np.float64]) -> list[TrackedFace]:
    out = []
    for i, (pts, ti) in enumerate(zip(landmarks, t, strict=True)):
        iod = float(np.linalg.norm(pts[0] - pts[2]))
        left, top = int(pts[:, 0].min() - 0.3 * iod), int(pts[:, 1].min() - 0.6 * iod)
        right, bottom = int(pts[:, 0].max() + 0.3 * iod), int(pts[:, 1].max() + 0.6 * iod)
        out.append(TrackedFace(t=float(ti), box=(left, top, right, bottom), landmarks=pts, frame=_frame(i)))
    return out


def test_manifest_records_thresholds_and_training(manifest: Manifest) -> None:
    details = manifest.details("liveness")
    assert details["input"]["features"] == list(FEATURE_NAMES)
    assert 0.5 <= details["threshold"] < 1.0
    assert 0.0 < details["spoof_threshold"] < details["threshold"]
    assert details["min_motion_snr"] > 1.0
    assert details["training"]["sha256"] == tl.training_fingerprint()
    report = details["training"]["simulated_test"]
    for kind in ATTACKS:
        assert report[f"apcer_{kind}"] <= 0.03  # chosen for <= 1% on the calibration set
    assert report["bpcer_spoof"] <= 0.03  # the spoof threshold: <= 1% of live on the calibration set


def test_onnx_classifier_equals_the_numpy_model(liveness: LivenessModel, tmp_path: Path) -> None:
    small = {
        **tl.PARAMS,
        "counts": {"live": 200, "flat": 50, "bent_v": 50, "bent_h": 50, "screen": 50},
        "steps": 200,
    }
    data = tl.make_dataset(3, small["counts"])
    model = tl.train_mlp(data.x, data.kinds == "live", small)
    path = tmp_path / "small.onnx"
    tl.export_onnx(model, path)
    from app.vision.runtime import create_session

    session = create_session(path, providers=("CPUExecutionProvider",))
    onnx_p = session.run(None, {tl.INPUT_NAME: data.x.astype(np.float32)})[0].reshape(-1)
    np.testing.assert_allclose(onnx_p, model.predict(data.x), atol=2e-6)
    # And the built artifact scores through the service wrapper like the numpy model would.
    assert liveness.p_live(data.x).shape == (len(data.x),)


def test_training_is_deterministic() -> None:
    small = {
        **tl.PARAMS,
        "counts": {"live": 100, "flat": 30, "bent_v": 30, "bent_h": 30, "screen": 30},
        "steps": 50,
    }
    data = tl.make_dataset(5, small["counts"])
    a = tl.train_mlp(data.x, data.kinds == "live", small)
    b = tl.train_mlp(tl.make_dataset(5, small["counts"]).x, data.kinds == "live", small)
    np.testing.assert_array_equal(a.w1, b.w1)
    np.testing.assert_array_equal(a.w2, b.w2)
    np.testing.assert_array_equal(a.predict(data.x), b.predict(data.x))


def test_judge_on_simulated_bursts(liveness: LivenessModel) -> None:
    bursts = simulate_set(99, {"live": 120, "flat": 60, "bent_v": 60, "bent_h": 60, "screen": 60})
    outcomes: dict[str, list[str]] = {}
    for b in bursts:
        result = liveness.judge(_track(b.landmarks, b.t))
        outcomes.setdefault(b.kind, []).append(result.outcome)
        assert result.cues and all(isinstance(v, float) for v in result.cues.values())
        assert result.drivers
        if result.outcome == "undetermined":
            assert result.hint == "turn_head"
            if result.score is None:  # the abstain rule: too little turning to judge
                assert result.drivers == ["motion_snr"]
            else:  # judged, but between the thresholds: a picture and a head are both plausible
                assert liveness.spoof_threshold <= result.score < liveness.threshold
                assert result.drivers == ["p_live"]
        else:
            assert result.score is not None and 0.0 <= result.score <= 1.0
            vetoed = {"border", "moire", "glare", "identical_frames", "motionless"} & set(result.drivers)
            if result.outcome == "spoof" and not vetoed:  # a spoof by geometry alone
                assert result.score < liveness.spoof_threshold
    live = outcomes["live"]
    assert live.count("live") >= 0.05 * len(live)  # some of the moving heads are accepted
    assert live.count("spoof") <= 0.05 * len(live)  # and almost none is accused
    for kind in ATTACKS:
        assert outcomes[kind].count("live") <= 0.05 * len(outcomes[kind]), kind
    # The geometry does call some pictures spoofs on its own (no image cue in these frames).
    assert sum(outcomes[kind].count("spoof") for kind in ATTACKS) >= 5


def test_one_frame_is_undetermined(liveness: LivenessModel) -> None:
    b = simulate_set(1, {"live": 1})[0]
    result = liveness.judge(_track(b.landmarks[:1], b.t[:1]))
    assert result.outcome == "undetermined" and result.score is None


def test_reject_cues_override_a_live_geometry(liveness: LivenessModel) -> None:
    """A head-like geometry seen in pixel-identical frames is a spoof, named by its cue."""
    for b in simulate_set(7, {"live": 200}):
        track = _track(b.landmarks, b.t)
        if liveness.judge(track).outcome == "live":
            frozen = [TrackedFace(f.t, f.box, f.landmarks, track[0].frame) for f in track]
            result = liveness.judge(frozen)
            assert result.outcome == "spoof"
            assert "identical_frames" in result.drivers
            return
    pytest.fail("no simulated live burst was accepted")


def test_geometry_features_match_what_judge_reports(liveness: LivenessModel) -> None:
    b = simulate_set(2, {"live": 1})[0]
    result = liveness.judge(_track(b.landmarks, b.t))
    expected = geometry_features(b.landmarks, b.t)
    assert [result.cues[n] for n in FEATURE_NAMES] == pytest.approx(expected.tolist())


def _real_video_bursts(pipeline) -> list[list[TrackedFace]]:  # type: ignore[no-untyped-def]
    """Bursts of 10 frames at 15 fps of the live performer in the real clip (../shared)."""
    video = shared_faces() / "videos" / "face_recognition_short_hamilton_clip.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    cap = cv2.VideoCapture(str(video))
    tracked: list[TrackedFace] = []
    index = 0
    while len(tracked) < 150:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        if index % 2:  # 15 fps, as a door camera would send
            continue
        faces = pipeline.faces(np.ascontiguousarray(frame))
        if faces:
            face = max(faces, key=lambda f: f.width)
            tracked.append(TrackedFace(t=index / 29.97, box=face.box, landmarks=face.landmarks, frame=frame))
    cap.release()
    bursts = [tracked[i : i + 10] for i in range(0, len(tracked) - 9, 10)]
    assert len(bursts) >= 5
    return bursts


@pytest.fixture(scope="module")
def real_video_outcomes(liveness: LivenessModel, pipeline) -> list[str]:  # type: ignore[no-untyped-def]
    return [liveness.judge(b).outcome for b in _real_video_bursts(pipeline)]


@pytest.mark.shared
@pytest.mark.slow
def test_real_video_live_bursts_are_not_called_spoofs(real_video_outcomes: list[str]) -> None:
    """A live performer on real video is never accused: at worst asked to turn (undetermined)."""
    assert real_video_outcomes.count("spoof") == 0, real_video_outcomes


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "open issue: most real bursts are undetermined (too little turn, or a P(live) between the "
        "thresholds): in simulation a print tilted 10-15 degrees at 25-40 cm fakes a head's nose "
        "parallax and eye asymmetry (tests/test_liveness_cues.py), so the live threshold is high"
    ),
)
def test_real_video_live_bursts_are_let_in(real_video_outcomes: list[str]) -> None:
    """The issue's target (BPCER <= 5%): nearly every burst of a live person is judged live."""
    assert real_video_outcomes.count("live") >= 0.95 * len(real_video_outcomes), real_video_outcomes


def test_a_manifest_without_the_spoof_threshold_asks_for_a_rebuild(
    liveness: LivenessModel, manifest: Manifest
) -> None:
    stale = {k: v for k, v in manifest.details("liveness").items() if k != "spoof_threshold"}
    with pytest.raises(ModelArtifactError, match="spoof_threshold"):
        LivenessModel(liveness.session, stale)
