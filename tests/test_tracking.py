"""The burst's subject: linked by box overlap across frames, the track seen most often wins."""

from __future__ import annotations

from app.vision.tracking import iou, subject_track


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
