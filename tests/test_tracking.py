"""The burst's subject: linked by box overlap across frames, the track seen most often wins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.vision.tracking import follow_subject, iou, subject_track


def test_iou_of_inclusive_boxes() -> None:
    assert iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0.0
    # 5x10 overlap of two 10x10 boxes: 50 / 150
    assert abs(iou((0, 0, 9, 9), (5, 0, 14, 9)) - 50 / 150) < 1e-12


def test_one_moving_face_is_one_track_with_misses() -> None:
    frames = [[(100 + 5 * i, 80, 199 + 5 * i, 179)] for i in range(6)]
    frames[3] = []  # a frame where the detector missed
    assert subject_track(frames) == [0, 0, 0, None, 0, 0]


def test_subject_is_the_face_seen_most_not_the_largest_in_one_frame() -> None:
    subject = (100, 100, 199, 199)
    passer_by = (400, 90, 539, 229)  # larger, but in two frames only
    frames: list[list[tuple[int, int, int, int]]] = [
        [passer_by, subject],
        [subject, passer_by],
        [subject],
        [subject],
    ]
    assert subject_track(frames) == [1, 0, 0, 0]


def test_a_jump_across_the_frame_is_another_person() -> None:
    a, b = (0, 0, 99, 99), (300, 0, 399, 99)
    assert subject_track([[a], [b], [b]]) == [None, 0, 0]


def test_ties_go_to_the_larger_face_and_no_faces_give_no_track() -> None:
    small, large = (0, 0, 49, 49), (200, 0, 319, 119)
    assert subject_track([[small, large], [small, large]]) == [1, 1]
    assert subject_track([[], []]) == [None, None]
    assert subject_track([]) == []


@dataclass(frozen=True)
class _Found:
    box: tuple[int, int, int, int]
    landmarks: NDArray[np.float64]
    landmarks68: NDArray[np.float64] | None = None


def test_follow_subject_keeps_wide_faces_and_counts_the_narrow_ones() -> None:
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    pts = np.zeros((5, 2))
    # The subject walks in: 30 px wide, then 50 and 60; a passer-by appears once.
    near = [
        _Found((100, 100, 129, 129), pts),
        _Found((95, 95, 144, 144), pts),
        _Found((90, 90, 149, 149), pts),
    ]
    passer = _Found((400, 100, 479, 179), pts)
    frames = [(frame, [near[0]]), (frame, [near[1], passer]), (frame, []), (frame, [near[2]])]
    subject = follow_subject(frames, [0.0, 0.1, 0.2, 0.3], min_face_px=40)
    assert subject.faces == [near[1], near[2]]
    assert subject.too_small == 1  # the 30 px face linked the track but does not vote
    assert [o.t for o in subject.observed] == [0.1, 0.3]
    assert [o.box for o in subject.observed] == [near[1].box, near[2].box]
    assert follow_subject(frames, [0.0, 0.1, 0.2, 0.3]).too_small == 0
