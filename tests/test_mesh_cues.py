"""Mesh geometry cues on tracks with known geometry: a plane moved by a homography, a 3-D head
turning under a pinhole camera, eyelids closing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision.mesh_cues import (
    IMAGE_LEFT_EYE,
    IMAGE_RIGHT_EYE,
    blink_depth,
    burst_geometry,
    depth_parallax,
    eye_aspect_ratio,
    interocular,
    rigid_residuals,
    similarity_3d,
)

FOCAL = 800.0  # pixels; the head about 50 cm from a webcam
DISTANCE = 500.0  # head-sized units (mm)


def head_shape() -> NDArray[np.float64]:
    """468 points on a face-like surface (mm): an ellipsoid cap with a nose, eyes at +-32 mm."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(-1, 1, size=(468, 2)) * [70, 90]
    r2 = (xy[:, 0] / 80) ** 2 + (xy[:, 1] / 100) ** 2
    z = -60 * np.sqrt(np.clip(1 - r2, 0, None)) - 25 * np.exp(-(xy[:, 0] ** 2 + (xy[:, 1] - 10) ** 2) / 300)
    pts = np.column_stack([xy, z])
    # Eye corners and lids where the cues look for them (the eye on the image's left at x < 0).
    for ring, cx in ((IMAGE_LEFT_EYE, -32.0), (IMAGE_RIGHT_EYE, 32.0)):
        outer = cx - 14 if cx < 0 else cx + 14
        inner = cx + 14 if cx < 0 else cx - 14
        p1, p2, p3, p4, p5, p6 = ring
        pts[p1] = [outer, -20, -40]
        pts[p4] = [inner, -20, -40]
        pts[p2], pts[p3] = [cx - 5, -24, -42], [cx + 5, -24, -42]
        pts[p6], pts[p5] = [cx - 5, -16, -42], [cx + 5, -16, -42]
    return pts


def project(pts: NDArray[np.float64], yaw_deg: float, tx: float = 0.0) -> NDArray[np.float64]:
    """Pinhole image of the points turned by yaw, as a mesh track row: (x, y) pixels, z like x."""
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    cam = pts @ rot.T + [tx, 0, DISTANCE]
    scale = FOCAL / cam[:, 2:3]
    xy = cam[:, :2] * scale + [320, 240]
    return np.hstack([xy, (cam[:, 2:3] - DISTANCE) * FOCAL / DISTANCE])


def test_a_turning_head_shows_parallax_a_moving_print_does_not() -> None:
    shape = head_shape()
    head = np.stack([project(shape, yaw) for yaw in (0, 4, 8, 12, 8, 4, 0, -4)])
    # The print: the first frame's image (with the face-like z the model would still report),
    # moved as a rigid sheet, so every later frame is a homography of the first.
    flat = np.column_stack([shape[:, :2], np.zeros(468)])
    sheet = np.stack([project(flat, yaw) for yaw in (0, 4, 8, 12, 8, 4, 0, -4)])
    sheet[:, :, 2] = head[0, :, 2]
    head_ratio, head_excess = depth_parallax(head)
    print_ratio, print_excess = depth_parallax(sheet)
    assert print_excess < 1e-6 and head_excess > 0.01
    assert head_ratio > 3.0
    # Both models fit a plane exactly: the ratio is 0/0-ish, reported near 1 or below.
    assert print_ratio < 1.5


def test_rigid_fit_recovers_the_turn() -> None:
    shape = head_shape()
    a = math.radians(15)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    track = np.stack([shape, 1.3 * shape @ rot.T + [5, -2, 1]])
    res, angle = rigid_residuals(track)
    assert res.max() < 1e-9
    assert angle[1] == pytest.approx(15.0, abs=1e-6)
    s, r, t = similarity_3d(shape, track[1])
    assert s == pytest.approx(1.3) and np.allclose(r, rot) and np.allclose(t, [5, -2, 1])


def test_blink_depth_sees_closed_lids_only() -> None:
    shape = head_shape()
    frames = np.stack([project(shape, 0.0, tx=2.0 * i) for i in range(8)])
    open_ear = eye_aspect_ratio(frames)
    assert open_ear == pytest.approx(np.full(8, 8 / 28), rel=0.02)
    assert blink_depth(frames) < 0.02
    blink = frames.copy()
    for ring in (IMAGE_LEFT_EYE, IMAGE_RIGHT_EYE):
        upper, lower = [ring[1], ring[2]], [ring[5], ring[4]]
        mid = (blink[4, upper, 1] + blink[4, lower, 1]) / 2
        blink[4, upper, 1], blink[4, lower, 1] = mid - 0.5, mid + 0.5
    assert blink_depth(blink) > 0.8
    assert interocular(frames)[0] == pytest.approx(64 * FOCAL / (DISTANCE - 40), rel=0.01)


def test_burst_geometry_reports_every_cue() -> None:
    shape = head_shape()
    track = np.stack([project(shape, yaw) for yaw in (0, 5, 10, 5, 0)])
    cues = burst_geometry(track)
    assert set(cues) == {
        "parallax_ratio",
        "parallax_excess",
        "homography_residual",
        "rigid_residual",
        "rotation_deg",
        "blink_depth",
    }
    assert cues["rotation_deg"] == pytest.approx(10.0, abs=2.0)  # perspective bends the fit a little
    assert cues["parallax_ratio"] > 3.0
