"""Recognition: a burst of door frames in, one decision with a reason out."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.gallery.index import FaceIndex
from app.gallery.matching import Decision, FrameMatch, decide_frame, fuse_frames
from app.settings import Settings
from app.vision.imageio import decode_image
from app.vision.pipeline import FacePipeline, StageTimer


@dataclass
class FramesResult:
    decision: Decision
    reason: str  # the decision's reason, or "low_quality" when every face was too small to judge
    frames: int
    frames_with_face: int
    stage_ms: dict[str, float] = field(default_factory=dict)


def recognise(
    pipeline: FacePipeline, index: FaceIndex, frames: list[bytes], settings: Settings
) -> FramesResult:
    """Decode every frame, take its largest face, match it, fuse the frames. CPU-heavy."""
    timer = StageTimer()
    matches: list[FrameMatch] = []
    too_small = 0
    for data in frames:
        with timer.stage("decode"):
            bgr = decode_image(data, max_pixels=settings.max_image_pixels)
        faces = pipeline.faces(bgr, timer)
        if not faces:
            continue
        # The person at the door is the nearest, hence largest, face in the frame.
        face = max(faces, key=lambda f: f.width)
        if face.width < settings.recognize_min_face_px:
            too_small += 1
            continue
        with timer.stage("search"):
            hits = index.search_people(face.embedding[None, :], k_people=2)[0]
        matches.append(decide_frame(hits, settings.tau, settings.match_margin))
    decision = fuse_frames(matches, len(frames))
    reason = "low_quality" if decision.reason == "no_face" and too_small else decision.reason
    return FramesResult(decision, reason, len(frames), len(matches), timer.ms)
