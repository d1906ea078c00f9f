"""Triplet loss, miners and the adaptation head (models/triplet.py, models/train_triplet.py):
known answers on hand-made embeddings, hand-written gradients against finite differences, a
short training run that lowers the validation loss (synthetic, and on real LFW faces when
../shared/faces is present), determinism, and the exported ONNX head against the numpy one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from models import train_triplet as tt
from models.triplet import (
    Head,
    Triplets,
    anchor_positive_pairs,
    batch_loss,
    init_head,
    mine,
    pk_batches,
    squared_distances,
    triplet_loss,
)
from tests.conftest import shared_faces

# Anchor 0 and its positive 1 (same person, squared distance 1); three other people:
# 2 is nearer than the positive (hard), 3 is farther but within the margin (semi-hard),
# 4 is far away (easy).
POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 1.1], [3.0, 0.0]])
LABELS = np.array([0, 0, 1, 2, 3], dtype=np.int64)


def _pair(t: Triplets, anchor: int, positive: int) -> int:
    rows = np.flatnonzero((t.anchor == anchor) & (t.positive == positive))
    assert len(rows) == 1
    return int(t.negative[rows[0]])


def test_anchor_positive_pairs_are_every_ordered_same_person_pair() -> None:
    a, p = anchor_positive_pairs(np.array([5, 5, 7, 5, 7], dtype=np.int64))
    assert sorted(zip(a.tolist(), p.tolist(), strict=True)) == [
        (0, 1), (0, 3), (1, 0), (1, 3), (2, 4), (3, 0), (3, 1), (4, 2)
    ]  # fmt: skip


def test_hard_mining_picks_the_nearest_negative() -> None:
    d = squared_distances(POINTS)
    t = mine(d, LABELS, "hard", margin=0.5)
    assert _pair(t, 0, 1) == 2
    # From anchor 1 (at x=1) the nearest other person is 2 (at x=0.5) as well.
    assert _pair(t, 1, 0) == 2


def test_semihard_mining_picks_the_nearest_negative_farther_than_the_positive() -> None:
    d = squared_distances(POINTS)
    t = mine(d, LABELS, "semihard", margin=0.5)
    # d(0,1) = 1; d(0,2) = 0.25 (too hard), d(0,3) = 1.21 (semi-hard), d(0,4) = 9 (easy).
    assert _pair(t, 0, 1) == 3
    assert t.semihard >= 1


def test_semihard_falls_back_to_the_easiest_negative_when_none_is_farther() -> None:
    points = np.array([[0.0, 0.0], [2.0, 0.0], [0.5, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 2], dtype=np.int64)
    t = mine(squared_distances(points), labels, "semihard", margin=0.2)
    # d(0,1) = 4 > d(0,2) = 0.25 and d(0,3) = 1: no negative is farther; the farthest is 3.
    assert _pair(t, 0, 1) == 3


def test_the_loss_is_zero_when_the_margin_holds() -> None:
    # Two tight clusters far apart: every triplet keeps the margin by a wide gap.
    e = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.1, 0.0]])
    labels = np.array([0, 0, 1, 1], dtype=np.int64)
    for kind in ("hard", "semihard"):
        t = mine(squared_distances(e), labels, kind, margin=0.2)
        loss, grad, active = triplet_loss(e, t, margin=0.2)
        assert (loss, active) == (0.0, 0.0)
        assert not grad.any()


def test_the_loss_has_the_known_value() -> None:
    # The one triplet (0, 1, 2) on hand-made points: d_ap = 1, d_an = 0.25, margin 0.2.
    t = Triplets(np.array([0]), np.array([1]), np.array([2]))
    loss, grad, active = triplet_loss(POINTS, t, margin=0.2)
    assert loss == pytest.approx(1.0 - 0.25 + 0.2)
    assert active == 1.0
    # d/da = 2(n - p), d/dp = -2(a - p), d/dn = 2(a - n)
    np.testing.assert_allclose(grad[0], 2 * (POINTS[2] - POINTS[1]))
    np.testing.assert_allclose(grad[1], -2 * (POINTS[0] - POINTS[1]))
    np.testing.assert_allclose(grad[2], 2 * (POINTS[0] - POINTS[2]))
    assert not grad[3:].any()


def test_hard_mining_loss_is_never_below_semihard() -> None:
    rng = np.random.default_rng(3)
    e = rng.standard_normal((24, 8))
    labels = np.repeat(np.arange(6), 4).astype(np.int64)
    assert batch_loss(e, labels, "hard", 0.2) >= batch_loss(e, labels, "semihard", 0.2)


@pytest.mark.parametrize("hidden", [0, 6])
def test_gradients_match_finite_differences(hidden: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 5))
    labels = np.repeat(np.arange(4), 3).astype(np.int64)
    head = init_head(x, 4, hidden, seed=1)
    if hidden:
        head.w2 = rng.standard_normal(head.w2.shape) * 0.3
        head.b1 = rng.standard_normal(head.b1.shape) * 0.1
    e, cache = head.forward(x)
    t = mine(squared_distances(e), labels, "hard", margin=0.5)  # mined once, held fixed

    def loss_of(h: Head) -> float:
        return triplet_loss(h(x), t, margin=0.5)[0]

    _, grad_e, active = triplet_loss(e, t, margin=0.5)
    assert active > 0
    grads = head.backward(grad_e, cache)
    step = 1e-6
    for name, g in grads.items():
        w = getattr(head, name)
        numeric = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + step
            up = loss_of(head)
            w[idx] = old - step
            down = loss_of(head)
            w[idx] = old
            numeric[idx] = (up - down) / (2 * step)
        np.testing.assert_allclose(g, numeric, atol=1e-6, rtol=1e-4, err_msg=name)


def test_pk_batches_hold_p_people_of_up_to_k_photos() -> None:
    labels = np.array([0] * 5 + [1] * 2 + [2] * 1 + [3] * 4 + [4] * 3 + [5] * 6, dtype=np.int64)
    rng = np.random.default_rng(0)
    batches = list(pk_batches(labels, people=2, photos=3, rng=rng))
    # Five people have two or more photos (person 2 has one): two batches of two people.
    assert len(batches) == 2
    seen: set[int] = set()
    for rows in batches:
        people, counts = np.unique(labels[rows], return_counts=True)
        assert len(people) == 2 and len(set(rows.tolist())) == len(rows)
        assert all(c == min(3, int((labels == p).sum())) for p, c in zip(people, counts, strict=True))
        seen |= set(people.tolist())
    assert 2 not in seen


def _clustered(people: int, photos: int, seed: int) -> tuple[NDArray[np.float64], list[str]]:
    """Identity in 8 dimensions, plus 8 dimensions of strong per-photo nuisance that a linear
    head can learn to ignore."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, 8))
    rows, names = [], []
    for i in range(people):
        for _ in range(photos):
            rows.append(
                np.concatenate([centres[i] + 0.3 * rng.standard_normal(8), 1.5 * rng.standard_normal(8)])
            )
            names.append(f"p{i:03d}")
    return np.array(rows), names


def test_training_lowers_the_validation_loss_and_is_deterministic() -> None:
    x, names = _clustered(60, 5, seed=4)
    cfg = tt.TrainConfig(out_dim=8, people=8, photos=4, epochs=15, lr=1e-2, decay=0.0, val_fraction=0.25)
    first = tt.train_head(x, names, cfg, progress=False)
    assert first.val_people == 15 and first.train_people == 45
    assert first.val_loss_best < 0.5 * first.val_loss_start
    again = tt.train_head(x, names, cfg, progress=False)
    np.testing.assert_array_equal(first.head.a, again.head.a)
    other = tt.train_head(x, names, tt.TrainConfig(**{**cfg.__dict__, "seed": 1}), progress=False)
    assert not np.array_equal(first.head.a, other.head.a)


def test_the_validation_split_is_by_identity() -> None:
    names = [f"p{i}" for i in range(40) for _ in range(3)] + ["single"]
    held = tt.identity_split(names, 0.2, seed=0)
    by_person: dict[str, set[bool]] = {}
    for n, h in zip(names, held, strict=True):
        by_person.setdefault(n, set()).add(bool(h))
    assert all(len(v) == 1 for v in by_person.values())  # a person is wholly in or out
    assert sum(True in v for v in by_person.values()) == 8
    assert by_person["single"] == {False}  # one photo gives no positive: never drawn


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_onnx_head_equals_the_numpy_head(tmp_path: Path, hidden: int) -> None:
    x, names = _clustered(20, 4, seed=2)
    cfg = tt.TrainConfig(out_dim=8, hidden=hidden, people=5, photos=4, epochs=3, lr=1e-2, val_fraction=0.2)
    head = tt.train_head(x, names, cfg, progress=False).head
    path = tmp_path / "head.onnx"
    tt.export_onnx(head, path)
    probe = x.astype(np.float32)
    out = tt.run_onnx(path, probe)
    assert out.shape == (len(x), 8)
    np.testing.assert_allclose(out, head(probe), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_inputs_are_cut_from_the_fused_vector() -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal(128)
    s /= np.linalg.norm(s)
    d = rng.standard_normal(128) * 0.1
    fused = np.concatenate([np.sqrt(0.756) * s, np.sqrt(0.920) * d]).astype(np.float32)
    np.testing.assert_allclose(tt.as_input(fused, "sface"), s, atol=1e-6)
    np.testing.assert_allclose(tt.as_input(fused, "dlib"), d, atol=1e-6)
    assert tt.as_input(fused, "fusion").shape == (256,)


def test_a_short_real_run_lowers_the_validation_loss(model_dir: Path, tmp_path: Path) -> None:
    """Real faces: 40 LFW dev people with 4+ photos, dlib's encoder (the weaker one, so its
    triplets are not all satisfied from the start), hard mining; 10 people held out."""
    faces = shared_faces()
    from app.evaluation.pairs import encode_images
    from app.settings import Settings
    from app.vision.pipeline import FacePipeline

    photos = tt.read_folder_tree(faces / "lfw-dev")
    counts: dict[str, int] = {}
    for name in photos.identities:
        counts[name] = counts.get(name, 0) + 1
    people = sorted(n for n, c in counts.items() if c >= 4)[:40]
    chosen = [(p, n) for p, n in zip(photos.paths, photos.identities, strict=True) if n in people]
    chosen = [(p, n) for p, n in chosen if sum(1 for _, m in chosen[: chosen.index((p, n))] if m == n) < 4]
    settings = Settings(
        data_dir=tmp_path, model_dir=model_dir, onnx_providers=("CPUExecutionProvider",), profile="fusion"
    )
    pipeline = FacePipeline.load(settings, flip_average=False, profile="fusion")
    vectors = encode_images(pipeline, [p for p, _ in chosen], None)
    kept = [(vectors[p], n) for p, n in chosen if vectors[p] is not None]
    x = np.stack([tt.as_input(v, "dlib") for v, _ in kept])  # type: ignore[arg-type]
    cfg = tt.TrainConfig(
        input="dlib", mining="hard", margin=0.2, people=10, photos=4, epochs=25, lr=5e-3, val_fraction=0.25
    )
    result = tt.train_head(x, [n for _, n in kept], cfg, progress=False)
    assert result.val_people == 10
    assert result.val_loss_start > 0.0
    assert result.val_loss_best < result.val_loss_start
    assert result.best_epoch >= 1


def test_train_triplet_on_the_site_database_end_to_end(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`facegate train triplet --site`: real LFW photos kept as enrolment photos of 12 people in
    a site database; trains, exports the ONNX head and its manifest entry, and leaves no photo
    or encoding behind (no cache for site data)."""
    import json

    from typer.testing import CliRunner

    from app.cli import cli
    from app.settings import get_settings
    from app.store import db as store_db
    from app.store import queries as q
    from app.store.models import EnrolmentPhoto

    faces = shared_faces()
    photos = tt.read_folder_tree(faces / "lfw-dev")
    by_person: dict[str, list[Path]] = {}
    for path, name in zip(photos.paths, photos.identities, strict=True):
        by_person.setdefault(name, []).append(path)
    chosen = [n for n in sorted(by_person) if len(by_person[n]) >= 3][:12]
    url = f"sqlite:///{(tmp_path / 'site.db').as_posix()}"
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    with store_db.make_session_factory(engine)() as s:
        for name in chosen:
            person = q.create_person(s, name).id
            for path in by_person[name][:3]:
                s.add(EnrolmentPhoto(person_id=person, image=path.read_bytes(), image_sha256="0" * 64))
        s.commit()
    engine.dispose()
    data_dir = tmp_path / "data"
    for key, value in {
        "FACEGATE_DATABASE_URL": url,
        "FACEGATE_MODEL_DIR": str(model_dir),
        "FACEGATE_DATA_DIR": str(data_dir),
        "FACEGATE_ONNX_PROVIDERS": '["CPUExecutionProvider"]',
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    out = tmp_path / "head.onnx"
    try:
        args = [
            "train",
            "triplet",
            "--site",
            "--input",
            "dlib",
            "--epochs",
            "3",
            "--people",
            "4",
            "--out",
            str(out),
        ]
        result = CliRunner().invoke(cli, args)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    entry = json.loads(out.with_suffix(".json").read_text())["triplet_head"]
    assert entry["sha256"] == tt.sha256_of(out) and entry["kind"] == "onnx"
    assert entry["source_data"]["people"] == 12 and entry["source_data"]["photos"] == 36
    assert entry["input"] == {"name": "embedding", "encoder": "dlib", "dim": 128, "metric": "l2"}
    assert entry["encoder_version"].startswith("fusion-v1:")
    assert entry["onnx_max_abs_error"] < 1e-5
    assert entry["training"]["val_people"] == 2 and len(entry["training"]["history"]) >= 1
    # Nothing of the site's faces stays on disk: no embedding cache was written.
    assert not (data_dir / "cache").exists() or not any((data_dir / "cache").iterdir())
