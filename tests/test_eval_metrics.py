"""Error-rate metrics, open-set search, charts and report on small hand-made sets with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.evaluation.metrics import (
    accepted_fraction,
    at_false_accept,
    equal_error_rate,
    mated_scores,
    operating_point,
    rank1_rate,
    threshold_at_false_accept,
    tradeoff,
)
from app.evaluation.openset import GalleryRow, ProbeRow, search_probes, select
from app.evaluation.pairs import PairsReport
from app.evaluation.plots import Axis, det_chart, roc_chart
from app.evaluation.report import Section, render, verification_section
from app.evaluation.verification import cross_validated, split_folds
from app.settings import Settings

NAN = float("nan")


def test_tradeoff_lists_every_roc_point() -> None:
    genuine = np.array([0.1, 0.2, 0.3, 0.7])
    impostor = np.array([0.5, 0.8, 0.9, 1.0])
    curve = tradeoff(genuine, impostor)
    assert curve.false_accept.tolist() == [0, 0, 0, 0, 0.25, 0.25, 0.5, 0.75, 1]
    assert curve.false_reject.tolist() == [1, 0.75, 0.5, 0.25, 0.25, 0, 0, 0, 0]
    assert curve.thresholds[1:-1] == pytest.approx([0.15, 0.25, 0.4, 0.6, 0.75, 0.85, 0.95])
    assert curve.true_accept.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 1, 1, 1, 1]
    assert (curve.positives, curve.negatives) == (4, 4)


def test_missing_scores_are_never_accepted_but_stay_in_the_denominator() -> None:
    genuine = np.array([0.1, NAN])
    impostor = np.array([0.9, NAN, np.inf])
    curve = tradeoff(genuine, impostor)
    assert curve.false_reject[-1] == 0.5  # the genuine pair without a face is still rejected
    assert curve.false_accept[-1] == pytest.approx(1 / 3)
    assert accepted_fraction(genuine, math.inf) == 0.5
    assert operating_point(genuine, impostor, 0.5).false_accept == 0.0


def test_threshold_at_false_accept_takes_the_largest_tau_within_the_rate() -> None:
    impostor = np.array([1.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])  # order does not matter
    assert threshold_at_false_accept(impostor, 0.1) == 0.6  # one impostor (0.5) strictly below
    assert threshold_at_false_accept(impostor, 0.05) == 0.5  # none may pass
    assert threshold_at_false_accept(impostor, 0.0) == 0.5
    assert threshold_at_false_accept(impostor, 1.0) == math.inf
    # 0.29 * 100 is 28.999999999999996 in floating point: still 29 allowed.
    assert threshold_at_false_accept(np.arange(100, dtype=np.float64), 0.29) == 29.0
    # Tied impostors cannot be split: accepting one would accept both.
    assert threshold_at_false_accept(np.array([0.5, 0.5, 0.7]), 1 / 3) == 0.5
    with pytest.raises(ValueError):
        threshold_at_false_accept(impostor, 1.5)


def test_tar_at_far() -> None:
    impostor = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4])
    genuine = np.array([0.2, 0.3, 0.45, 0.55, 0.65, NAN])
    p = at_false_accept(genuine, impostor, 0.1)
    assert (p.tau, p.false_accept) == (0.6, 0.1)
    assert p.true_accept == pytest.approx(4 / 6)  # 0.2, 0.3, 0.45, 0.55 below 0.6; NaN rejected
    p = at_false_accept(genuine, impostor, 0.01)
    assert (p.tau, p.false_accept, p.false_reject) == (0.5, 0.0, pytest.approx(0.5))


def test_equal_error_rate_exact_crossing() -> None:
    eer = equal_error_rate(tradeoff(np.array([0.1, 0.2, 0.3, 0.7]), np.array([0.5, 0.8, 0.9, 1.0])))
    assert eer.false_accept == eer.false_reject == 0.25
    assert eer.tau == pytest.approx(0.6)


def test_equal_error_rate_interpolates_between_points() -> None:
    # FAR - FRR goes from -1/3 (τ 0.25: FAR 0, FRR 1/3) to +1/6 (τ 0.4: FAR 1/2, FRR 1/3).
    eer = equal_error_rate(tradeoff(np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.6])))
    assert eer.false_accept == pytest.approx(1 / 3)
    assert eer.tau == pytest.approx(0.35)


def test_equal_error_rate_of_separable_sets_is_zero() -> None:
    eer = equal_error_rate(tradeoff(np.array([0.1, 0.2]), np.array([0.8, 0.9])))
    assert eer.false_accept == 0.0
    assert 0.2 < eer.tau < 0.8


def test_fnir_at_fpir_counts_a_wrong_rank1_person_as_a_miss() -> None:
    rank1 = np.array([0.3, 0.4, 0.5, 0.35, NAN])
    is_mate = np.array([True, True, True, False, False])  # 4th: someone else nearer; 5th: no face
    mated = mated_scores(rank1, is_mate)
    assert mated.tolist() == [0.3, 0.4, 0.5, math.inf, math.inf]
    nonmated = np.array([0.45, 0.55, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1])
    p = at_false_accept(mated, nonmated, 0.1)  # FPIR 10%: one stranger may pass; τ = 0.55
    assert (p.tau, p.false_accept, p.false_reject) == (0.55, 0.1, pytest.approx(2 / 5))
    p = at_false_accept(mated, nonmated, 0.01)  # none may pass: τ = 0.45 keeps 0.3 and 0.4
    assert (p.tau, p.false_accept, p.false_reject) == (0.45, 0.0, pytest.approx(3 / 5))
    assert rank1_rate(is_mate) == pytest.approx(3 / 5)
    det = tradeoff(mated, nonmated)
    assert det.false_reject[-1] == pytest.approx(2 / 5)  # the two misses stay missed at any τ
    with pytest.raises(ValueError):
        rank1_rate(np.array([], dtype=bool))


def test_split_folds_deals_both_classes_into_every_fold() -> None:
    same = np.array([True] * 20 + [False] * 20)
    folds = split_folds(same)
    assert sorted(set(folds.tolist())) == list(range(1, 11))
    for f in range(1, 11):
        assert same[folds == f].sum() == 2 and (~same[folds == f]).sum() == 2
    assert split_folds(same).tolist() == folds.tolist()  # deterministic
    small = split_folds(np.array([True] * 6 + [False] * 6))
    assert sorted(set(small.tolist())) == list(range(1, 11))  # no fold left empty
    assert split_folds(np.array([True, False, True])).tolist() == [1, 3, 2]  # k capped at n
    with pytest.raises(ValueError):
        split_folds(np.array([True]))


def test_cross_validation_on_split_folds_tests_each_pair_once() -> None:
    d = np.array([0.1, 0.2, 0.3, 0.45, 0.7, 0.8, 0.9, 0.55])
    same = np.array([True, True, True, True, False, False, False, False])
    results = cross_validated(d, same, split_folds(same, k=4))
    assert [r.pairs for r in results] == [2, 2, 2, 2]
    assert all(r.accuracy == 1.0 for r in results)
    assert all(0.45 < r.tau <= 0.55 for r in results)


def _unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_search_probes_uses_each_persons_nearest_template() -> None:
    a, b, c, stranger = _unit(1), _unit(2), _unit(3), _unit(4)
    gallery = [
        GalleryRow("A", Path("a1"), 1),
        GalleryRow("A", Path("a2"), 3),
        GalleryRow("B", Path("b1"), 1),
        GalleryRow("C", Path("c1"), 1),  # no face: C enrols nothing
    ]
    probes = [
        ProbeRow(Path("pa"), "A", True),
        ProbeRow(Path("pb"), "B", True),
        ProbeRow(Path("pc"), "C", True),
        ProbeRow(Path("px"), "X", False),
        ProbeRow(Path("py"), "Y", False),  # no face
    ]
    pa = a + np.float32(0.1) * b
    embeddings = {
        Path("a1"): -a,  # far from the probe; A's second template is the near one
        Path("a2"): a,
        Path("b1"): b,
        Path("c1"): None,
        Path("pa"): pa,
        Path("pb"): b,
        Path("pc"): c,
        Path("px"): stranger,
        Path("py"): None,
    }
    settings = Settings(tau=0.6, match_margin=0.04)
    result = search_probes(settings, gallery, probes, embeddings, shots=3, tau=0.6, dim=8)
    assert (result.people, result.templates) == (3, 3)
    assert result.gallery_no_face == ["c1"] and result.probes_no_face == ["py"]
    assert result.mated_rank1_distance[0] == pytest.approx(float(np.linalg.norm(pa - a)), abs=1e-5)
    assert result.mated_rank1_distance[1] == pytest.approx(0.0, abs=1e-3)
    assert result.mated_rank1_is_mate.tolist() == [True, True, False]  # C has no template
    assert np.isnan(result.nonmated_rank1_distance[1])
    assert result.rank1 == pytest.approx(2 / 3)
    assert result.door.mated_granted_right == 2 and result.door.nonmated_granted == 0
    # The stranger's nearest person is whichever of a, -a, b is closest.
    expected = min(float(np.linalg.norm(stranger - t)) for t in (a, -a, b))
    assert result.nonmated_rank1_distance[0] == pytest.approx(expected, abs=1e-5)


def test_select_checks_the_files_agree_and_limits() -> None:
    gallery = [GalleryRow(n, Path(f"{n}.jpg"), 1) for n in ("A", "B", "C")]
    probes = [ProbeRow(Path(f"{n}2.jpg"), n, True) for n in ("A", "B", "C")] + [
        ProbeRow(Path(f"x{i}.jpg"), f"X{i}", False) for i in range(4)
    ]
    g, p = select(gallery, probes, 2)
    assert [r.identity for r in g] == ["A", "B"]
    assert [q.true_identity for q in p] == ["A", "B", "X0", "X1"]
    with pytest.raises(ValueError, match="not in the gallery"):
        select(gallery[:1], probes, None)
    with pytest.raises(ValueError, match="marked not enrolled"):
        select(gallery, [ProbeRow(Path("a9.jpg"), "A", False)], None)
    with pytest.raises(ValueError, match="both gallery and probe"):
        select(gallery, [ProbeRow(Path("A.jpg"), "A", True)], None)


def test_log_axis_ticks_are_decades_with_minor_marks() -> None:
    ticks = Axis("FAR", 1e-3, 1.0, log=True).ticks()
    assert [label for _, label, major in ticks if major] == ["1e-3", "0.01", "0.1", "1"]
    assert len(ticks) == 3 * 9 + 1
    linear = Axis("TAR", 0.9, 1.0).ticks()
    assert [label for _, label, _ in linear] == ["0.90", "0.92", "0.94", "0.96", "0.98", "1.00"]
    with pytest.raises(ValueError):
        Axis("x", 0.0, 1.0, log=True)


def test_charts_are_png_files(tmp_path: Path) -> None:
    curve = tradeoff(np.array([0.1, 0.2, 0.3, 0.7]), np.array([0.5, 0.8, 0.9, 1.0, 1.2]))
    for draw, name in ((roc_chart, "roc.png"), (det_chart, "det.png")):
        path = draw(tmp_path / name, "title", [("curve", curve)], [("eer", equal_error_rate(curve))])
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (620, 860, 3)
        assert (image < 128).any() and (image == 255).mean() > 0.5  # ink on a white page


def test_report_orders_sections_and_names_missing_ones(tmp_path: Path) -> None:
    same = np.array([True, True, False, False])
    pairs = PairsReport(
        pairs=4,
        images=8,
        no_face=[],
        accuracy_at_tau=1.0,
        tau=0.6,
        distances=np.array([0.3, 0.4, 0.8, 0.9]),
        same=same,
        name="tiny",
    )
    liveness = Section("liveness", "spoofs caught: all")
    page = render([liveness, verification_section([pairs], tmp_path)])
    assert page.index("## Verification") < page.index("## Liveness")
    assert (
        "Not in this report: Open-set identification (1:N), Threshold calibration, Pair classifier." in page
    )
    assert "![ROC](verify-tiny-roc.png)" in page and (tmp_path / "verify-tiny-roc.png").is_file()
    assert "| equal error rate | 0.00% " in page
    with pytest.raises(ValueError):
        Section("nonsense", "")
    with pytest.raises(ValueError):
        render([liveness, liveness])
