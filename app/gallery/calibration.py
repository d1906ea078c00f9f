"""How often would a stranger open the door? Pure calibration math: distances in, curves out.

No SQL, no HTTP, no images: the caller passes enrolled templates (and, optionally, encodings of
strangers) as arrays.

Impostor comparisons
    A stranger at the door is compared with every enrolled person; a person's distance is that of
    their nearest template (``FaceIndex.search_people``). The gallery itself holds the closest
    thing we have to strangers: every enrolled template, compared with each *other* person the
    way a door would compare it (distance to that person's nearest template). These
    *template-to-person* distances are the impostor comparisons; there are ``T * (K - 1)`` of
    them for T templates and K people. We prefer them to the two alternatives:

    - all cross-person template-to-template distances would treat each of B's templates as a
      separate comparison, while the door only ever sees B's nearest one: FMR per person too low
      by up to the number of templates a person has;
    - the nearest template-to-template distance per pair of people takes the minimum over
      ``T_A * T_B`` distances, while a stranger brings one photo: FMR too high.

    Above ``max_comparisons`` a deterministic subset of templates is used as probes (chosen by a
    hash of the template id, so adding one template does not reshuffle the others); the cost is
    then about ``max_comparisons * (T / K) * dim`` multiply-adds, whatever the gallery size.

False-match rate per comparison, FMR(τ) = P(distance < τ)
    Empirical: the share of impostor comparisons below τ. With few comparisons it is 0 at small
    τ, which is not the same as "never", so the lower tail is also modelled by a normal
    distribution fitted to the lowest ``TAIL_FRACTION`` of the comparisons only (a probit
    regression: sorted distance against the normal quantile of its plotting position), which
    extrapolates below the smallest distance seen. :attr:`CurvePoint.fmr` is the larger of the
    two, so neither a lucky empty tail nor a model that fits badly can make τ look safer than
    the data say.

False accepts per stranger attempt at K people
    ``FAR(τ) = 1 - (1 - FMR(τ))**K``, treating the K comparisons as independent. The largest K a
    threshold supports for a target is therefore ``log(1 - target) / log(1 - FMR(τ))``, and the
    recommended τ for a target is the largest τ whose FMR stays under ``1 - (1 - target)**(1/K)``.
    With a reference set of strangers, the observed rate (strangers whose nearest enrolled person
    is below τ) is reported beside the prediction, and the recommendation is also kept at or
    below the τ the strangers allow.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from app.gallery.metric import Metric, from_squared_l2

DEFAULT_MAX_COMPARISONS = 2_000_000
DEFAULT_LOOK_ALIKES = 20
# The normal is fitted to this lower share of the impostor comparisons (at least TAIL_MIN_POINTS).
TAIL_FRACTION = 0.01
TAIL_MIN_POINTS = 30
# Fewer comparisons than this and the "tail" would be most of the data: no model then.
MODEL_MIN_COMPARISONS = 4 * TAIL_MIN_POINTS
_TAIL_FIT_MAX_POINTS = 2000  # evenly spaced order statistics; more only costs time
DEFAULT_GRID = tuple(round(0.30 + 0.01 * i, 2) for i in range(51))  # 0.30 .. 0.80
REFERENCE_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# A distance block holds at most this many float32 values (64 MiB).
_BLOCK_VALUES = 1 << 24
_STD_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class LookAlike:
    """Two different enrolled people and the smallest distance between their templates."""

    person_a: int  # the smaller id
    person_b: int
    distance: float


@dataclass(frozen=True, slots=True)
class ImpostorSample:
    """Template-to-person distances between different enrolled people (see the module doc)."""

    distances: NDArray[np.float64]  # ascending
    people: int
    templates: int
    probes: int  # templates used as probes
    look_alikes: tuple[LookAlike, ...]  # nearest first, among the probes

    @property
    def complete(self) -> bool:
        """Every template was a probe (else a deterministic subset was)."""
        return self.probes == self.templates


@dataclass(frozen=True, slots=True)
class TailModel:
    """A normal fitted to the lower tail of the impostor distances: FMR(τ) = Φ((τ - mu) / sigma)."""

    mu: float
    sigma: float
    tail_fraction: float  # share of the comparisons the fit used
    points: int  # comparisons in the fitted tail
    upper: float  # the largest distance in the fitted tail
    r2: float  # of the probit regression (1 = the tail is exactly normal)

    def fmr(self, tau: float) -> float:
        return _normal_cdf((tau - self.mu) / self.sigma)

    def tau_for(self, fmr: float) -> float:
        """The τ at which the modelled FMR equals ``fmr`` (0 < fmr < 1)."""
        return self.mu + self.sigma * _STD_NORMAL.inv_cdf(fmr)


@dataclass(frozen=True, slots=True)
class StrangerSample:
    """Distances from each reference stranger to each enrolled person (nearest template)."""

    nearest: NDArray[np.float64]  # per stranger, ascending
    comparisons: NDArray[np.float64]  # every stranger-person distance, ascending

    @property
    def strangers(self) -> int:
        return len(self.nearest)


@dataclass(frozen=True, slots=True)
class CurvePoint:
    tau: float
    matches: int  # impostor comparisons below tau
    fmr_empirical: float
    fmr_model: float | None
    fmr: float  # max(empirical, model): what the predictions use
    far_attempt: float  # predicted share of stranger attempts accepted at the report's K
    stranger_matches: int | None = None  # reference strangers whose nearest person is below tau
    stranger_far: float | None = None  # their share (observed FAR per attempt)


@dataclass(frozen=True, slots=True)
class Recommendation:
    target_far: float
    fmr_per_comparison: float  # the FMR that K comparisons may have for FAR = target
    tau: float | None  # the largest τ meeting the target (None: too few comparisons to say)
    tau_gallery: float | None  # from the enrolled people's impostor comparisons
    tau_strangers: float | None  # from the reference strangers (None without them)
    strangers_sufficient: bool | None  # enough strangers (>= 3 / target) to observe the target


@dataclass(frozen=True, slots=True)
class StrangerSummary:
    strangers: int
    matches_at_tau: int
    observed_far_at_tau: float
    predicted_far_at_tau: float | None
    comparisons: int
    fmr_empirical_at_tau: float  # per stranger-person comparison


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    people: int
    templates: int
    comparisons: int
    probes: int
    complete: bool
    tau: float
    target_far: float
    model: TailModel | None
    fmr_at_tau: float | None
    far_at_tau: float | None
    max_people_at_tau: int | None  # None: no estimate (too few comparisons, or FMR 0)
    supported: bool | None  # people <= max_people_at_tau
    warning: str | None
    recommendations: tuple[Recommendation, ...]
    curve: tuple[CurvePoint, ...]
    look_alikes: tuple[LookAlike, ...]
    strangers: StrangerSummary | None

    def recommendation(self, target_far: float) -> Recommendation | None:
        return next((r for r in self.recommendations if math.isclose(r.target_far, target_far)), None)


# --------------------------------------------------------------------------------- distances


def _group_by_person(
    person_ids: NDArray[np.int64], vectors: NDArray[np.float32]
) -> tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.intp], NDArray[np.float32]]:
    """Templates reordered by person: (order, people, start of each person's run, vectors)."""
    order = np.argsort(person_ids, kind="stable")
    sorted_people = person_ids[order]
    people, starts = np.unique(sorted_people, return_index=True)
    return order, people.astype(np.int64), starts.astype(np.intp), np.ascontiguousarray(vectors[order])


def _person_distances(
    queries: NDArray[np.float32], gallery: NDArray[np.float32], starts: NDArray[np.intp], metric: Metric
) -> NDArray[np.float64]:
    """[len(queries), people]: each query's distance (in ``metric``) to each person's nearest template."""
    # |q - g|^2 = |q|^2 + |g|^2 - 2 q.g, as FAISS's flat index computes it.
    d2 = (queries * queries).sum(axis=1)[:, None] + (gallery * gallery).sum(axis=1)[None, :]
    d2 -= 2.0 * (queries @ gallery.T)
    nearest = np.minimum.reduceat(d2, starts, axis=1)
    return from_squared_l2(nearest, metric)


def _check_arrays(
    person_ids: NDArray[np.int64] | Sequence[int], vectors: NDArray[np.float32]
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    pids = np.asarray(person_ids, dtype=np.int64)
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if pids.ndim != 1 or vecs.ndim != 2 or len(pids) != len(vecs):
        raise ValueError(f"need person_ids [n] and vectors [n, dim], got {pids.shape} and {vecs.shape}")
    if not np.isfinite(vecs).all():
        raise ValueError("vectors contain NaN or infinity")
    return pids, vecs


def _stable_hash(ids: NDArray[np.int64]) -> NDArray[np.uint64]:
    """splitmix64's finalizer: a fixed, well-mixed order of template ids."""
    x = ids.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


class _ClosestPairs:
    """The ``limit`` closest pairs of different people seen so far, one entry per pair."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.best: dict[tuple[int, int], float] = {}

    def offer(self, a: NDArray[np.int64], b: NDArray[np.int64], d: NDArray[np.float64]) -> None:
        for pa, pb, dist in zip(a.tolist(), b.tolist(), d.tolist(), strict=True):
            key = (pa, pb) if pa < pb else (pb, pa)
            if dist < self.best.get(key, math.inf):
                self.best[key] = dist
        if len(self.best) > self.limit:
            kept = heapq.nsmallest(self.limit, self.best.items(), key=lambda kv: (kv[1], kv[0]))
            self.best = dict(kept)

    def result(self) -> tuple[LookAlike, ...]:
        ordered = sorted(self.best.items(), key=lambda kv: (kv[1], kv[0]))
        return tuple(LookAlike(a, b, d) for (a, b), d in ordered[: self.limit])


def impostor_sample(
    template_ids: NDArray[np.int64] | Sequence[int],
    person_ids: NDArray[np.int64] | Sequence[int],
    vectors: NDArray[np.float32],
    *,
    max_comparisons: int = DEFAULT_MAX_COMPARISONS,
    look_alikes: int = DEFAULT_LOOK_ALIKES,
    metric: Metric = "l2",
) -> ImpostorSample:
    """Template-to-person distances between different people, and the closest pairs of people."""
    if max_comparisons < 1 or look_alikes < 0:
        raise ValueError("max_comparisons must be >= 1 and look_alikes >= 0")
    tids = np.asarray(template_ids, dtype=np.int64)
    pids, vecs = _check_arrays(person_ids, vectors)
    if len(tids) != len(pids):
        raise ValueError(f"{len(tids)} template ids for {len(pids)} templates")
    order, people, starts, gallery = _group_by_person(pids, vecs)
    n, k = len(gallery), len(people)
    if k < 2:
        return ImpostorSample(np.empty(0, np.float64), k, n, 0, ())

    probes = min(n, max(1, max_comparisons // (k - 1)))
    if probes < n:
        chosen = np.sort(np.argpartition(_stable_hash(tids[order]), probes - 1)[:probes])
    else:
        chosen = np.arange(n)
    # The person column (0..k-1) of each template in `gallery` order.
    column = np.repeat(np.arange(k), np.diff(np.append(starts, n)))

    pairs = _ClosestPairs(look_alikes)
    parts: list[NDArray[np.float64]] = []
    block = max(1, _BLOCK_VALUES // n)
    for lo in range(0, probes, block):
        rows = chosen[lo : lo + block]
        dist = _person_distances(gallery[rows], gallery, starts, metric)
        own = column[rows]
        dist[np.arange(len(rows)), own] = np.inf
        others = dist[np.isfinite(dist)]
        parts.append(others)
        if look_alikes:
            # One row per probed person (probes come sorted by person), so that a pair has at most
            # two entries here, one per direction: the 2 * look_alikes smallest hold the best pairs.
            first = np.flatnonzero(np.diff(own, prepend=-1))
            per_person = np.minimum.reduceat(dist, first, axis=0)
            take = min(per_person.size, 2 * look_alikes)
            flat = np.argpartition(per_person, take - 1, axis=None)[:take]
            r, c = np.unravel_index(flat, per_person.shape)
            keep = np.isfinite(per_person[r, c])
            pairs.offer(people[own[first[r[keep]]]], people[c[keep]], per_person[r[keep], c[keep]])
    distances = np.sort(np.concatenate(parts))
    return ImpostorSample(distances, k, n, probes, pairs.result())


def stranger_sample(
    strangers: NDArray[np.float32],
    person_ids: NDArray[np.int64] | Sequence[int],
    vectors: NDArray[np.float32],
    metric: Metric = "l2",
) -> StrangerSample:
    """Each reference stranger's distance to each enrolled person (their nearest template)."""
    pids, vecs = _check_arrays(person_ids, vectors)
    probes = np.ascontiguousarray(strangers, dtype=np.float32)
    if probes.ndim != 2 or (len(vecs) and probes.shape[1] != vecs.shape[1]):
        raise ValueError(f"strangers must be [m, {vecs.shape[1]}], got {probes.shape}")
    _, people, starts, gallery = _group_by_person(pids, vecs)
    if len(people) == 0 or len(probes) == 0:
        empty = np.empty(0, np.float64)
        return StrangerSample(empty, empty)
    block = max(1, _BLOCK_VALUES // len(gallery))
    nearest, parts = [], []
    for lo in range(0, len(probes), block):
        dist = _person_distances(probes[lo : lo + block], gallery, starts, metric)
        nearest.append(dist.min(axis=1))
        parts.append(dist.ravel())
    return StrangerSample(np.sort(np.concatenate(nearest)), np.sort(np.concatenate(parts)))


# --------------------------------------------------------------------------------- the tail


def _normal_cdf(z: float) -> float:
    # erfc keeps precision far into the lower tail, where 1 - ... would round to 0.
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def fit_tail(distances: NDArray[np.float64], tail_fraction: float = TAIL_FRACTION) -> TailModel | None:
    """Fit a normal to the lower tail of ascending impostor distances (see the module doc).

    None when there are fewer than ``MODEL_MIN_COMPARISONS`` distances or the tail is degenerate.
    """
    n = len(distances)
    if n < MODEL_MIN_COMPARISONS:
        return None
    m = min(n, max(TAIL_MIN_POINTS, math.ceil(tail_fraction * n)))
    ranks = np.unique(np.linspace(0, m - 1, min(m, _TAIL_FIT_MAX_POINTS)).round().astype(np.int64))
    z = np.array([_STD_NORMAL.inv_cdf((r + 0.5) / n) for r in ranks.tolist()], dtype=np.float64)
    y = distances[ranks]
    if not y[-1] > y[0]:  # every distance in the tail equal: no spread to fit
        return None
    sigma, mu = np.polyfit(z, y, 1)
    if not sigma > 0.0:
        return None
    residual = y - (mu + sigma * z)
    r2 = 1.0 - float((residual**2).sum()) / float(((y - y.mean()) ** 2).sum())
    return TailModel(float(mu), float(sigma), m / n, m, float(distances[m - 1]), r2)


def empirical_fmr(distances: NDArray[np.float64], tau: float) -> tuple[int, float]:
    """(comparisons below tau, their share) for ascending distances."""
    matches = int(np.searchsorted(distances, tau, side="left"))
    return matches, (matches / len(distances) if len(distances) else 0.0)


def far_per_attempt(fmr: float, people: int) -> float:
    """1 - (1 - fmr)^people, accurate for tiny fmr."""
    if fmr >= 1.0:
        return 1.0 if people > 0 else 0.0
    return -math.expm1(people * math.log1p(-fmr))


def fmr_for_far(target_far: float, people: int) -> float:
    """The per-comparison FMR at which ``people`` comparisons give ``target_far``."""
    return -math.expm1(math.log1p(-target_far) / max(1, people))


def max_people(fmr: float, target_far: float) -> int | None:
    """The largest gallery for which FAR(fmr) <= target_far; None when unbounded (fmr == 0)."""
    if fmr <= 0.0:
        return None
    if fmr >= 1.0:
        return 0
    # A hair of slack so that an exact boundary (K = log(1-t)/log(1-f) integral) rounds right.
    return math.floor(math.log1p(-target_far) / math.log1p(-fmr) * (1 + 1e-12))


def _largest_tau_below(sorted_distances: NDArray[np.float64], allowed_matches: int) -> float | None:
    """The largest τ with at most ``allowed_matches`` distances strictly below it."""
    if allowed_matches >= len(sorted_distances):
        return None  # every comparison may match: no bound from the data
    return float(sorted_distances[allowed_matches])


def _recommend(
    sample: ImpostorSample, model: TailModel | None, strangers: StrangerSample | None, target: float
) -> Recommendation:
    fmr_target = fmr_for_far(target, sample.people)
    tau_gallery: float | None = None
    n = len(sample.distances)
    if model is not None:
        # Both the model's and the empirical FMR must stay under the target (fmr = their max).
        empirical_bound = _largest_tau_below(sample.distances, math.floor(fmr_target * n))
        tau_model = model.tau_for(fmr_target)
        tau_gallery = tau_model if empirical_bound is None else min(tau_model, empirical_bound)
    tau_strangers: float | None = None
    sufficient: bool | None = None
    if strangers is not None and strangers.strangers:
        tau_strangers = _largest_tau_below(strangers.nearest, math.floor(target * strangers.strangers))
        sufficient = strangers.strangers * target >= 3.0  # "rule of three": 0 of 3/t bounds t at 95%
    candidates = [t for t in (tau_gallery, tau_strangers) if t is not None]
    tau = min(candidates) if tau_gallery is not None and candidates else None
    return Recommendation(target, fmr_target, tau, tau_gallery, tau_strangers, sufficient)


@dataclass(frozen=True, slots=True)
class AppliedTau:
    """The 1:K threshold in force and where it came from."""

    tau: float
    source: (
        str  # "pinned" (the operator's), "gallery" (its own impostors) or "prior" (the manifest's dev data)
    )
    target_far: float
    people: int
    fmr_per_comparison: float  # the per-person FMR that K comparisons may have for the target


def prior_model(details: dict[str, object] | None) -> TailModel | None:
    """The encoder's dev-data impostor tail, as the manifest records it (see models/calibration)."""
    if not details:
        return None
    tail = details.get("impostor_tail")
    if not isinstance(tail, dict):
        return None
    return TailModel(
        float(tail["mu"]),
        float(tail["sigma"]),
        float(tail["tail_fraction"]),
        int(tail["points"]),
        float(tail["upper"]),
        float(tail["r2"]),
    )


def applied_tau(
    sample: ImpostorSample,
    target_far: float,
    prior: TailModel | None,
    *,
    pinned: float | None = None,
    reference: float | None = None,
) -> AppliedTau:
    """The largest τ whose predicted stranger FAR at this K stays under ``target_far``.

    The per-person FMR is the larger of two estimates, so τ is the smaller of their thresholds:
    the gallery's own (its impostor tail and empirical rate, once it has enough comparisons) and
    the encoder's dev-data prior (one template per comparison there; a person with t templates
    gives a stranger t chances: 1 - (1 - FMR)^t). A pinned τ is returned as it is. With neither
    estimate (no prior in the manifest and a gallery too small to fit), ``reference`` (the
    model authors' published operating point) is used, source "reference"; without it, ValueError.
    """
    people = max(1, sample.people)
    fmr_target = fmr_for_far(target_far, people)
    if pinned is not None:
        return AppliedTau(pinned, "pinned", target_far, sample.people, fmr_target)
    tau, source = _tau_for_fmr(sample, fmr_target, prior, reference)
    return AppliedTau(tau, source, target_far, sample.people, fmr_target)


def _tau_for_fmr(
    sample: ImpostorSample, fmr_target: float, prior: TailModel | None, reference: float | None
) -> tuple[float, str]:
    """The largest τ whose per-person false-match rate stays under ``fmr_target``, and its source.

    The stricter of the prior (per template: a person with t templates gives t chances) and the
    gallery's own template-to-person tail and empirical rate; ``reference`` when neither exists.
    """
    candidates: list[tuple[float, str]] = []
    if prior is not None:
        per_person = max(1.0, sample.templates / sample.people) if sample.people else 1.0
        fmr_template = -math.expm1(math.log1p(-fmr_target) / per_person)
        candidates.append((prior.tau_for(fmr_template), "prior"))
    model = fit_tail(sample.distances)
    if model is not None:
        bound = _largest_tau_below(sample.distances, math.floor(fmr_target * len(sample.distances)))
        tau_gallery = model.tau_for(fmr_target)
        candidates.append((tau_gallery if bound is None else min(tau_gallery, bound), "gallery"))
    if not candidates:
        if reference is not None:
            return reference, "reference"
        raise ValueError("no calibration: the manifest has no prior and the gallery too few comparisons")
    tau, source = min(candidates)
    return max(tau, 1e-6), source


def calibrate(
    sample: ImpostorSample,
    *,
    tau: float,
    target_far: float,
    strangers: StrangerSample | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    targets: Sequence[float] = REFERENCE_TARGETS,
) -> CalibrationReport:
    """Curves, recommended thresholds and the gallery size the configured τ supports."""
    if not 0.0 < target_far < 1.0 or tau <= 0.0:
        raise ValueError(f"need 0 < target_far < 1 and tau > 0, got {target_far}, {tau}")
    model = fit_tail(sample.distances)
    people = sample.people

    def fmr(t: float) -> tuple[int, float, float | None, float]:
        matches, emp = empirical_fmr(sample.distances, t)
        mod = model.fmr(t) if model is not None else None
        return matches, emp, mod, max(emp, mod if mod is not None else 0.0)

    curve = []
    for t in sorted({*grid, tau}):
        matches, emp, mod, used = fmr(t)
        s_matches = s_far = None
        if strangers is not None and strangers.strangers:
            s_matches, s_far = empirical_fmr(strangers.nearest, t)
        curve.append(CurvePoint(t, matches, emp, mod, used, far_per_attempt(used, people), s_matches, s_far))

    fmr_at_tau = far_at_tau = None
    k_max = None
    supported: bool | None = None
    warning = None
    if model is not None:
        _, _, _, fmr_at_tau = fmr(tau)
        far_at_tau = far_per_attempt(fmr_at_tau, people)
        k_max = max_people(fmr_at_tau, target_far)
        supported = k_max is None or people <= k_max
    recommendations = tuple(_recommend(sample, model, strangers, t) for t in sorted({*targets, target_far}))
    if supported is False and far_at_tau is not None:
        rec = next(r for r in recommendations if r.target_far == target_far)
        lower = f"; lower tau to {rec.tau:.3f}" if rec.tau is not None else ""
        limit = f"only up to {k_max} people" if k_max else "not even with one person enrolled"
        warning = (
            f"{people} people enrolled, but tau={tau:g} keeps the stranger false-accept rate under "
            f"{target_far:g} {limit} (predicted {far_at_tau:.2g} per attempt now){lower}, "
            "or add a second factor"
        )

    summary = None
    if strangers is not None and strangers.strangers:
        s_matches, s_far = empirical_fmr(strangers.nearest, tau)
        _, s_fmr = empirical_fmr(strangers.comparisons, tau)
        summary = StrangerSummary(
            strangers.strangers, s_matches, s_far, far_at_tau, len(strangers.comparisons), s_fmr
        )
    return CalibrationReport(
        people=people,
        templates=sample.templates,
        comparisons=len(sample.distances),
        probes=sample.probes,
        complete=sample.complete,
        tau=tau,
        target_far=target_far,
        model=model,
        fmr_at_tau=fmr_at_tau,
        far_at_tau=far_at_tau,
        max_people_at_tau=k_max,
        supported=supported,
        warning=warning,
        recommendations=recommendations,
        curve=tuple(curve),
        look_alikes=sample.look_alikes,
        strangers=summary,
    )


def applied_tau_1to1(
    sample: ImpostorSample,
    target_fmr: float,
    prior: TailModel | None,
    *,
    reference: float | None = None,
) -> AppliedTau:
    """The 1:1 (verification) threshold: the largest τ whose false-match rate per claim stays
    under ``target_fmr``, whatever the number of enrolled people.

    A claim compares the face with one person only, so K does not enter: the target is the FMR of
    one comparison with one person. That comparison takes the nearest of the person's templates,
    which is exactly what the gallery's template-to-person impostor distances measure; the
    manifest's prior is per template, so a person with t templates gives an impostor t chances
    (per-template FMR ``1 - (1 - target)**(1/t)``). τ is the smaller of the two estimates, as in
    :func:`applied_tau`; with neither, ``reference`` (source "reference"), else ValueError.
    ``people`` in the result is the gallery's K, for the record only.
    """
    if not 0.0 < target_fmr < 1.0:
        raise ValueError(f"need 0 < target_fmr < 1, got {target_fmr}")
    tau, source = _tau_for_fmr(sample, target_fmr, prior, reference)
    return AppliedTau(tau, source, target_fmr, sample.people, target_fmr)
