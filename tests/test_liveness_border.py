"""The border cue fires only on a rectangle that moves with the face, on synthetic bursts.

A print is a bright sheet around the face that moves with it; scenery is a dark frame fixed in
the image while the face moves inside it; a picture on a stand is that frame with a face that
does not move (which cannot be told from scenery, so it stays rejected).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision import liveness_image as li
from app.vision.liveness import REJECT_CUES, ImageCueLimits, LivenessModel, fired_cues
from app.vision.liveness_cues import eye_centres, five_points
from app.vision.liveness_types import TrackedFace

H, W = 480, 640
FACE_RX, FACE_RY = 50, 60  # the face ellipse's semi-axes; its box is 101 x 121, half-width 60.5
PRINT_RX, PRINT_RY = 130, 150  # the sheet around a printed face: 2.1 and 2.5 face half-widths out
FRAME_RX, FRAME_RY = 150, 150  # a door frame fixed in the image, centred on it
FRAMES = 8


def _frame(
    face: tuple[float, float], seed: int, *, sheet: bool = False, door: bool = False
) -> NDArray[np.uint8]:
    """A smooth wall, optionally a sheet around the face or a fixed dark frame, a shaded face."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 110.0 + 25.0 * np.sin(xx / 83.0) * np.cos(yy / 61.0)
    cx, cy = face
    if sheet:
        paper = (np.abs(xx - cx) <= PRINT_RX) & (np.abs(yy - cy) <= PRINT_RY)
        img = np.where(paper, 215.0, img)
    if door:
        outline = np.zeros((H, W), np.uint8)
        corners = ((W // 2 - FRAME_RX, H // 2 - FRAME_RY), (W // 2 + FRAME_RX, H // 2 + FRAME_RY))
        cv2.rectangle(outline, *corners, 255, thickness=6)
        img = np.where(outline > 0, 25.0, img)
    head = ((xx - cx) / FACE_RX) ** 2 + ((yy - cy) / FACE_RY) ** 2 <= 1.0
    img = np.where(head, 150.0 + 40.0 * np.cos((xx - cx) / FACE_RX) - 0.1 * (yy - cy), img)
    img = cv2.GaussianBlur(img, (0, 0), 1.5) + rng.normal(0.0, 2.5, size=img.shape)  # sensor noise
    return np.ascontiguousarray(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2))


def _face(t: float, centre: tuple[float, float], frame: NDArray[np.uint8]) -> TrackedFace:
    cx, cy = centre
    box = (round(cx) - FACE_RX, round(cy) - FACE_RY, round(cx) + FACE_RX, round(cy) + FACE_RY)
    # dlib's 5 points: the image-right eye (outer, inner), the image-left eye (outer, inner), the nose.
    points = np.array([[40, -15], [15, -15], [-40, -15], [-15, -15], [0, 15]], dtype=np.float64)
    return TrackedFace(t, box, points + np.array([cx, cy]), frame)


def _burst(
    centres: list[tuple[float, float]], *, sheet: bool = False, door: bool = False
) -> list[TrackedFace]:
    return [_face(k / 10.0, c, _frame(c, seed=k, sheet=sheet, door=door)) for k, c in enumerate(centres)]


def _moving(dx: float, dy: float) -> list[tuple[float, float]]:
    """Face centres sweeping (dx, dy) pixels over the burst, centred on the image."""
    s = np.linspace(-0.5, 0.5, FRAMES)
    return [(W / 2 + dx * v, H / 2 + dy * v) for v in s]


def _border_frames(track: list[TrackedFace]) -> list[li.BorderFrame]:
    out = []
    for face in track:
        left, right = eye_centres(five_points(face.landmarks[None]))
        out.append(
            li.border_frame(face.frame, face.box, (left[0, 0], left[0, 1]), (right[0, 0], right[0, 1]))
        )
    return out


def _image_cue_judge() -> LivenessModel:
    # image_cues reads only the limits: no model is needed to measure the border. The border is out
    # of the default rejects (it holds on ~40% of real live bursts); its rule is what is tested here.
    model = LivenessModel.__new__(LivenessModel)
    model.limits = ImageCueLimits(rejects=REJECT_CUES)
    return model


PRINT_MOVING = _burst(_moving(80.0, 40.0), sheet=True)  # 1.3 and 0.7 face half-widths of sweep
DOOR_FACE_MOVING = _burst(_moving(60.0, 0.0), door=True)  # 1.0 face half-width across the frame
DOOR_FACE_STILL = _burst(_moving(0.0, 0.0), door=True)


def test_border_lines_says_where_each_side_is() -> None:
    face = PRINT_MOVING[0]
    frame = _border_frames([face])[0]
    assert frame.lines.sides == 4
    above, below, left, right = frame.lines.offsets
    half = 60.5  # the box's half-width: the unit of the offsets
    expected = (-PRINT_RY / half, PRINT_RY / half, -PRINT_RX / half, PRINT_RX / half)
    found = (above, below, left, right)
    assert all(f is not None for f in found)
    np.testing.assert_allclose([float(f) for f in found if f is not None], expected, atol=0.1)
    region, rhalf = li.upright_region(face.frame, face.box, frame.eye_angle)
    assert li.border_sides(region, rhalf) == 4


def test_a_print_moving_with_the_face_is_attached() -> None:
    motion = li.border_motion(_border_frames(PRINT_MOVING))
    assert motion.decisive_sides == 4  # the face moved enough on both axes to tell
    assert motion.shift > 1.0
    assert motion.follow == 1.0


def test_the_face_scale_comes_from_the_eyes_not_the_snapping_box() -> None:
    """The detector's box jumps between sizes ~20% apart from frame to frame of one face."""
    track = []
    for k, face in enumerate(PRINT_MOVING):
        left, top, right, bottom = face.box
        g = k % 2  # every other box 20% wider and taller, about the same centre
        box = (left - 10 * g, top - 12 * g, right + 10 * g, bottom + 12 * g)
        track.append(TrackedFace(face.t, box, face.landmarks, face.frame))
    motion = li.border_motion(_border_frames(track))
    assert motion.decisive_sides == 4
    assert motion.follow == 1.0


def test_a_static_frame_with_the_face_moving_inside_is_scenery() -> None:
    frames = _border_frames(DOOR_FACE_MOVING)
    assert np.mean([f.lines.sides == 4 for f in frames]) >= 0.5  # the old cue fired on it
    motion = li.border_motion(frames)
    # Left and right lines stay in the image while the face crosses 1 half-width: they can tell.
    # The top and bottom lines do not move relative to a face moving sideways: they cannot.
    assert motion.decisive_sides == 2
    assert motion.shift > 0.8
    assert motion.follow < 0.5


def test_a_static_frame_around_a_still_face_cannot_be_told_from_a_print() -> None:
    frames = _border_frames(DOOR_FACE_STILL)
    assert all(f.lines.sides == 4 for f in frames)
    motion = li.border_motion(frames)
    assert motion.decisive_sides == 0
    assert motion.shift < 0.05
    assert motion.follow == 1.0


@pytest.mark.parametrize(
    ("track", "fires"),
    [(PRINT_MOVING, True), (DOOR_FACE_MOVING, False), (DOOR_FACE_STILL, True)],
    ids=["print-moving", "scenery-face-moving", "scenery-face-still"],
)
def test_the_border_cue_fires_only_when_attached_or_undecidable(
    track: list[TrackedFace], fires: bool
) -> None:
    model = _image_cue_judge()
    cues = model.image_cues(track)
    assert cues["border_frames"] >= model.limits.border_min_frames
    assert ("border" in fired_cues(cues, model.limits)) is fires


def test_border_motion_needs_two_bordered_frames() -> None:
    frames = _border_frames(DOOR_FACE_MOVING[:1])
    assert li.border_motion(frames) == li.BorderMotion(1.0, 0.0, 0)


@pytest.mark.parametrize("follow", [0.0, 1.5])
def test_limits_reject_a_follow_fraction_outside_the_burst(follow: float) -> None:
    with pytest.raises(ValueError, match="border_min_follow"):
        ImageCueLimits(border_min_follow=follow)
