"""Calibration math on hand-made distance sets whose answers are known in closed form."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from numpy.typing import NDArray

from app.gallery.calibration import (
    MODEL_MIN_COMPARISONS,
    ImpostorSample,
    calibrate,
    empirical_fmr,
    far_per_attempt,
    fit_tail,
    fmr_for_far,
    impostor_sample,
    max_people,
    stranger_sample,
)


def line_points(*xs: float) -> NDArray[np.float32]:
    """Points on the first axis of a 4-d space: their distances are differences of xs."""
    v = np.zeros((len(xs), 4), np.float32)
    v[:, 0] = xs
    return v


def sample_of(distances: NDArray[np.float64], people: int) -> ImpostorSample:
    return ImpostorSample(np.sort(distances), people, people, people, ())


def normal_distances(n: int, mu: float, sigma: float) -> NDArray[np.float64]:
    """Exact normal quantiles at the plotting positions: an ideal sample of N(mu, sigma)."""
    nd = NormalDist(mu, sigma)
    return np.array([nd.inv_cdf((i + 0.5) / n) for i in range(n)])


def test_template_to_person_distances_use_each_persons_nearest_template() -> None:
    # Person 1 at 0.0 and 0.3, person 2 at 1.0, person 3 at 2.0.
    sample = impostor_sample([10, 11, 20, 30], [1, 1, 2, 3], line_points(0.0, 0.3, 1.0, 2.0))
    # Probes: 0.0 -> {2: 1.0, 3: 2.0}; 0.3 -> {2: 0.7, 3: 1.7}; 1.0 -> {1: 0.7, 3: 1.0};
    # 2.0 -> {1: 1.7, 2: 1.0}. Not all template pairs (no 2.0 - 0.0 = 2.0 twice), not pair minima.
    assert sample.distances == pytest.approx([0.7, 0.7, 1.0, 1.0, 1.0, 1.7, 1.7, 2.0], abs=1e-6)
    assert (sample.people, sample.templates, sample.probes, sample.complete) == (3, 4, 4, True)
    pairs = [(p.person_a, p.person_b, round(p.distance, 5)) for p in sample.look_alikes]
    assert pairs == [(1, 2, 0.7), (2, 3, 1.0), (1, 3, 1.7)]


def test_look_alikes_are_the_closest_pairs_over_all_templates() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    person_ids = np.repeat(np.arange(100, 120), 3)
    sample = impostor_sample(np.arange(60), person_ids, vectors, look_alikes=5)
    # Brute force: every pair of people, nearest template pair.
    d = np.linalg.norm(vectors[:, None] - vectors[None, :], axis=2)
    best: dict[tuple[int, int], float] = {}
    for i in range(60):
        for j in range(60):
            a, b = int(person_ids[i]), int(person_ids[j])
            if a < b:
                best[(a, b)] = min(best.get((a, b), math.inf), float(d[i, j]))
    expected = sorted(best.items(), key=lambda kv: kv[1])[:5]
    got = [((p.person_a, p.person_b), p.distance) for p in sample.look_alikes]
    assert [k for k, _ in got] == [k for k, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], abs=1e-5)
    assert len(sample.distances) == 60 * 19


def test_subsampling_is_deterministic_and_capped() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    person_ids = np.arange(200) // 2
    ids = np.arange(1000, 1200)
    a = impostor_sample(ids, person_ids, vectors, max_comparisons=99 * 40)
    assert (a.probes, a.complete, len(a.distances)) == (40, False, 40 * 99)
    # The same gallery given in another order gives the same sample.
    perm = rng.permutation(200)
    b = impostor_sample(ids[perm], person_ids[perm], vectors[perm], max_comparisons=99 * 40)
    assert np.array_equal(a.distances, b.distances)


def test_fewer_than_two_people_give_no_comparisons_and_no_advice() -> None:
    sample = impostor_sample([1, 2], [7, 7], line_points(0.0, 0.1))
    assert (sample.people, len(sample.distances), sample.look_alikes) == (1, 0, ())
    report = calibrate(sample, tau=0.6, target_far=1e-4)
    assert report.model is None and report.max_people_at_tau is None and report.warning is None
    assert report.recommendation(1e-4) is not None
    assert report.recommendation(1e-4).tau is None  # type: ignore[union-attr]


def test_far_per_attempt_and_its_inverses() -> None:
    assert far_per_attempt(0.01, 1) == pytest.approx(0.01)
    assert far_per_attempt(0.5, 3) == pytest.approx(0.875)
    assert far_per_attempt(1e-12, 1000) == pytest.approx(1e-9, rel=1e-9)  # no 1 - (1 - x) rounding
    assert fmr_for_far(0.875, 3) == pytest.approx(0.5)
    assert far_per_attempt(fmr_for_far(1e-4, 500), 500) == pytest.approx(1e-4, rel=1e-9)
    # FAR(0.5, K) = 1 - 0.5^K <= 0.875 exactly up to K = 3.
    assert max_people(0.5, 0.875) == 3
    assert max_people(0.5, 0.87) == 2
    assert max_people(0.0, 1e-4) is None
    assert max_people(1.0, 1e-4) == 0


def test_empirical_fmr_counts_strictly_below_tau() -> None:
    d = np.array([0.2, 0.4, 0.4, 0.9])
    assert empirical_fmr(d, 0.4) == (1, 0.25)
    assert empirical_fmr(d, 0.41) == (3, 0.75)
    assert empirical_fmr(np.empty(0), 0.5) == (0, 0.0)


def test_tail_fit_recovers_a_normal() -> None:
    d = normal_distances(20_000, 0.95, 0.08)
    model = fit_tail(d)
    assert model is not None
    assert (model.mu, model.sigma) == pytest.approx((0.95, 0.08), abs=1e-3)
    assert model.r2 > 0.999 and model.points == 200 and model.tail_fraction == pytest.approx(0.01)
    # Far below the smallest distance seen, the model still answers: Φ(-6) at mu - 6 sigma.
    assert model.fmr(0.95 - 6 * 0.08) == pytest.approx(NormalDist().cdf(-6), rel=0.05)
    assert model.tau_for(NormalDist().cdf(-2)) == pytest.approx(0.95 - 2 * 0.08, abs=1e-3)
    assert fit_tail(d[: MODEL_MIN_COMPARISONS - 1]) is None
    assert fit_tail(np.full(500, 0.9)) is None  # no spread, no model


def test_tail_fit_uses_only_the_lower_tail() -> None:
    # The lowest 1% is N(1, 0.1)'s, the rest sits far above: the fit must not see the body.
    ideal = normal_distances(10_000, 1.0, 0.1)
    body = np.where(np.arange(10_000) < 100, ideal, ideal + 5.0)
    model = fit_tail(np.sort(body))
    assert model is not None
    assert (model.mu, model.sigma) == pytest.approx((1.0, 0.1), abs=0.01)


def test_report_on_a_known_normal_gallery() -> None:
    people = 1000
    sample = sample_of(normal_distances(50_000, 0.95, 0.08), people)
    report = calibrate(sample, tau=0.6, target_far=1e-4)
    fmr = NormalDist(0.95, 0.08).cdf(0.6)  # ~6e-6: no comparison is that close
    assert report.curve[0].matches == 0
    point = next(p for p in report.curve if p.tau == 0.6)
    assert point.fmr_empirical == 0.0 and point.fmr == pytest.approx(fmr, rel=0.05)
    assert report.fmr_at_tau == pytest.approx(fmr, rel=0.05)
    assert report.far_at_tau == pytest.approx(1 - (1 - fmr) ** people, rel=0.05)
    k_max = math.log1p(-1e-4) / math.log1p(-fmr)  # ~16 people
    assert report.max_people_at_tau == pytest.approx(k_max, rel=0.1)
    assert report.supported is False
    assert report.warning is not None and "1000 people enrolled" in report.warning
    # The recommended tau puts the per-comparison FMR at 1 - (1 - 1e-4)^(1/1000).
    rec = report.recommendation(1e-4)
    assert rec is not None and rec.tau is not None
    assert rec.fmr_per_comparison == pytest.approx(1e-7, rel=1e-3)
    assert rec.tau == pytest.approx(0.95 + 0.08 * NormalDist().inv_cdf(1e-7), abs=2e-3)
    looser = report.recommendation(1e-2)
    assert looser is not None and looser.tau is not None and looser.tau > rec.tau
    # The same gallery with a stricter tau is fine.
    assert calibrate(sample, tau=0.45, target_far=1e-4).warning is None


def test_empirical_tail_heavier_than_the_model_wins() -> None:
    # Normal impostors plus a few look-alike comparisons far below the normal's reach.
    d = np.concatenate([normal_distances(20_000, 0.95, 0.08), [0.3, 0.32, 0.35, 0.36, 0.38]])
    report = calibrate(sample_of(d, 100), tau=0.5, target_far=1e-4)
    point = next(p for p in report.curve if p.tau == 0.4)
    assert point.fmr_empirical == pytest.approx(5 / len(d))
    assert point.fmr == point.fmr_empirical > (point.fmr_model or 0)
    rec = report.recommendation(1e-2)
    # fmr_for_far(1e-2, 100) * 20005 ~ 2 comparisons allowed: tau stops at the third one.
    assert rec is not None and rec.tau == pytest.approx(0.35)


def test_strangers_observed_against_predicted() -> None:
    # Gallery: people at 0, 1, 2 on a line (one template each). Strangers at 0.03, 0.5, 1.02, 3.
    gallery = line_points(0.0, 1.0, 2.0)
    strangers = stranger_sample(line_points(0.03, 0.5, 1.02, 3.0), [1, 2, 3], gallery)
    assert strangers.nearest == pytest.approx([0.02, 0.03, 0.5, 1.0], abs=1e-5)
    assert len(strangers.comparisons) == 12
    d = normal_distances(5_000, 0.95, 0.08)
    report = calibrate(sample_of(d, 3), tau=0.6, target_far=0.3, strangers=strangers)
    assert report.strangers is not None
    assert (report.strangers.strangers, report.strangers.matches_at_tau) == (4, 3)
    assert report.strangers.observed_far_at_tau == 0.75
    assert report.strangers.predicted_far_at_tau == report.far_at_tau
    point = next(p for p in report.curve if p.tau == 0.3)
    assert (point.stranger_matches, point.stranger_far) == (2, 0.5)
    point = next(p for p in report.curve if p.tau == 0.6)
    assert (point.stranger_matches, point.stranger_far) == (3, 0.75)
    # Target 0.3 of 4 strangers allows one below tau: tau stops at the second-nearest, 0.03,
    # below what the gallery's impostors alone would allow.
    rec = report.recommendation(0.3)
    assert rec is not None and rec.tau_strangers == pytest.approx(0.03, abs=1e-5)
    assert rec.tau_gallery is not None and rec.tau_gallery > 0.3 and rec.tau == rec.tau_strangers
    assert rec.strangers_sufficient is False  # showing 0.3 takes 3 / 0.3 = 10 strangers
    enough = calibrate(sample_of(d, 3), tau=0.6, target_far=0.75, strangers=strangers).recommendation(0.75)
    assert enough is not None and enough.strangers_sufficient is True


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="target_far"):
        calibrate(sample_of(np.ones(10), 2), tau=0.6, target_far=0.0)
    with pytest.raises(ValueError, match="1 template ids for 2 templates"):
        impostor_sample([1], [1, 2], line_points(0.0, 1.0))
    with pytest.raises(ValueError, match="person_ids"):
        impostor_sample([1, 2], [1, 2, 3], line_points(0.0, 1.0))
    with pytest.raises(ValueError, match="NaN"):
        impostor_sample([1, 2], [1, 2], np.array([[np.nan, 0.0], [0.0, 0.0]], np.float32))
