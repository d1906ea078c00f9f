"""Liveness evaluation: ISO/IEC 30107-3 metrics, the attack renderer's geometry, a small real run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.evaluation.liveness_eval import (
    LivenessReport,
    Observer,
    attack_photos,
    burst_seed,
    evaluate_attacks,
    evaluate_live_video,
    format_report,
    live_windows,
    still_burst,
)
from app.evaluation.liveness_metrics import (
    Presentation,
    apcer,
    bpcer,
    bpcer_at_apcer,
    called_spoof,
    undetermined,
    worst_apcer,
)
from app.evaluation.liveness_render import (
    Camera,
    Lighting,
    Photo,
    Pose,
    Sheet,
    SheetTexture,
    photo_to_frame,
    project_sheet,
    render_attack,
    render_radiance,
    rotation_matrix,
)
from app.vision.imageio import decode_image
from app.vision.liveness_types import LivenessResult, TrackedFace
from tests.conftest import shared_faces

P = Presentation

# --- metrics -------------------------------------------------------------------------------------


def test_apcer_counts_attacks_accepted_as_live_over_those_judged() -> None:
    attacks = [P("live", 0.9), P("spoof", 0.1), P("undetermined", None), P(None, None)]
    rate = apcer(attacks)
    assert (rate.errors, rate.total) == (1, 3)
    assert rate.value == pytest.approx(1 / 3)


def test_bpcer_counts_spoof_and_undetermined_against_the_live() -> None:
    live = [P("live", 0.9), P("live", 0.8), P("spoof", 0.2), P("undetermined", None), P(None, None)]
    assert (bpcer(live).errors, bpcer(live).total) == (2, 4)
    assert undetermined(live).value == pytest.approx(0.25)
    assert called_spoof(live).value == pytest.approx(0.25)
    assert math.isnan(bpcer([P(None, None)]).value)


def test_an_ambiguous_burst_is_scored_by_the_sweep_an_abstention_is_not() -> None:
    # Undetermined by its score (between the model's thresholds): a lower threshold accepts it.
    live = [P("undetermined", 0.6, ambiguous=True), P("undetermined", None), P("live", 0.99)]
    point = bpcer_at_apcer(live, {"screen": [P("spoof", 0.1)] * 100})
    assert point.threshold == pytest.approx(0.6)
    assert point.bpcer == pytest.approx(1 / 3)  # only the abstention (no score) stays rejected


def test_worst_apcer_is_the_type_most_often_accepted() -> None:
    by_type = {
        "print_flat": [P("spoof", 0.1)] * 9 + [P("live", 0.9)],  # 10%
        "screen": [P("spoof", 0.1)] * 3 + [P("live", 0.9)],  # 25%
        "print_bent": [P(None, None)],  # nothing judged: skipped
    }
    name, rate = worst_apcer(by_type)
    assert name == "screen"
    assert rate.value == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no judged"):
        worst_apcer({"screen": [P(None, None)]})


def test_bpcer_at_apcer_one_percent() -> None:
    # An abstention is rejected at every threshold, even with a high score.
    live = [P("live", s) for s in (0.9, 0.8, 0.7, 0.6)] + [P("spoof", 0.5), P("undetermined", 0.99)]
    # Type A: 100 attacks; one may be accepted (1%), two may not: tau must exceed 0.65.
    type_a = [P("live", 0.95), P("live", 0.65)] + [P("spoof", 0.1)] * 97 + [P("undetermined", 0.99)]
    point = bpcer_at_apcer(live, {"print_flat": type_a})
    assert point.threshold == pytest.approx(0.7)
    assert point.bpcer == pytest.approx(3 / 6)  # 0.6, 0.5 and the abstention are rejected
    assert point.apcer_by_type["print_flat"] == pytest.approx(0.01)
    # Type B: 10 attacks, so 1% allows none: tau must exceed 0.85.
    type_b = [P("spoof", 0.3)] * 9 + [P("live", 0.85)]
    point = bpcer_at_apcer(live, {"print_flat": type_a, "screen": type_b})
    assert point.threshold == pytest.approx(0.9)
    assert point.bpcer == pytest.approx(5 / 6)
    # A vetoed attack (rejected by a rule, whatever its score) is never accepted by the sweep.
    vetoed = [P("spoof", 0.99, vetoed=True)] * 5 + [P("spoof", 0.1)] * 95
    point = bpcer_at_apcer(live, {"print_flat": vetoed})
    assert point.threshold == pytest.approx(0.5)
    assert point.bpcer == pytest.approx(1 / 6)
    # Attacks scored above every live presentation: only an infinite threshold meets the target.
    point = bpcer_at_apcer(live, {"screen": [P("live", 1.0)]})
    assert point.threshold == math.inf
    assert point.bpcer == 1.0
    # Attacks all below every live score: the lowest live score is the threshold, BPCER counts only
    # what the classifier itself rejected or abstained on.
    point = bpcer_at_apcer(live, {"screen": [P("spoof", 0.01)] * 5})
    assert point.bpcer == pytest.approx(1 / 6)


# --- renderer geometry ---------------------------------------------------------------------------

CAMERA = Camera()


def _fit_similarity(src: NDArray[np.float64], dst: NDArray[np.float64]) -> float:
    """Largest residual (px) of the least-squares similarity src -> dst."""
    a = np.zeros((2 * len(src), 4))
    a[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))])
    a[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))])
    params, *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return float(np.abs(a @ params - dst.reshape(-1)).max())


def _plain_texture(h: int = 300, w: int = 240) -> SheetTexture:
    return SheetTexture(
        albedo=np.full((h, w, 3), 0.5, dtype=np.float32),
        emission=None,
        alpha=np.ones((h, w), dtype=np.float32),
        photo_scale=1.0,
        photo_offset=(0.0, 0.0),
    )


GRID = np.array([[x, y] for x in np.linspace(20, 220, 6) for y in np.linspace(20, 280, 7)], dtype=np.float64)


def _pose(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, z: float = 50.0) -> Pose:
    return Pose(rotation_matrix(yaw, pitch, roll), np.array([1.5, -2.0, z]))


def test_a_flat_print_facing_the_camera_is_a_similarity_of_the_photo() -> None:
    sheet = Sheet(12.0, 15.0)
    texture = _plain_texture()
    # Rolled in its own plane: still a similarity (rotation, scale, shift).
    assert _fit_similarity(GRID, photo_to_frame(CAMERA, sheet, _pose(roll=17.0), texture, GRID)) < 1e-6
    # Turned 20 degrees: perspective, no longer a similarity.
    assert _fit_similarity(GRID, photo_to_frame(CAMERA, sheet, _pose(yaw=20.0), texture, GRID)) > 0.5


@pytest.mark.parametrize(("axis", "bulge"), [("vertical", 1), ("horizontal", -1)])
def test_a_bent_print_is_not_a_similarity_of_the_photo(axis: str, bulge: int) -> None:
    sheet = Sheet(12.0, 15.0, axis, 10.0, bulge)  # type: ignore[arg-type]
    moved = photo_to_frame(CAMERA, sheet, _pose(), _plain_texture(), GRID)
    assert _fit_similarity(GRID, moved) > 1.0  # the flat sheet fits to 1e-6 px


@pytest.mark.parametrize(
    "sheet",
    [Sheet(12.0, 15.0), Sheet(12.0, 15.0, "vertical", 9.0, 1), Sheet(12.0, 15.0, "horizontal", 12.0, -1)],
)
def test_the_dense_warp_puts_each_texture_point_where_the_geometry_projects_it(sheet: Sheet) -> None:
    texture = _plain_texture()
    albedo = texture.albedo.copy()
    dots = [(60, 80), (180, 220), (120, 150)]
    for x, y in dots:
        albedo[y - 2 : y + 3, x - 2 : x + 3] = 1.0
    texture = SheetTexture(albedo, None, texture.alpha, 1.0, (0.0, 0.0))
    lighting = Lighting(np.array([0.0, -100.0, -50.0]), 200.0, 1.0, 0.0, 0.0, 1.0)
    pose = _pose(yaw=15.0, pitch=-10.0, roll=5.0, z=40.0)
    radiance, alpha = render_radiance(CAMERA, sheet, pose, texture, lighting)
    assert alpha.max() == pytest.approx(1.0) and alpha.min() == 0.0
    expected = photo_to_frame(CAMERA, sheet, pose, texture, np.array(dots, dtype=np.float64))
    bright = radiance[..., 0] > 150.0
    count, labels = cv2.connectedComponents(bright.astype(np.uint8))
    centres = [np.argwhere(labels == i).mean(axis=0)[::-1] for i in range(1, count)]
    assert len(centres) == len(dots)
    for point in expected:
        assert min(np.hypot(*(c - point)) for c in centres) < 1.0


def test_a_sheet_centre_projects_to_its_translation() -> None:
    pose = Pose(np.eye(3), np.array([0.0, 0.0, 40.0]))
    centre = project_sheet(CAMERA, Sheet(10.0, 10.0), pose, np.array([0.0]), np.array([0.0]))[0]
    assert centre == pytest.approx([CAMERA.cx, CAMERA.cy])


def _photo() -> Photo:
    from skimage import data

    rgb = np.ascontiguousarray(data.astronaut())
    return Photo(np.ascontiguousarray(rgb[..., ::-1]), (173, 68, 267, 162), "astronaut")


@pytest.mark.parametrize("attack_type", ["print_flat", "print_bent", "screen"])
def test_rendered_bursts_are_deterministic_for_a_seed(attack_type: str) -> None:
    photo = _photo()
    small = Camera(320, 240, 200.0)  # the same field of view, a quarter of the work
    a = render_attack(photo, attack_type, 7, camera=small)  # type: ignore[arg-type]
    b = render_attack(photo, attack_type, 7, camera=small)  # type: ignore[arg-type]
    c = render_attack(photo, attack_type, 8, camera=small)  # type: ignore[arg-type]
    assert a.jpegs == b.jpegs
    assert a.jpegs != c.jpegs
    assert 5 <= len(a.jpegs) <= 15
    frame = decode_image(a.jpegs[0])
    assert frame.shape == (240, 320, 3)
    # The object moves between frames.
    last = decode_image(a.jpegs[-1])
    assert np.abs(frame.astype(np.int16) - last.astype(np.int16)).mean() > 1.0
    # Timestamps of a door client sending every 2nd or 3rd frame of a 30 fps camera.
    step = a.timestamps[1] - a.timestamps[0]
    assert 2 / 29.97 - 1e-9 <= step <= 3 / 29.97 + 1e-9


def test_a_still_burst_differs_only_by_noise() -> None:
    photo = _photo().image
    jpegs = still_burst(photo, 3, copies=4)
    frames = [decode_image(j).astype(np.int16) for j in jpegs]
    assert frames[0].shape == (512, 512, 3)
    assert jpegs[0] != jpegs[1]
    assert 0.5 < np.abs(frames[0] - frames[1]).mean() < 6.0


def test_live_windows_cover_every_start() -> None:
    windows = dict(live_windows(20, lengths=(5,), strides=(3,)))
    assert len(windows) == 20 - 12
    assert windows["n5s3@0"] == [0, 3, 6, 9, 12]
    assert windows["n5s3@7"] == [7, 10, 13, 16, 19]


# --- a small real run ----------------------------------------------------------------------------


class RecordingJudge:
    """A trivial stand-in for the liveness model: "live" when the face moves, and it keeps the tracks."""

    def __init__(self) -> None:
        self.tracks: list[list[TrackedFace]] = []

    def __call__(self, track: Sequence[TrackedFace]) -> LivenessResult:
        self.tracks.append(list(track))
        centres = np.array([[(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] for f in track])
        motion = float(np.ptp(centres, axis=0).max())
        score = min(1.0, motion / 20.0)
        return LivenessResult("live" if score >= 0.5 else "spoof", score, {"motion_px": motion})


@pytest.mark.shared
def test_a_small_real_run(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    faces_dir = shared_faces()
    photos = attack_photos(faces_dir, 1, seed=0)
    judge = RecordingJudge()
    report = LivenessReport()
    observer = Observer(pipeline.faces, tmp_path / "cache", "test")
    evaluate_attacks(observer, judge, photos, 0, report=report)
    assert [b.label for b in report.attacks] == ["print_flat", "print_bent", "screen"]
    for burst in report.attacks:
        assert 60.0 <= burst.details["face_px"] <= 200.0
        if burst.details["face_px"] >= 90.0:  # the detector's reach without upsampling is ~80 px
            assert burst.frames_with_face >= burst.frames - 1, burst
    assert sum(1 for b in report.attacks if b.result is not None) >= 2

    # A rerun reads the renderings and the faces back from the cache: no pipeline call, same verdicts.
    def no_pipeline(bgr: NDArray[np.uint8]) -> list[object]:
        raise AssertionError("the pipeline ran again")

    again = LivenessReport()
    evaluate_attacks(
        Observer(no_pipeline, tmp_path / "cache", "test"), RecordingJudge(), photos, 0, report=again
    )  # type: ignore[arg-type]
    assert again.attacks == report.attacks

    saved = LivenessReport()
    observer_again = Observer(pipeline.faces, tmp_path / "cache", "test")
    evaluate_attacks(
        observer_again, RecordingJudge(), photos, 0, report=saved, save_frames=tmp_path / "frames"
    )
    for burst in saved.attacks:
        assert len(list((tmp_path / "frames" / burst.label).glob("*/*.jpg"))) == burst.frames
    for track in judge.tracks:
        assert all(f.frame.shape == (480, 640, 3) and f.landmarks.shape == (5, 2) for f in track)
        assert list(np.diff([f.t for f in track]) > 0) == [True] * (len(track) - 1)

    # Each face is where the renderer put it: detected landmarks near the projected photo landmarks.
    image = decode_image(photos[0].read_bytes())
    source = max(pipeline.faces(image), key=lambda f: f.width)
    photo = Photo(image, source.box, photos[0].name)
    for attack_type, tracked in zip(("print_flat", "print_bent", "screen"), judge.tracks, strict=True):
        burst = render_attack(photo, attack_type, burst_seed(0, 0, attack_type))  # type: ignore[arg-type]
        first = tracked[0]
        k = burst.timestamps.index(first.t)  # the frame the subject was first seen in
        projected = photo_to_frame(
            CAMERA, burst.spec.sheet, burst.spec.poses[k], burst.texture, source.landmarks
        )
        width = first.box[2] - first.box[0]
        assert np.abs(first.landmarks - projected).max() < 0.08 * width, attack_type

    video = faces_dir / "videos" / "face_recognition_short_hamilton_clip.mp4"
    evaluate_live_video(observer, judge, video, 0, report=report, frames=range(100, 120))
    # 20 frames: windows of 5, 8, 12 frames every 2nd or 3rd frame, at every start.
    assert len(report.live) == sum(max(0, 20 - (n - 1) * s) for n in (5, 8, 12) for s in (2, 3))
    assert sum(1 for b in report.live if b.result is not None) > len(report.live) // 2
    lines = format_report(report)
    assert any(line.startswith("APCER print_flat") for line in lines)
    assert any(line.startswith("BPCER at APCER<=1%") for line in lines)


def test_a_spoof_scored_above_the_models_threshold_was_vetoed() -> None:
    from app.evaluation.liveness_eval import BurstResult

    def burst(outcome: str, score: float | None) -> BurstResult:
        return BurstResult("attack", "screen", "x", 8, 8, LivenessResult(outcome, score))  # type: ignore[arg-type]

    assert burst("spoof", 0.9).presentation(0.5).vetoed
    assert not burst("spoof", 0.2).presentation(0.5).vetoed
    assert not burst("spoof", 0.9).presentation(None).vetoed  # threshold unknown: the sweep decides
    assert not burst("live", 0.9).presentation(0.5).vetoed
    assert burst("undetermined", 0.4).presentation(0.5).ambiguous  # scored, between the thresholds
    assert not burst("undetermined", None).presentation(0.5).ambiguous  # the abstain rule
    assert BurstResult("attack", "screen", "x", 8, 1, None).presentation(0.5).outcome is None


def test_the_command_is_registered() -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(cli, ["eval", "liveness", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--faces", "--attacks-per-type", "--seed", "--save-frames", "--json"):
        assert option in result.output
