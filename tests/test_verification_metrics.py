"""Verification metrics on small hand-made distance sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.verification import accuracy_at, best_threshold, cross_validated

NAN = float("nan")


def test_accuracy_counts_strictly_below_tau_and_missing_as_error() -> None:
    d = np.array([0.2, 0.6, 0.7, 0.5, NAN])
    same = np.array([True, True, False, False, True])
    # τ=0.6: 0.2 ok; 0.6 is not < 0.6 so "different", wrong; 0.7 ok; 0.5 "same", wrong; NaN wrong
    assert accuracy_at(d, same, 0.6) == pytest.approx(2 / 5)
    assert accuracy_at(d, same, 0.65) == pytest.approx(3 / 5)
    assert accuracy_at(d, same, 0.45) == pytest.approx(3 / 5)


def test_best_threshold_separates_separable_sets() -> None:
    d = np.array([0.1, 0.3, 0.35, 0.8, 0.9, 0.4])
    same = np.array([True, True, True, False, False, False])
    tau = best_threshold(d, same)
    assert 0.35 < tau <= 0.4
    assert accuracy_at(d, same, tau) == 1.0


def test_cross_validation_uses_other_folds_only() -> None:
    # Folds 2 and 3 teach τ = 0.3, which misjudges fold 1's same pair at 0.4.
    d = np.array([0.4, 0.6, 0.2, 0.35, 0.25, 0.38])
    same = np.array([True, False, True, False, True, False])
    folds = np.array([1, 1, 2, 2, 3, 3])
    results = cross_validated(d, same, folds)
    assert [r.fold for r in results] == [1, 2, 3]
    assert results[0].accuracy == 0.5
    assert 0.25 < results[0].tau < 0.35
    assert results[1].accuracy == 1.0 and results[2].accuracy == 1.0


def test_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError):
        accuracy_at(np.array([]), np.array([], dtype=bool), 0.6)
    with pytest.raises(ValueError):
        best_threshold(np.array([NAN]), np.array([True]))
