"""The 1:1 (claim) threshold: a false-match rate per claim, independent of the gallery's size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from app.gallery.calibration import (
    TailModel,
    applied_tau,
    applied_tau_1to1,
    impostor_sample,
)


def _gallery(people: int, per_person: int, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 64))
    vectors = np.repeat(centres, per_person, axis=0) + 0.3 * rng.normal(size=(people * per_person, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.repeat(np.arange(people, dtype=np.int64), per_person), vectors.astype(np.float32)


def _sample(people: int, per_person: int = 1, seed: int = 0):  # type: ignore[no-untyped-def]
    pids, vectors = _gallery(people, per_person, seed)
    return impostor_sample(np.arange(len(pids)), pids, vectors, metric="cosine")


PRIOR = TailModel(mu=0.9, sigma=0.08, tail_fraction=0.01, points=1000, upper=0.75, r2=0.999)


def test_prior_alone_gives_the_per_claim_fmr_at_any_k() -> None:
    one = applied_tau_1to1(_sample(1), 1e-5, PRIOR)  # one person: no gallery impostors at all
    assert one.source == "prior" and one.tau == pytest.approx(PRIOR.tau_for(1e-5))
    # The 1:K τ for the same prior shrinks with K; the 1:1 τ does not (prior-only galleries).
    small = applied_tau(_sample(1), 1e-5, PRIOR)
    assert small.tau == pytest.approx(one.tau)


def test_independent_of_k_and_stricter_than_one_to_k() -> None:
    sample = _sample(300)
    one = applied_tau_1to1(sample, 1e-3, None)
    many = applied_tau(sample, 1e-3, None)
    assert one.source == "gallery" and one.fmr_per_comparison == 1e-3
    # 1:K at the same target must hold 1e-3 over 300 comparisons: a smaller τ.
    assert many.tau < one.tau
    # Empirically: at most floor(1e-3 * n) impostor comparisons fall below the 1:1 τ.
    below = int(np.searchsorted(sample.distances, one.tau, side="left"))
    assert below <= math.floor(1e-3 * len(sample.distances))


def test_templates_per_person_tighten_the_prior() -> None:
    single = applied_tau_1to1(_sample(1, 1), 1e-5, PRIOR)
    triple = applied_tau_1to1(_sample(1, 3), 1e-5, PRIOR)
    # Three templates give an impostor three chances: the per-template FMR is about a third.
    assert triple.tau < single.tau
    assert triple.tau == pytest.approx(PRIOR.tau_for(-math.expm1(math.log1p(-1e-5) / 3)))


def test_stricter_of_prior_and_gallery_then_reference() -> None:
    sample = _sample(300)
    gallery_only = applied_tau_1to1(sample, 1e-3, None)
    loose = TailModel(mu=5.0, sigma=0.1, tail_fraction=0.01, points=1000, upper=4.0, r2=1.0)
    assert applied_tau_1to1(sample, 1e-3, loose).tau == pytest.approx(gallery_only.tau)
    strict = TailModel(mu=0.0, sigma=0.01, tail_fraction=0.01, points=1000, upper=0.1, r2=1.0)
    assert applied_tau_1to1(sample, 1e-3, strict).source == "prior"
    fallback = applied_tau_1to1(_sample(1), 1e-5, None, reference=0.42)
    assert (fallback.tau, fallback.source) == (0.42, "reference")
    with pytest.raises(ValueError, match="no calibration"):
        applied_tau_1to1(_sample(1), 1e-5, None)
    with pytest.raises(ValueError):
        applied_tau_1to1(sample, 0.0, None)
