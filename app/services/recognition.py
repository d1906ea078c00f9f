"""Recognition: a burst of door frames in, one decision with a reason out.

The burst's subject is tracked across frames (`app.vision.tracking`); the same tracked face is
matched against the gallery and judged for liveness, so identity and liveness always speak
about one person. The door's policy then says what a spoof or an undetermined burst does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.gallery.index import FaceIndex
from app.gallery.matching import Decision, FrameMatch, PersonHit, decide_claim, decide_frame, fuse_burst
from app.services.verification import distances_to
from app.settings import Settings
from app.vision.imageio import decode_image
from app.vision.liveness_types import LivenessResult
from app.vision.pipeline import Face, FacePipeline, StageTimer
from app.vision.snapshot import Snapshot, SnapshotError, take_snapshot
from app.vision.tracking import Subject, follow_subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DoorPolicy:
    liveness_required: bool = True
    liveness_undetermined: str = "deny"  # or "grant"
    snapshot_full_frame: bool = False  # the event keeps the whole frame beside the face crop


@dataclass
class FramesResult:
    decision: Decision
    reason: str  # final: the match reason, "low_quality", "spoof" or "liveness_undetermined"
    frames: int
    frames_with_face: int
    liveness: LivenessResult | None = None  # None when no frame had the subject's face
    liveness_required: bool = True
    track_frames: int = 0
    hint: str | None = None
    tau: float = 0.0  # the threshold this decision used, 1:K or 1:1 (recorded with the event)
    mode: str = "identify"  # "identify" (1:K) or "claim" (1:1 against the claimed person)
    claim: str | None = None  # the claim the door sent, as sent
    stage_ms: dict[str, float] = field(default_factory=dict)
    # The subject's best face (and frame) as JPEG, stored with the event (FACEGATE_SNAPSHOTS).
    snapshot: Snapshot | None = None

    def liveness_record(self) -> dict[str, Any] | None:
        """What the access event keeps of the liveness verdict (JSON)."""
        if self.liveness is None:
            return None
        return {
            "outcome": self.liveness.outcome,
            "score": self.liveness.score,
            "required": self.liveness_required,
            "drivers": list(self.liveness.drivers),
            "cues": dict(self.liveness.cues),
            "track_frames": self.track_frames,
        }


@dataclass(frozen=True)
class ClaimedPerson:
    """The person a door claim names, with their templates of the served model version."""

    claim: str  # as the door sent it
    person_id: int
    template_ids: list[int]
    vectors: NDArray[np.float32]  # [templates, dim]


@dataclass(frozen=True)
class Burst:
    """One request's frames, in capture order, with their times and the door's policy."""

    frames: list[bytes]
    policy: DoorPolicy
    times: list[float]  # seconds since the first frame, from burst_times (checked once, at the API)


class TimestampError(ValueError):
    """Client frame timestamps that cannot describe one burst."""


def burst_times(timestamps: Sequence[float] | None, frames: int, settings: Settings) -> list[float]:
    """Seconds since the first frame: the client's timestamps, checked, or the nominal frame rate."""
    if timestamps is None or len(timestamps) == 0:
        return [i / settings.burst_nominal_fps for i in range(frames)]
    if len(timestamps) != frames:
        raise TimestampError(f"{len(timestamps)} timestamps for {frames} frames; send one per frame")
    if not all(math.isfinite(t) for t in timestamps):
        raise TimestampError("timestamps must be finite numbers (seconds)")
    steps = np.diff(np.asarray(timestamps, dtype=np.float64))
    if (steps <= 0).any():
        raise TimestampError("timestamps must increase strictly, in capture order")
    span = float(timestamps[-1] - timestamps[0])
    if span > settings.burst_max_span_s:
        raise TimestampError(
            f"the frames span {span:.2f} s; one burst may span at most {settings.burst_max_span_s:g} s"
        )
    return [float(t - timestamps[0]) for t in timestamps]


def apply_policy(reason: str, liveness: LivenessResult | None, policy: DoorPolicy) -> tuple[str, str | None]:
    """The final reason and client hint, given the identity reason and the liveness verdict.

    A spoof is reported as such whoever it impersonates (security staff want to see it even
    when the face is unknown). An undetermined burst only matters when it would have opened
    the door: then the door's policy decides, and the client is asked for a small head turn.
    """
    if liveness is None or not policy.liveness_required:
        return reason, None
    if liveness.outcome == "spoof":
        return "spoof", None
    if liveness.outcome == "undetermined" and reason == "match" and policy.liveness_undetermined == "deny":
        return "liveness_undetermined", liveness.hint or "turn_head"
    return reason, None


def _track(pipeline: FacePipeline, settings: Settings, burst: Burst, timer: StageTimer) -> Subject[Face]:
    """Decode every frame and follow the burst's subject across them."""
    images: list[NDArray[np.uint8]] = []
    for data in burst.frames:
        with timer.stage("decode"):
            images.append(decode_image(data, max_pixels=settings.max_image_pixels))
    # Every frame's faces go through the encoders in one batch (one run per burst on a GPU).
    decoded: list[tuple[NDArray[np.uint8], list[Face]]] = list(
        zip(images, pipeline.faces_burst(images, timer), strict=True)
    )
    return follow_subject(decoded, burst.times, settings.recognize_min_face_px)


def _burst_queries(pipeline: FacePipeline, subject: Subject[Face]) -> NDArray[np.float32]:
    """The subject's encoding in each frame, then their mean (the row that decides, last)."""
    embeddings = np.stack([face.embedding for face in subject.faces])
    return np.vstack([embeddings, pipeline.fuse(embeddings)[None]])


def _judged(
    pipeline: FacePipeline,
    subject: Subject[Face],
    decision: Decision,
    reason: str,
    *,
    burst: Burst,
    timer: StageTimer,
    tau: float,
    settings: Settings,
    **record: str | None,
) -> FramesResult:
    """Judge the tracked subject's liveness, apply the door's policy to the identity reason and
    assemble the result (``record``: what a claim door adds, mode and claim)."""
    liveness = None
    observed = subject.observed
    if observed:
        with timer.stage("liveness"):
            liveness = pipeline.liveness.judge(observed)
    reason, hint = apply_policy(reason, liveness, burst.policy)
    snapshot = None
    if settings.snapshots and subject.faces:
        with timer.stage("snapshot"):
            try:
                snapshot = take_snapshot(
                    [o.frame for o in observed],
                    subject.faces,
                    full_frame=burst.policy.snapshot_full_frame,
                    quality=settings.snapshot_jpeg_quality,
                )
            except SnapshotError as exc:  # the decision stands without its picture
                log.warning("no snapshot for this event: %s", exc)
    return FramesResult(
        decision=decision,
        reason=reason,
        frames=len(burst.frames),
        frames_with_face=decision.frames_with_face,
        liveness=liveness,
        liveness_required=burst.policy.liveness_required,
        track_frames=len(observed),
        hint=hint,
        stage_ms=timer.ms,
        tau=tau,
        snapshot=snapshot,
        **record,  # type: ignore[arg-type]
    )


def verify_claim(
    pipeline: FacePipeline,
    index: FaceIndex,
    claimed: ClaimedPerson,
    settings: Settings,
    burst: Burst,
    *,
    tau: float,
) -> FramesResult:
    """Badge + face: is the burst's subject the claimed person (1:1, their nearest template)? CPU-heavy.

    The same tracking, mean encoding and liveness as :func:`recognise`; only the identity question
    differs. ``tau`` is the 1:1 threshold (``CalibrationService.tau_1to1``). A face that is not the
    claimed person's is denied with reason ``not_claimed_person``: nobody's (the claimed distance
    is not under ``tau``), or someone else's (another enrolled person in ``index`` is nearer;
    :func:`decide_claim`).
    """
    frames = burst.frames
    timer = StageTimer()
    subject = _track(pipeline, settings, burst, timer)
    matches: list[FrameMatch] = []
    fused: FrameMatch | None = None
    if subject.faces:
        queries = _burst_queries(pipeline, subject)
        with timer.stage("search"):
            rows = [distances_to(q, claimed.vectors, pipeline.profile.metric) for q in queries]
            # The two nearest people hold the nearest one other than the claimed person.
            nearest = index.search_people(queries, k_people=2)
        for d, hits in zip(rows, nearest, strict=True):
            best = int(np.argmin(d))
            hit = PersonHit(claimed.person_id, claimed.template_ids[best], float(d[best]))
            rival = next((h for h in hits if h.person_id != claimed.person_id), None)
            matches.append(decide_claim(hit, rival, tau))
        fused = matches.pop()
    decision = fuse_burst(fused, matches, len(frames))
    reason: str = decision.reason
    if reason == "no_face" and subject.too_small:
        reason = "low_quality"
    elif reason == "unknown_person":
        reason = "not_claimed_person"
    return _judged(
        pipeline,
        subject,
        decision,
        reason,
        burst=burst,
        timer=timer,
        tau=tau,
        settings=settings,
        mode="claim",
        claim=claimed.claim,
    )


def recognise(
    pipeline: FacePipeline, index: FaceIndex, settings: Settings, burst: Burst, tau: float
) -> FramesResult:
    """Decode every frame, track the subject, match and judge that face, fuse. CPU-heavy.

    ``tau`` is the 1:K threshold in force (``CalibrationService.tau``), in the profile's metric.
    """
    frames = burst.frames
    timer = StageTimer()
    subject = _track(pipeline, settings, burst, timer)

    # The burst's identity is decided once, on the mean of the subject's encodings (measured on
    # real sequences: 100% of live bursts granted as themselves against 95% for a per-frame
    # majority vote, no stranger let in either way); each frame is still searched so the
    # decision records how many frames agree with it.
    matches: list[FrameMatch] = []
    fused: FrameMatch | None = None
    if subject.faces:
        queries = _burst_queries(pipeline, subject)
        with timer.stage("search"):
            hits = index.search_people(queries, k_people=2)
        matches = [decide_frame(h, tau, settings.match_margin) for h in hits[:-1]]
        fused = decide_frame(hits[-1], tau, settings.match_margin)
    decision = fuse_burst(fused, matches, len(frames))
    reason: str = "low_quality" if decision.reason == "no_face" and subject.too_small else decision.reason
    return _judged(pipeline, subject, decision, reason, burst=burst, timer=timer, tau=tau, settings=settings)
