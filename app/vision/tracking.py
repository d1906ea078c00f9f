"""Follow one face across the frames of a burst, so identity and liveness judge the same person.

Boxes only (no pixels, no models): frames are linked by box overlap, greedily in capture order,
and the burst's subject is the track seen in the most frames (ties: the larger face, i.e. the
person nearest the door camera).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from app.vision.liveness_types import TrackedFace

Box = tuple[int, int, int, int]  # left, top, right, bottom; inclusive

# Two boxes of one face in consecutive door frames overlap heavily (a head moves a fraction of
# its width in 100 ms); two people side by side overlap little or not at all.
MIN_LINK_IOU = 0.3


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two inclusive boxes."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, right - left + 1) * max(0, bottom - top + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    members: dict[int, int] = field(default_factory=dict)  # frame index -> face index in that frame
    last_box: Box = (0, 0, 0, 0)
    widths: list[int] = field(default_factory=list)


def subject_track(frames: Sequence[Sequence[Box]], min_iou: float = MIN_LINK_IOU) -> list[int | None]:
    """For each frame, the index of the subject's face in it, or None where the subject is absent.

    A face joins the track whose last box overlaps it most (at least ``min_iou``, one face per
    track per frame, larger faces choose first); otherwise it starts a new track. A frame
    without the subject (a miss, or only a passer-by) gets None.
    """
    tracks: list[_Track] = []
    for fi, boxes in enumerate(frames):
        taken: set[int] = set()
        for bi in sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0])):
            box = boxes[bi]
            best, best_iou = None, min_iou
            for ti, track in enumerate(tracks):
                if ti in taken:
                    continue
                overlap = iou(track.last_box, box)
                if overlap >= best_iou:
                    best, best_iou = ti, overlap
            if best is None:
                tracks.append(_Track())
                best = len(tracks) - 1
            track = tracks[best]
            track.members[fi] = bi
            track.last_box = box
            track.widths.append(box[2] - box[0] + 1)
            taken.add(best)
    if not tracks:
        return [None] * len(frames)
    subject = max(tracks, key=lambda t: (len(t.members), sum(t.widths) / len(t.widths)))
    return [subject.members.get(fi) for fi in range(len(frames))]


class Located(Protocol):
    """A face found in a frame: the pipeline's ``Face``, or what an evaluation cached of one."""

    @property
    def box(self) -> Box: ...

    @property
    def landmarks(self) -> NDArray[np.float64]: ...

    @property
    def landmarks68(self) -> NDArray[np.float64] | None: ...


FaceT = TypeVar("FaceT", bound=Located)


@dataclass(frozen=True)
class Subject(Generic[FaceT]):
    """The burst's subject, in capture order, where it was seen at a usable size."""

    faces: list[FaceT]  # the subject's face in each such frame (identity votes with these)
    observed: list[TrackedFace]  # the same frames as liveness reads them
    too_small: int  # frames where the subject was narrower than ``min_face_px``


def follow_subject(
    frames: Sequence[tuple[NDArray[np.uint8], Sequence[FaceT]]],
    times: Sequence[float],
    min_face_px: int = 0,
) -> Subject[FaceT]:
    """Track the subject through (frame, faces) pairs and keep its faces at least ``min_face_px`` wide.

    A face too small to vote still links the track (it is the same person walking in), so the
    subject is chosen over every frame, as the service and the evaluation both need.
    """
    picks = subject_track([[f.box for f in faces] for _, faces in frames])
    kept: list[FaceT] = []
    observed: list[TrackedFace] = []
    too_small = 0
    for (frame, faces), t, pick in zip(frames, times, picks, strict=True):
        if pick is None:
            continue
        face = faces[pick]
        if face.box[2] - face.box[0] + 1 < min_face_px:
            too_small += 1
            continue
        kept.append(face)
        observed.append(
            TrackedFace(
                t=float(t), box=face.box, landmarks=face.landmarks, frame=frame, landmarks68=face.landmarks68
            )
        )
    return Subject(kept, observed, too_small)
