"""Presentation-attack detection metrics in ISO/IEC 30107-3 terms (pure functions).

- APCER of one attack type (PAI species): the share of its attack presentations classified as
  bona fide (outcome "live"). The worst-case APCER is the largest over the types.
- BPCER: the share of bona fide presentations not classified as bona fide; "spoof" and
  "undetermined" both count against it (the undetermined share is reported on its own too).
- BPCER at APCER = 1%: the score threshold is swept; a presentation is accepted at threshold τ
  when the classifier did not abstain (outcome not "undetermined", score not None; an
  ``ambiguous`` burst, undetermined only because its score fell between the model's two
  thresholds, is scored like any other), no rule
  vetoed it (``vetoed``: e.g. a reject-only image cue, which no threshold overrides) and its
  score (P(live)) is ≥ τ. τ is the lowest threshold at which every type's APCER is ≤ 1%, and
  BPCER is read there.

A presentation whose face was not found in enough frames (a failure to acquire) is not a
classification: it is counted apart and left out of APCER and BPCER, as ISO/IEC 30107-3 does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.vision.liveness_types import Outcome


@dataclass(frozen=True)
class Presentation:
    """One judged burst: its outcome and score, or ``outcome`` None when no face was acquired."""

    outcome: Outcome | None
    score: float | None
    vetoed: bool = False  # rejected by a rule, not by the score: no threshold accepts it
    ambiguous: bool = False  # "undetermined" by its score (between the thresholds), not by the abstain rule


@dataclass(frozen=True)
class Rate:
    errors: int
    total: int

    @property
    def value(self) -> float:
        return self.errors / self.total if self.total else math.nan


@dataclass(frozen=True)
class ThresholdPoint:
    threshold: float  # inf when no threshold reaches the APCER target
    bpcer: float
    apcer_by_type: dict[str, float]


def judged(presentations: Sequence[Presentation]) -> list[Presentation]:
    """The presentations that were classified (a face was acquired)."""
    return [p for p in presentations if p.outcome is not None]


def acquisition_failures(presentations: Sequence[Presentation]) -> int:
    return sum(1 for p in presentations if p.outcome is None)


def apcer(attacks: Sequence[Presentation]) -> Rate:
    """Attack presentations classified as bona fide, over those classified."""
    done = judged(attacks)
    return Rate(sum(1 for p in done if p.outcome == "live"), len(done))


def bpcer(bona_fide: Sequence[Presentation]) -> Rate:
    """Bona fide presentations not classified as bona fide ("spoof" or "undetermined")."""
    done = judged(bona_fide)
    return Rate(sum(1 for p in done if p.outcome != "live"), len(done))


def called_spoof(presentations: Sequence[Presentation]) -> Rate:
    """Presentations classified as attacks (the part of BPCER that accuses a live person)."""
    done = judged(presentations)
    return Rate(sum(1 for p in done if p.outcome == "spoof"), len(done))


def undetermined(presentations: Sequence[Presentation]) -> Rate:
    done = judged(presentations)
    return Rate(sum(1 for p in done if p.outcome == "undetermined"), len(done))


def worst_apcer(attacks_by_type: Mapping[str, Sequence[Presentation]]) -> tuple[str, Rate]:
    """The attack type with the highest APCER (types with no judged presentation are skipped)."""
    rates = {t: apcer(ps) for t, ps in attacks_by_type.items() if judged(ps)}
    if not rates:
        raise ValueError("no judged attack presentation")
    worst = max(rates, key=lambda t: rates[t].value)
    return worst, rates[worst]


def _accepted_scores(presentations: Sequence[Presentation]) -> NDArray[np.float64]:
    """Scores that a threshold can accept; abstentions become -inf (rejected at every threshold)."""
    return np.array(
        [
            p.score
            if p.score is not None
            and (p.outcome not in (None, "undetermined") or p.ambiguous)
            and not p.vetoed
            else -math.inf
            for p in judged(presentations)
        ],
        dtype=np.float64,
    )


def bpcer_at_apcer(
    bona_fide: Sequence[Presentation],
    attacks_by_type: Mapping[str, Sequence[Presentation]],
    target_apcer: float = 0.01,
) -> ThresholdPoint:
    """BPCER at the lowest score threshold where every attack type's APCER is ≤ ``target_apcer``."""
    live = _accepted_scores(bona_fide)
    if len(live) == 0:
        raise ValueError("no judged bona fide presentation")
    attacks = {t: _accepted_scores(ps) for t, ps in attacks_by_type.items()}
    attacks = {t: s for t, s in attacks.items() if len(s)}
    finite = [s[np.isfinite(s)] for s in (live, *attacks.values())]
    candidates = np.unique(np.concatenate([*finite, [math.inf]]))
    for threshold in candidates[:-1]:  # ascending: BPCER only grows with the threshold
        rates = {t: float(np.mean(s >= threshold)) for t, s in attacks.items()}
        if all(r <= target_apcer + 1e-12 for r in rates.values()):
            return ThresholdPoint(float(threshold), float(np.mean(live < threshold)), rates)
    # Only an infinite threshold (accept nothing) meets the target.
    return ThresholdPoint(math.inf, 1.0, dict.fromkeys(attacks, 0.0))
