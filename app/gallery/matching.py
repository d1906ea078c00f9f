"""The match decision: pure functions over per-person search hits, no FAISS, no I/O.

Two steps:

1. :func:`decide_frame` turns one frame's nearest people (from ``FaceIndex.search_people``) into
   a :class:`FrameMatch`: ``match``, ``ambiguous`` or ``unknown_person``.
2. :func:`fuse_burst` turns one request into a :class:`Decision` from the match of the mean of
   its frames' encodings (the service's rule); :func:`fuse_frames` is the older strict majority
   vote over the frames that had a face, kept for comparison (scripts/measure_burst_identity.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FrameOutcome = Literal["match", "ambiguous", "unknown_person"]
Reason = Literal["match", "unknown_person", "no_face", "ambiguous"]


@dataclass(frozen=True, slots=True)
class PersonHit:
    """One enrolled person's nearest template to a query face."""

    person_id: int
    template_id: int
    distance: float  # in the profile's metric: Euclidean (L2, not squared) or cosine (1 - cos)


@dataclass(frozen=True, slots=True)
class FrameMatch:
    """What one face in one frame matched.

    ``person_id``/``distance`` describe the nearest person and ``second_*`` the next-nearest
    *other* person; both are filled whatever the outcome (for audit and calibration), so
    ``person_id`` is an identity only when ``outcome == "match"``. All are ``None`` when the
    gallery was empty (and ``second_*`` when it held one person).
    """

    outcome: FrameOutcome
    person_id: int | None
    template_id: int | None
    distance: float | None
    second_person_id: int | None
    second_distance: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request of one or more frames (see :func:`fuse_frames`)."""

    reason: Reason
    person_id: int | None  # set only when reason == "match"
    distance: float | None
    second_distance: float | None
    frames: int  # frames received
    frames_with_face: int  # frames that produced a FrameMatch
    votes: int  # frames that voted for the decided outcome (see fuse_frames)

    @property
    def granted(self) -> bool:
        return self.reason == "match"


def decide_frame(hits: Sequence[PersonHit], tau: float, margin: float) -> FrameMatch:
    """Decide one frame from its per-person hits (any order; one hit per person expected).

    - ``unknown_person``: no hits (empty gallery), or the best person's distance is ``>= tau``.
    - ``ambiguous``: best ``< tau`` but the second-best *other* person is closer than
      ``best + margin`` (whether or not that second person is itself under ``tau``): two
      people look alike to the encoder, so opening the door for either would be a guess.
    - ``match``: best ``< tau`` and there is no second person or it is ``>= best + margin``.
    """
    if tau <= 0.0 or margin < 0.0:
        raise ValueError(f"need tau > 0 and margin >= 0, got tau={tau}, margin={margin}")
    if not hits:
        return FrameMatch("unknown_person", None, None, None, None, None)
    ordered = sorted(hits, key=lambda h: h.distance)
    best = ordered[0]
    # Hits are per person already; skipping the same id again keeps a malformed list from
    # turning a person's own second template into a "rival".
    second = next((h for h in ordered[1:] if h.person_id != best.person_id), None)
    second_id = second.person_id if second is not None else None
    second_d = second.distance if second is not None else None

    outcome: FrameOutcome
    if best.distance >= tau:
        outcome = "unknown_person"
    elif second_d is not None and second_d < best.distance + margin:
        outcome = "ambiguous"
    else:
        outcome = "match"
    return FrameMatch(outcome, best.person_id, best.template_id, best.distance, second_id, second_d)


def decide_claim(claimed: PersonHit, rival: PersonHit | None, tau: float) -> FrameMatch:
    """Decide one 1:1 claim: is this face the claimed person's?

    ``claimed`` is the claimed person's nearest template; ``rival`` the nearest *other* enrolled
    person (None when nobody else is enrolled). ``match`` when the claimed distance is under
    ``tau`` and no other person is nearer; otherwise ``unknown_person`` (the door's
    ``not_claimed_person``). The rival rule is the issue's "the face is another enrolled
    person's": on the dev open set it stops a colleague holding someone else's badge (16 of 123,998
    such claims under a τ of 0.607 became 1) for 0.2% of genuine claims (scripts/measure_claims.py).
    ``second_*`` record the rival, whatever the outcome.
    """
    if tau <= 0.0:
        raise ValueError(f"need tau > 0, got {tau}")
    if rival is not None and rival.person_id == claimed.person_id:
        raise ValueError("the rival must be another person than the claimed one")
    rival_id = rival.person_id if rival is not None else None
    rival_d = rival.distance if rival is not None else None
    nearer_other = rival_d is not None and rival_d < claimed.distance
    outcome: FrameOutcome = "match" if claimed.distance < tau and not nearer_other else "unknown_person"
    return FrameMatch(outcome, claimed.person_id, claimed.template_id, claimed.distance, rival_id, rival_d)


def _min_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def fuse_burst(fused: FrameMatch | None, matches: Sequence[FrameMatch], frames_total: int) -> Decision:
    """One request's decision from ``fused``, the match of the mean of its frames' encodings.

    ``matches`` holds each frame's own match (one per frame with a face); they decide nothing
    and only count ``votes``: the frames whose own outcome (and person, for a match) agree with
    the fused one. No frame with a face: ``no_face``.
    """
    frames_with_face = len(matches)
    if frames_total < frames_with_face:
        raise ValueError(f"frames_total={frames_total} < {frames_with_face} frames with a face")
    if fused is None or frames_with_face == 0:
        return Decision("no_face", None, None, None, frames_total, 0, 0)
    agree = sum(
        1
        for m in matches
        if m.outcome == fused.outcome and (fused.outcome != "match" or m.person_id == fused.person_id)
    )
    person = fused.person_id if fused.outcome == "match" else None
    return Decision(
        fused.outcome, person, fused.distance, fused.second_distance, frames_total, frames_with_face, agree
    )


def fuse_frames(matches: Sequence[FrameMatch], frames_total: int) -> Decision:
    """Fuse the per-frame results of one request into one decision.

    ``matches`` holds one :class:`FrameMatch` per frame in which a face was found, so
    ``frames_with_face = len(matches)`` (F); frames without a face cast no vote. Rules, in order:

    1. F == 0: ``no_face`` (``votes`` 0, no distances).
    2. One person P has outcome ``match`` in a strict majority of the F frames
       (``votes_P > F / 2``): ``match`` with P. ``distance`` is P's smallest distance over the
       frames that voted for P, ``second_distance`` the smallest second-person distance over the
       same frames (the closest any rival came; ``None`` if the gallery held only P).
       ``votes = votes_P``.
    3. Otherwise, if ``unknown_person`` frames are a strict majority: ``unknown_person``,
       ``votes`` = the number of unknown frames.
    4. Otherwise (frames split between people, ambiguous frames, or no outcome holds a strict
       majority): ``ambiguous``, ``votes`` = the largest number of ``match`` votes any single
       person got (0 if none).

    For 3 and 4 ``person_id`` is ``None`` and ``distance``/``second_distance`` are the smallest
    best/second distances over all F frames (``None`` where no frame had one): what the nearest
    candidates looked like, for the audit log and for calibrating tau.
    """
    frames_with_face = len(matches)
    if frames_total < frames_with_face:
        raise ValueError(f"frames_total={frames_total} < {frames_with_face} frames with a face")
    if frames_with_face == 0:
        return Decision("no_face", None, None, None, frames_total, 0, 0)

    match_votes = Counter(m.person_id for m in matches if m.outcome == "match" and m.person_id is not None)
    if match_votes:
        (winner, votes), *_ = match_votes.most_common(1)
        if 2 * votes > frames_with_face:  # strict majority; also makes the winner unique
            won = [m for m in matches if m.outcome == "match" and m.person_id == winner]
            return Decision(
                "match",
                winner,
                _min_or_none([m.distance for m in won]),
                _min_or_none([m.second_distance for m in won]),
                frames_total,
                frames_with_face,
                votes,
            )

    best = _min_or_none([m.distance for m in matches])
    second = _min_or_none([m.second_distance for m in matches])
    unknown = sum(1 for m in matches if m.outcome == "unknown_person")
    if 2 * unknown > frames_with_face:
        return Decision("unknown_person", None, best, second, frames_total, frames_with_face, unknown)
    top_votes = max(match_votes.values(), default=0)
    return Decision("ambiguous", None, best, second, frames_total, frames_with_face, top_votes)
