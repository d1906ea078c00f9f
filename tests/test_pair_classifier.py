"""The logistic pair head: trainer on synthetic data with a known answer, ONNX export = numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from app.evaluation.pair_classifier import PairClassifier, PairHead, chi2_shift, pair_features, sidecar_path
from app.vision.manifest import ModelArtifactError, sha256_file
from models.train_pair_classifier import (
    balanced_weights,
    dedupe_extra,
    export_onnx,
    fit_logistic,
    roc_auc,
    tar_at_far,
    training_rows,
)
from tests.conftest import shared_faces


def synthetic_pairs(
    n: int = 400, dim: int = 16, seed: int = 7
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
    """Same pairs differ by small noise, different pairs are independent: separable in |a - b|."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.1, (n, dim)).astype(np.float32)
    same = np.arange(n) % 2 == 0
    b = np.where(same[:, None], a + rng.normal(0.0, 0.005, (n, dim)), rng.normal(0.0, 0.1, (n, dim))).astype(
        np.float32
    )
    return a, b, same


def write_sidecar(path: Path, model_version: str = "enc:test") -> None:
    import json

    sidecar_path(path).write_text(
        json.dumps({"format": 1, "sha256": sha256_file(path), "encoder_model_version": model_version})
    )


def test_trainer_separates_synthetic_pairs_and_loss_decreases() -> None:
    a, b, same = synthetic_pairs()
    fit = fit_logistic(pair_features(a, b, "abs"), same, l2=1e-3)
    p = fit.head.predict(a, b)
    assert np.array_equal(p >= 0.5, same)  # separable set: every pair on its side
    assert roc_auc(p, same) == 1.0
    losses = np.array(fit.losses)
    assert len(losses) >= 3 and np.all(np.diff(losses) <= 1e-15)
    assert losses[-1] < 0.1 * losses[0]  # started at log 2
    assert losses[0] == pytest.approx(np.log(2.0))
    # similar pairs have small |a - b|: every weight on that feature is negative
    assert np.all(fit.head.weights < 0)


def test_trainer_is_deterministic_and_l2_shrinks() -> None:
    a, b, same = synthetic_pairs()
    x = pair_features(a, b, "abs")
    one, two = fit_logistic(x, same, l2=1e-3), fit_logistic(x, same, l2=1e-3)
    assert np.array_equal(one.head.weights, two.head.weights) and one.head.bias == two.head.bias
    strong = fit_logistic(x, same, l2=1.0)
    assert np.linalg.norm(strong.head.weights) < np.linalg.norm(one.head.weights)


def test_trainer_refuses_one_class_and_no_penalty() -> None:
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(x, np.ones(4, dtype=bool), l2=1e-3)
    with pytest.raises(ValueError, match="positive"):
        fit_logistic(x, np.array([True, False, True, False]), l2=0.0)


def test_balanced_weights_give_each_class_half() -> None:
    y = np.array([True, True, True, False])
    w = balanced_weights(y)
    assert w[y].sum() == pytest.approx(0.5) and w[~y].sum() == pytest.approx(0.5)


def test_chi2_feature_is_symmetric_positive_and_keeps_sign() -> None:
    a, b, _ = synthetic_pairs(n=10, dim=4)
    shift = chi2_shift(np.concatenate([a, b]))
    f = pair_features(a, b, "chi2", shift)
    assert np.all(f >= 0) and np.allclose(f, pair_features(b, a, "chi2", shift))
    # a component and its negation differ (a χ² on |a|, |b| would call them equal)
    assert pair_features(a[:1], -a[:1], "chi2", shift).sum() > 0
    with pytest.raises(ValueError, match="shift"):
        pair_features(a, b, "chi2")


def test_metrics_known_values() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([True, True, False, True, False, False])
    assert roc_auc(scores, positive) == pytest.approx(8 / 9)
    tar, threshold = tar_at_far(scores, positive, far=0.0)
    assert threshold == 0.7 and tar == pytest.approx(2 / 3)
    assert roc_auc(np.ones(4), np.array([True, False, True, False])) == 0.5  # ties count one half


def test_extra_pairs_never_touch_the_held_out_identities() -> None:
    p = Path
    main = [
        (1, p("images/A/A_1.jpg"), p("images/A/A_2.jpg"), True),
        (2, p("images/B/B_1.jpg"), p("images/C/C_1.jpg"), False),
    ]
    extra = [
        (1, p("images/A/A_2.jpg"), p("images/A/A_1.jpg"), True),  # a View-2 pair reversed: dropped
        (3, p("images/A/A_1.jpg"), p("images/D/D_1.jpg"), False),  # shows A
        (4, p("images/D/D_1.jpg"), p("images/D/D_2.jpg"), True),
    ]
    extra = dedupe_extra(main, extra)
    assert len(extra) == 2
    rows = training_rows(main, extra, {1})
    assert rows == [main[1], extra[1]]


@pytest.mark.parametrize("kind", ["abs", "chi2"])
def test_onnx_export_equals_numpy(tmp_path: Path, kind: str) -> None:
    a, b, same = synthetic_pairs(dim=128)
    shift = chi2_shift(np.concatenate([a, b])) if kind == "chi2" else None
    fit = fit_logistic(pair_features(a, b, kind, shift), same, l2=1e-2, kind=kind, shift=shift)  # type: ignore[arg-type]
    path = tmp_path / "head.onnx"
    export_onnx(fit.head, path)
    write_sidecar(path)
    classifier = PairClassifier(path, model_version="enc:test")
    rng = np.random.default_rng(1)
    qa, qb = (
        rng.normal(0, 0.1, (50, 128)).astype(np.float32),
        rng.normal(0, 0.1, (50, 128)).astype(np.float32),
    )
    for x, y in ((a, b), (qa, qb)):
        assert np.abs(classifier.score(x, y).astype(np.float64) - fit.head.predict(x, y)).max() <= 1e-6
    assert np.array_equal(classifier.same(a, b), fit.head.predict(a, b) >= 0.5)


def test_loader_checks_checksum_and_encoder_version(tmp_path: Path) -> None:
    head = PairHead("abs", np.full(128, -1.0), 1.0)
    path = tmp_path / "head.onnx"
    export_onnx(head, path)
    write_sidecar(path)
    with pytest.raises(ModelArtifactError, match="trained on encodings"):
        PairClassifier(path, model_version="enc:other")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelArtifactError, match="checksum"):
        PairClassifier(path)


@pytest.mark.shared
@pytest.mark.slow
def test_real_pairs_head_beats_chance_and_matches_onnx(tmp_path: Path, pipeline) -> None:  # type: ignore[no-untyped-def]
    """A few dozen real LFW pairs: a head trained on fold 1's pairs scores fold 2's held-out ones."""
    from app.evaluation.pairs import encode_images, read_pairs
    from models.train_pair_classifier import stack, train_head

    rows = read_pairs(shared_faces() / "lfw-dev" / "pairs.csv")
    train = [r for r in rows if r[0] == 1][:16] + [r for r in rows if r[0] == 1][-16:]
    test = [r for r in rows if r[0] == 2][:8] + [r for r in rows if r[0] == 2][-8:]
    images = sorted({p for _, a, b, _ in train + test for p in (a, b)})
    enc = encode_images(pipeline, images)
    fit = train_head(stack(train, enc), "abs", l2=1e-2)
    held = stack(test, enc)
    p = fit.head.predict(held.a, held.b)
    assert roc_auc(p, held.same) > 0.9
    assert ((p >= 0.5) == held.same).mean() >= 0.85
    path = tmp_path / "head.onnx"
    export_onnx(fit.head, path)
    write_sidecar(path, pipeline.model_version)
    classifier = PairClassifier(path, model_version=pipeline.model_version)
    assert np.abs(classifier.score(held.a, held.b).astype(np.float64) - p).max() <= 1e-6
