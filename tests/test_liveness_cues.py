"""Liveness cues on synthetic data: geometry of planes and heads, and the reject-only image cues."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision import liveness_cues as lc
from app.vision import liveness_image as li
from app.vision.liveness import ImageCueLimits
from models.liveness_sim import _MEAN_XY, _rotation

IOD_CM = 6.3
# The 5 points of a head in cm: inner eye corners at depth 0, outer 1.4 cm behind, nose 1.2 in front.
HEAD = np.column_stack([_MEAN_XY * IOD_CM, [-1.4, 0.0, -1.4, 0.0, 1.2]])
PLANE = np.column_stack([_MEAN_XY * IOD_CM, np.zeros(5)])


def render(
    points: NDArray[np.float64], yaw_deg: NDArray[np.float64], *, pitch_deg: float = 0.0
) -> NDArray[np.float64]:
    """Noise-free landmarks of a rigid 3-D point set turning by ``yaw_deg`` at 60 cm, f = 800 px."""
    n = len(yaw_deg)
    rot = _rotation(np.radians(yaw_deg), np.full(n, math.radians(pitch_deg)), np.zeros(n))
    cam = np.einsum("fij,pj->fpi", rot, points)
    depth = 60.0 - cam[..., 2]
    return 800.0 * cam[..., :2] / depth[..., None] + 320.0


def noisy(landmarks: NDArray[np.float64], sd_px: float, seed: int = 0) -> NDArray[np.float64]:
    return landmarks + np.random.default_rng(seed).normal(0.0, sd_px, size=landmarks.shape)


def features(landmarks: NDArray[np.float64]) -> dict[str, float]:
    values = lc.geometry_features(landmarks, np.arange(len(landmarks)) / 10.0)
    return dict(zip(lc.FEATURE_NAMES, values.tolist(), strict=True))


YAW = np.linspace(-20.0, 20.0, 10)


def test_normalisation_removes_translation_roll_and_scale() -> None:
    base = render(HEAD, YAW)
    angle = math.radians(25)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = 1.7 * base @ rot.T + np.array([40.0, -25.0])
    np.testing.assert_allclose(lc.normalise(moved), lc.normalise(base), atol=1e-9)
    norm = lc.normalise(base)
    left, right = lc.eye_centres(norm)
    np.testing.assert_allclose(left, np.tile([-0.5, 0.0], (10, 1)), atol=1e-12)
    np.testing.assert_allclose(right, np.tile([0.5, 0.0], (10, 1)), atol=1e-12)


def test_a_plane_reads_flat_and_a_head_reads_3d() -> None:
    plane, head = features(render(PLANE, YAW)), features(render(HEAD, YAW))
    # The nose of a turning head moves sideways by about (1.9 cm / 6.3 cm) sin(yaw): sd ~0.06 IOD.
    assert head["log_nose_x_sd"] > math.log10(0.04)
    # A plane's nose keeps its place (perspective only: < 0.01 IOD) and its eyes their widths.
    assert plane["log_nose_x_sd"] < math.log10(0.01)
    assert head["log_eye_asym_sd"] > plane["log_eye_asym_sd"] + 0.7
    assert abs(head["nose_x_eye_asym_corr"]) > 0.95
    # Tomasi-Kanade: a rigid 3-D head has a third singular value, a plane (almost) none.
    assert head["tk_s3_s2"] > 5 * plane["tk_s3_s2"]


def test_a_plane_rotating_shows_foreshortening_without_parallax() -> None:
    """A print turned by 30 degrees foreshortens like a head does, but its nose barely moves sideways."""
    yaw = np.linspace(0.0, 30.0, 10)
    plane, head = features(render(PLANE, yaw)), features(render(HEAD, yaw))
    assert plane["log_view_snr"] > 0  # the view did change ...
    assert abs(plane["log_foreshortening_sd"] - head["log_foreshortening_sd"]) < 0.15  # ... as much
    # ... but the parallax against the foreshortening is 5x smaller (perspective only).
    assert plane["log_parallax_over_foreshortening"] < head["log_parallax_over_foreshortening"] - 0.6
    # The direction of the (eye asymmetry, nose) motion: a head's lies near -100 degrees (2 phi).
    assert head["nose_x_eye_asym_sin2"] < -0.8 < plane["nose_x_eye_asym_sin2"]


def test_a_tilted_plane_fakes_the_nose_parallax() -> None:
    """The limit of five points: a print tilted back 12 degrees shears its nose as a head's moves."""
    plane = features(render(PLANE, YAW, pitch_deg=12.0))
    flat = features(render(PLANE, YAW))
    assert plane["log_nose_x_sd"] > flat["log_nose_x_sd"] + 0.5
    assert plane["nose_x_eye_asym_corr"] < -0.95


def test_too_little_motion_abstains_and_motion_does_not() -> None:
    t = np.arange(10) / 10.0
    still = [lc.rotation_evidence(noisy(render(HEAD, np.zeros(10)), 0.5, seed=s), t) for s in range(40)]
    assert np.median(still) < 1.5  # about 1 when only noise moved
    assert sum(e >= 3.0 for e in still) <= 2  # the manifest's min_motion_snr: noise rarely passes
    turning = noisy(render(HEAD, YAW), 0.5)
    assert lc.rotation_evidence(turning, t) > 10.0


def test_bent_print_lacks_the_heads_nose_parallax() -> None:
    """Bent around a vertical axis (8 cm), the eyes' widths change like a head's but the nose barely moves."""
    radius = 8.0
    x = PLANE[:, 0]
    bent = np.column_stack([radius * np.sin(x / radius), PLANE[:, 1], -radius * (1 - np.cos(x / radius))])
    b, h = features(render(bent, YAW)), features(render(HEAD, YAW))
    assert b["log_eye_asym_sd"] > math.log10(0.02)  # it does look 3-D to the eyes ...
    assert b["log_nose_x_sd"] < h["log_nose_x_sd"] - 0.2  # ... but its nose moves less than half as much
    ratio_bent = b["log_nose_x_sd"] - b["log_eye_asym_sd"]
    ratio_head = h["log_nose_x_sd"] - h["log_eye_asym_sd"]
    assert ratio_bent < ratio_head - 0.15


def test_jitter_estimate_recovers_the_noise() -> None:
    sd_iod = 0.02
    base = render(HEAD, np.linspace(-10, 10, 15))
    iod = float(np.median(lc.inter_ocular(base)))
    est = lc.tracks(noisy(base, sd_iod * iod, seed=3), np.arange(15) / 15.0).jitter
    assert 0.5 * sd_iod < est < 1.5 * sd_iod


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="at least two frames"):
        lc.geometry_features(render(HEAD, np.zeros(1)))
    with pytest.raises(ValueError, match="5 or 68"):
        lc.normalise(np.zeros((3, 7, 2)))
    with pytest.raises(ValueError, match="timestamps"):
        lc.geometry_features(render(HEAD, YAW), np.arange(3.0))
    with pytest.raises(ValueError, match="degenerate"):
        lc.normalise(np.zeros((3, 5, 2)))


def test_68_points_reduce_to_dlibs_five() -> None:
    pts68 = np.zeros((2, 68, 2))
    five = render(HEAD, np.array([0.0, 10.0]))
    pts68[:, list(lc.FIVE_OF_68)] = five
    np.testing.assert_array_equal(lc.five_points(pts68), five)


def test_motionless_needs_half_a_second_of_stillness() -> None:
    still = np.repeat(render(HEAD, np.zeros(1)), 6, axis=0)
    assert lc.motionless(still, np.linspace(0, 1.0, 6))
    assert not lc.motionless(still, np.linspace(0, 0.2, 6))  # too short to tell
    assert not lc.motionless(noisy(still, 2.0), np.linspace(0, 1.0, 6))


def _eyes68(ear_open: float, closed_at: int | None, frames: int = 9) -> NDArray[np.float64]:
    """68-point arrays with only the eye contours set: width 30 px, height giving the wanted EAR."""
    out = np.zeros((frames, 68, 2))
    for f in range(frames):
        ear = 0.05 if f == closed_at else ear_open
        for base, cx in ((36, 100.0), (42, 200.0)):
            h = ear * 30.0  # EAR = 2h / (2w) with both verticals h
            out[f, base + 0] = (cx - 15, 100)
            out[f, base + 3] = (cx + 15, 100)
            out[f, base + 1] = (cx - 5, 100 - h / 2)
            out[f, base + 2] = (cx + 5, 100 - h / 2)
            out[f, base + 5] = (cx - 5, 100 + h / 2)
            out[f, base + 4] = (cx + 5, 100 + h / 2)
    return out


def test_blink_from_eye_aspect_ratio() -> None:
    ear = lc.eye_aspect_ratio(_eyes68(0.3, closed_at=4))
    assert ear[0] == pytest.approx(0.3)
    assert ear[4] == pytest.approx(0.05)
    assert lc.blink_depth(ear) > 0.8
    assert lc.blink_depth(lc.eye_aspect_ratio(_eyes68(0.3, closed_at=None))) == 0.0
    # Closed at the end, never reopened: no blink.
    assert lc.blink_depth(lc.eye_aspect_ratio(_eyes68(0.3, closed_at=8))) == 0.0


# -- image cues -------------------------------------------------------------------------------


def natural_scene(seed: int = 0) -> tuple[NDArray[np.uint8], tuple[int, int, int, int]]:
    """A smooth, natural-looking frame: a shaded face-like ellipse on a soft, noisy background."""
    rng = np.random.default_rng(seed)
    h, w = 360, 480
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    background = 90 + 40 * np.sin(xx / 97.0) * np.cos(yy / 71.0)
    face = ((xx - 240) / 60) ** 2 + ((yy - 180) / 80) ** 2 <= 1
    shade = 150 + 40 * np.cos((xx - 240) / 60) - 0.1 * (yy - 180)
    img = np.where(face, shade, background)
    img = cv2.GaussianBlur(img, (0, 0), 3) + rng.normal(0, 2.5, size=img.shape)  # sensor noise
    bgr = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    bgr[..., 2] = np.clip(bgr[..., 2].astype(int) + 25, 0, 255)  # skin is redder
    return np.ascontiguousarray(bgr), (185, 110, 295, 250)


def test_border_fires_on_a_screen_bezel_and_not_on_a_natural_scene() -> None:
    frame, box = natural_scene()
    region, half = li.upright_region(frame, box, 0.0)
    assert li.border_sides(region, half) <= 1
    framed = frame.copy()
    cv2.rectangle(framed, (130, 40), (350, 330), (20, 20, 20), thickness=6)  # a dark bezel around the face
    region, half = li.upright_region(framed, box, 0.0)
    assert li.border_sides(region, half) >= 3


def test_border_follows_a_rolled_picture() -> None:
    frame, box = natural_scene()
    cv2.rectangle(frame, (130, 40), (350, 330), (20, 20, 20), thickness=6)
    rot = cv2.getRotationMatrix2D((240.0, 185.0), 12.0, 1.0)
    rolled = cv2.warpAffine(frame, rot, (480, 360), borderMode=cv2.BORDER_REPLICATE)
    # Upright with the picture's own roll (the face's eye line turns with it): the bezel is found.
    region, half = li.upright_region(rolled, box, math.radians(-12.0))
    assert li.border_sides(region, half) >= 3


def test_moire_fires_on_a_screen_pattern_and_not_on_a_natural_face(astronaut: NDArray[np.uint8]) -> None:
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    box = (160, 60, 280, 200)  # Eileen Collins' face in skimage's astronaut
    limit = ImageCueLimits().moire_min_peak
    assert li.moire_peak(bgr, box) < limit - 1.5
    yy, xx = np.mgrid[0 : bgr.shape[0], 0 : bgr.shape[1]]
    for fx, fy in ((0.21, 0.13), (0.4, 0.05), (0.1, 0.3)):
        grid = 15.0 * np.sin(2 * math.pi * (fx * xx + fy * yy))  # screen pixels beating with the camera's
        screen = np.clip(bgr.astype(np.float64) + grid[..., None], 0, 255).astype(np.uint8)
        assert li.moire_peak(screen, box) > limit


def test_moire_ignores_jpeg_blocks(astronaut: NDArray[np.uint8]) -> None:
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    jpeg = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert li.moire_peak(jpeg, (160, 60, 280, 200)) < ImageCueLimits().moire_min_peak - 1.5


def test_glare_fires_on_a_specular_blob_only() -> None:
    frame, box = natural_scene()
    assert li.glare_fraction(frame, box) < 0.01
    glared = frame.copy()
    cv2.ellipse(glared, (220, 150), (30, 20), 0, 0, 360, (255, 255, 255), thickness=-1)
    assert li.glare_fraction(glared, box) > 0.05


def test_identical_frames_are_flagged() -> None:
    frame, box = natural_scene()
    other, _ = natural_scene(seed=1)  # the same scene with fresh sensor noise
    assert li.identical_fraction([frame, frame.copy(), frame.copy()], [box] * 3) == 1.0
    assert li.identical_fraction([frame, other, frame], [box] * 3) == 0.0
    assert li.identical_fraction([frame], [box]) == 0.0
