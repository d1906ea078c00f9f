"""Train, cross-validate and export the logistic pair head (``app/evaluation/pair_classifier.py``).

    python models/train_pair_classifier.py [--lfw ../shared/faces/lfw-dev] [--features abs|chi2]
                                           [--out var/models-extra/pair_classifier.onnx]

Data: the LFW View-2 pairs in ``pairs.csv`` (folds 1-5, 300 same + 300 different each,
identity-disjoint folds) and ``pairs_extra.csv`` (folds 1-10, two same pairs for one different
one). The extra file's folds are NOT those of ``pairs.csv``: its identities appear in every
View-2 fold and 624 of its pairs are View-2 pairs. So the extra pairs are only ever training
data: duplicates of View-2 pairs are dropped, and when View-2 fold k is held out, every extra
pair that shows an identity of fold k is left out too. Held-out fold k is then disjoint in
identities from everything its head was trained on.

Protocol: for k in 1..5, train on View-2 folds ≠ k (plus the filtered extra pairs), evaluate on
fold k; the L2 strength is chosen inside the training folds (inner leave-one-fold-out on held-out
log-loss), never on fold k. The exported head is trained on all five folds and every extra pair,
with the L2 strength chosen by the outer cross-validation's rule over all five folds.

Fitting is deterministic: features standardised on the training set, then Newton's method with
a backtracking line search on the class-balanced mean log-loss plus (λ/2)‖w‖² (no bias penalty),
started at zero. There is no random number anywhere, so the same encodings give the same bytes.

Reported on the held-out folds, for the head and for the plain L2 distance: ROC AUC, accuracy
(head: p ≥ 0.5; distance: τ = 0.6 and τ chosen on the other folds), TAR at FAR 1e-2 and 1e-3
(the scores of the five held-out folds pooled: 1,500 different pairs, so FAR 1e-3 allows one
false accept).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `python models/train_pair_classifier.py`
    sys.path.insert(0, str(REPO))

from app.evaluation.pair_classifier import (  # noqa: E402
    CHI2_MIN_DENOMINATOR,
    FEATURE_KINDS,
    INPUT_A,
    INPUT_B,
    OUTPUT,
    SIDECAR_FORMAT,
    FeatureKind,
    PairClassifier,
    PairHead,
    chi2_shift,
    pair_features,
    sidecar_path,
)
from app.evaluation.verification import accuracy_at, cross_validated  # noqa: E402
from app.vision.manifest import ModelArtifactError, sha256_file  # noqa: E402
from models.onnx_graph import FLOAT, OPSET, GraphBuilder, rename_output, save_model_atomic, tensor_info  # noqa: E402

log = logging.getLogger("train_pair_classifier")

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
FARS = (1e-2, 1e-3)
DEFAULT_OUT = Path("var/models-extra/pair_classifier.onnx")

Pair = tuple[int, Path, Path, bool]


# --------------------------------------------------------------------------- fitting


@dataclass
class LogisticFit:
    head: PairHead
    losses: list[float] = field(default_factory=list)  # objective after each Newton step (first: at 0)
    iterations: int = 0


def balanced_weights(y: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each class carries half of the total weight, whatever its count."""
    w = np.empty(len(y), dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("training needs pairs of both classes")
    w[y] = 0.5 / n_pos
    w[~y] = 0.5 / n_neg
    return w


def _objective(
    z: NDArray[np.float64],
    y: NDArray[np.float64],
    s: NDArray[np.float64],
    theta: NDArray[np.float64],
    l2: float,
) -> float:
    # softplus(z) - y z, computed without overflow
    data = np.logaddexp(0.0, z) - y * z
    return float(s @ data + 0.5 * l2 * theta[:-1] @ theta[:-1])


def fit_logistic(
    x: NDArray[np.float64],
    y: NDArray[np.bool_],
    *,
    l2: float,
    kind: FeatureKind = "abs",
    shift: NDArray[np.float64] | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> LogisticFit:
    """L2-regularised logistic regression by Newton's method on standardised features.

    ``x`` are the pair features [N, D]; the returned head's weights act on raw features
    (standardisation folded in), so ``head.logit`` needs no extra state.
    """
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError("x must be [N, D] with one label per row")
    if l2 <= 0:
        raise ValueError("l2 must be positive (it keeps separable data finite)")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0
    xs = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    t = y.astype(np.float64)
    s = balanced_weights(y)
    penalty = np.ones(xs.shape[1])
    penalty[-1] = 0.0
    theta = np.zeros(xs.shape[1])
    loss = _objective(xs @ theta, t, s, theta, l2)
    losses = [loss]
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported below
        p = 1.0 / (1.0 + np.exp(-(xs @ theta)))
        grad = xs.T @ (s * (p - t)) + l2 * penalty * theta
        hess = (xs * (s * p * (1.0 - p))[:, None]).T @ xs + np.diag(l2 * penalty)
        # The bias direction has no penalty: a tiny ridge keeps a fully separated set solvable.
        step = np.linalg.solve(hess + 1e-12 * np.eye(len(theta)), grad)
        rate = 1.0
        while True:
            candidate = theta - rate * step
            new_loss = _objective(xs @ candidate, t, s, candidate, l2)
            if new_loss <= loss or rate < 1e-8:
                break
            rate *= 0.5
        decrease = loss - new_loss
        if new_loss <= loss:
            theta, loss = candidate, new_loss
            losses.append(loss)
        if decrease < tol or float(np.abs(grad).max()) < tol:
            break
    w_std, b_std = theta[:-1], float(theta[-1])
    weights = w_std / std
    bias = b_std - float(weights @ mean)
    return LogisticFit(PairHead(kind, weights, bias, shift), losses, iterations)


# --------------------------------------------------------------------------- metrics


def roc_auc(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs both classes")
    order = np.concatenate([pos, neg])
    ranks = np.empty(len(order), dtype=np.float64)
    sorter = np.argsort(order, kind="mergesort")
    sorted_vals = order[sorter]
    # average ranks of ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[sorter] = np.repeat(avg, counts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def tar_at_far(scores: NDArray[np.float64], positive: NDArray[np.bool_], far: float) -> tuple[float, float]:
    """(TAR, threshold): accept when score > threshold, the lowest threshold whose FAR ≤ far."""
    neg = np.sort(scores[~positive])[::-1]
    allowed = int(np.floor(far * len(neg)))  # false accepts permitted
    threshold = float(neg[allowed]) if allowed < len(neg) else -np.inf
    return float((scores[positive] > threshold).mean()), threshold


# --------------------------------------------------------------------------- data


def identity(path: Path) -> str:
    return path.parent.name  # images/<Person_Name>/<Person_Name>_NNNN.jpg


def pair_key(a: Path, b: Path) -> tuple[str, str]:
    sa, sb = str(a), str(b)
    return (sa, sb) if sa <= sb else (sb, sa)


def dedupe_extra(main: list[Pair], extra: list[Pair]) -> list[Pair]:
    """Extra pairs minus those that are also View-2 pairs (either order) or repeated."""
    seen = {pair_key(a, b) for _, a, b, _ in main}
    out = []
    for row in extra:
        key = pair_key(row[1], row[2])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def extra_outside(main: list[Pair], extra: list[Pair], held_out: set[int]) -> list[Pair]:
    """Extra rows sharing no identity with the held-out View-2 folds."""
    banned = {identity(p) for f, a, b, _ in main if f in held_out for p in (a, b)}
    return [r for r in extra if identity(r[1]) not in banned and identity(r[2]) not in banned]


def training_rows(main: list[Pair], extra: list[Pair], held_out: set[int]) -> list[Pair]:
    """View-2 rows of the other folds plus extra rows sharing no identity with the held-out folds."""
    return [r for r in main if r[0] not in held_out] + extra_outside(main, extra, held_out)


@dataclass
class PairData:
    """Encodings of the rows whose two images both have a face."""

    a: NDArray[np.float32]
    b: NDArray[np.float32]
    same: NDArray[np.bool_]
    missing: int  # rows left out for lack of a face


def stack(rows: list[Pair], enc: dict[Path, NDArray[np.float32] | None]) -> PairData:
    keep = [r for r in rows if enc.get(r[1]) is not None and enc.get(r[2]) is not None]
    dim = next(v for v in enc.values() if v is not None).shape[0]
    a = np.array([enc[r[1]] for r in keep], dtype=np.float32).reshape(-1, dim)
    b = np.array([enc[r[2]] for r in keep], dtype=np.float32).reshape(-1, dim)
    return PairData(a, b, np.array([r[3] for r in keep], dtype=bool), len(rows) - len(keep))


def train_head(data: PairData, kind: FeatureKind, l2: float) -> LogisticFit:
    shift = chi2_shift(np.concatenate([data.a, data.b])) if kind == "chi2" else None
    x = pair_features(data.a, data.b, kind, shift)
    return fit_logistic(x, data.same, l2=l2, kind=kind, shift=shift)


def held_out_log_loss(head: PairHead, data: PairData) -> float:
    z = head.logit(data.a, data.b)
    t = data.same.astype(np.float64)
    return float(balanced_weights(data.same) @ (np.logaddexp(0.0, z) - t * z))


def choose_l2(
    main: list[Pair],
    extra: list[Pair],
    enc: dict[Path, NDArray[np.float32] | None],
    folds: list[int],
    kind: FeatureKind,
) -> tuple[float, dict[str, float]]:
    """λ with the lowest mean held-out log-loss over leave-one-fold-out within ``folds``."""
    scores: dict[str, float] = {}
    for l2 in L2_GRID:
        losses = []
        for k in folds:
            rows = [r for r in main if r[0] in folds]
            head = train_head(stack(training_rows(rows, extra, {k}), enc), kind, l2).head
            losses.append(held_out_log_loss(head, stack([r for r in rows if r[0] == k], enc)))
        scores[f"{l2:g}"] = float(np.mean(losses))
    best = min(L2_GRID, key=lambda v: scores[f"{v:g}"])
    return best, scores


# --------------------------------------------------------------------------- evaluation


def row_scores(
    rows: list[Pair], enc: dict[Path, NDArray[np.float32] | None], head: PairHead | None
) -> NDArray[np.float64]:
    """Higher = more alike: p(same) for the head, -distance without; -inf where a face is missing."""
    out = np.full(len(rows), -np.inf)
    ok = [i for i, r in enumerate(rows) if enc.get(r[1]) is not None and enc.get(r[2]) is not None]
    if not ok:
        return out
    data = stack([rows[i] for i in ok], enc)
    if head is None:
        out[ok] = -np.linalg.norm(data.a.astype(np.float64) - data.b.astype(np.float64), axis=1)
    else:
        out[ok] = head.predict(data.a, data.b)
    return out


def summarize(scores: NDArray[np.float64], same: NDArray[np.bool_]) -> dict[str, float]:
    finite = np.where(np.isfinite(scores), scores, np.nanmin(scores[np.isfinite(scores)]) - 1.0)
    summary = {"auc": roc_auc(finite, same)}
    for far in FARS:
        summary[f"tar_at_far_{far:g}"] = tar_at_far(finite, same, far)[0]
    return summary


def cross_validate(
    main: list[Pair],
    extra: list[Pair],
    enc: dict[Path, NDArray[np.float32] | None],
    kind: FeatureKind,
    tau: float,
) -> dict[str, Any]:
    folds = sorted({r[0] for r in main})
    same_all = np.array([r[3] for r in main], dtype=bool)
    head_scores = np.full(len(main), -np.inf)
    dist_scores = row_scores(main, enc, None)
    per_fold = []
    # the distance's τ is chosen on the other folds exactly as `facegate eval verify` does
    distances = np.where(np.isfinite(dist_scores), -dist_scores, np.nan)
    fold_ids = np.array([r[0] for r in main], dtype=np.int64)
    distance_cv = {f.fold: f for f in cross_validated(distances, same_all, fold_ids)}
    for k in folds:
        others = [f for f in folds if f != k]
        # λ is chosen without fold k and without the extra pairs that show its identities
        l2, _ = choose_l2(main, extra_outside(main, extra, {k}), enc, others, kind)
        train = stack(training_rows(main, extra, {k}), enc)
        fit = train_head(train, kind, l2)
        idx = np.array([i for i, r in enumerate(main) if r[0] == k])
        test_rows = [main[i] for i in idx]
        head_scores[idx] = row_scores(test_rows, enc, fit.head)
        same = same_all[idx]
        per_fold.append(
            {
                "fold": k,
                "l2": l2,
                "train_pairs": len(train.same),
                "train_same": int(train.same.sum()),
                "newton_iterations": fit.iterations,
                "head_accuracy": float(((head_scores[idx] >= 0.5) == same).mean()),
                "head_auc": roc_auc(head_scores[idx], same),
                "distance_accuracy_tau": accuracy_at(distances[idx], same, tau),
                "distance_accuracy_cv": distance_cv[k].accuracy,
                "distance_tau_cv": distance_cv[k].tau,
                "distance_auc": roc_auc(dist_scores[idx], same),
            }
        )

    def mean_std(key: str) -> tuple[float, float]:
        values = [f[key] for f in per_fold]
        return float(np.mean(values)), float(np.std(values))

    return {
        "features": kind,
        "folds": per_fold,
        "head": {
            **summarize(head_scores, same_all),
            "accuracy_mean": mean_std("head_accuracy")[0],
            "accuracy_std": mean_std("head_accuracy")[1],
        },
        "distance": {
            **summarize(dist_scores, same_all),
            "accuracy_at_tau": accuracy_at(distances, same_all, tau),
            "accuracy_mean": mean_std("distance_accuracy_cv")[0],
            "accuracy_std": mean_std("distance_accuracy_cv")[1],
        },
    }


# --------------------------------------------------------------------------- export


def export_onnx(head: PairHead, path: Path) -> None:
    """a, b [N, D] float32 → p_same [N] float32; computed in float64 inside the graph."""
    dim = len(head.weights)
    g = GraphBuilder()
    a = g.op("Cast", [INPUT_A], to=onnx.TensorProto.DOUBLE)
    b = g.op("Cast", [INPUT_B], to=onnx.TensorProto.DOUBLE)
    diff = g.op("Sub", [a, b])
    if head.kind == "abs":
        feat = g.op("Abs", [diff])
    else:
        if head.shift is None:
            raise ValueError("chi2 head without its shift")
        num = g.op("Mul", [diff, diff])
        den = g.op("Add", [g.op("Add", [a, b]), g.const("two_shift", 2.0 * head.shift.astype(np.float64))])
        den = g.op("Max", [den, g.const("min_den", np.array(CHI2_MIN_DENOMINATOR, dtype=np.float64))])
        feat = g.op("Div", [num, den])
    logit = g.op("MatMul", [feat, g.const("weights", head.weights.astype(np.float64))])
    logit = g.op("Add", [logit, g.const("bias", np.array(head.bias, dtype=np.float64))])
    prob = g.op("Cast", [g.op("Sigmoid", [logit])], to=onnx.TensorProto.FLOAT)
    rename_output(g, prob, OUTPUT)
    model = g.model(
        [tensor_info(INPUT_A, FLOAT, ["N", dim]), tensor_info(INPUT_B, FLOAT, ["N", dim])],
        [tensor_info(OUTPUT, FLOAT, ["N"])],
        "pair_classifier",
        f"FaceGate logistic pair head ({head.kind} features): p(same) of two encodings",
    )
    save_model_atomic(model, path)


def onnx_max_error(path: Path, head: PairHead, a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    """Largest |ONNX - numpy| of p(same), the file run through the app's session factory."""
    from app.vision.runtime import create_session

    session = create_session(path, providers=("CPUExecutionProvider",))
    out = session.run([OUTPUT], {INPUT_A: np.ascontiguousarray(a), INPUT_B: np.ascontiguousarray(b)})[0]
    return float(np.abs(np.asarray(out, dtype=np.float64) - head.predict(a, b)).max())


# --------------------------------------------------------------------------- main


def load_encodings(images: list[Path]) -> tuple[dict[Path, NDArray[np.float32] | None], str]:
    from app.evaluation.pairs import encode_images
    from app.settings import get_settings
    from app.vision.pipeline import FacePipeline

    settings = get_settings()
    try:
        pipeline = FacePipeline.load(settings)
    except ModelArtifactError:
        # missing or stale artifacts: build them, as `facegate serve` does (idempotent, atomic renames)
        from models.build import build_models

        build_models(settings.models_path)
        pipeline = FacePipeline.load(settings)
    try:
        enc = encode_images(pipeline, images, cache_dir=settings.data_dir / "cache")
    finally:
        pipeline.close()
    return enc, pipeline.model_version


def fmt(result: dict[str, Any]) -> str:
    h, d = result["head"], result["distance"]
    lines = [
        f"features {result['features']}: held-out View-2 folds (each head trained without its fold)",
        f"  {'':22s} {'AUC':>8s} {'accuracy (CV)':>16s} {'TAR@FAR1e-2':>12s} {'TAR@FAR1e-3':>12s}",
        f"  {'logistic head p>=0.5':22s} {h['auc']:8.5f} {h['accuracy_mean']:9.2%} ±{h['accuracy_std']:.2%}"
        f" {h['tar_at_far_0.01']:12.2%} {h['tar_at_far_0.001']:12.2%}",
        f"  {'L2 distance (τ CV)':22s} {d['auc']:8.5f} {d['accuracy_mean']:9.2%} ±{d['accuracy_std']:.2%}"
        f" {d['tar_at_far_0.01']:12.2%} {d['tar_at_far_0.001']:12.2%}",
        f"  distance at τ fixed: {d['accuracy_at_tau']:.2%}",
        "  per fold: "
        + ", ".join(
            f"{f['fold']}: head {f['head_accuracy']:.2%} (λ {f['l2']:g}) "
            f"/ dist {f['distance_accuracy_cv']:.2%}"
            for f in result["folds"]
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "faces" / "lfw-dev")
    parser.add_argument("--features", choices=FEATURE_KINDS, default="abs", help="the head to export")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tau", type=float, default=0.6, help="the distance's fixed operating point")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app.evaluation.pairs import read_pairs

    main_csv, extra_csv = args.lfw / "pairs.csv", args.lfw / "pairs_extra.csv"
    if not main_csv.is_file() or not extra_csv.is_file():
        parser.error(f"{args.lfw} lacks pairs.csv / pairs_extra.csv")
    main_rows = read_pairs(main_csv)
    extra_all = read_pairs(extra_csv)
    extra_rows = dedupe_extra(main_rows, extra_all)
    images = sorted({p for _, a, b, _ in main_rows + extra_rows for p in (a, b)})
    enc, model_version = load_encodings(images)
    no_face = sum(1 for v in enc.values() if v is None)
    print(
        f"{len(main_rows)} View-2 pairs (folds {sorted({r[0] for r in main_rows})}), "
        f"{len(extra_rows)} extra pairs ({len(extra_all) - len(extra_rows)} duplicates of View-2 dropped), "
        f"{len(images)} images ({no_face} without a face), encodings {model_version}"
    )

    results = {kind: cross_validate(main_rows, extra_rows, enc, kind, args.tau) for kind in FEATURE_KINDS}
    for kind in FEATURE_KINDS:
        print(fmt(results[kind]))

    export_kind: FeatureKind = args.features
    folds = sorted({r[0] for r in main_rows})
    l2, l2_scores = choose_l2(main_rows, extra_rows, enc, folds, export_kind)
    train = stack(main_rows + extra_rows, enc)
    fit = train_head(train, export_kind, l2)
    export_onnx(fit.head, args.out)
    error = onnx_max_error(args.out, fit.head, train.a, train.b)
    if error > 1e-6:
        raise SystemExit(f"{args.out}: ONNX output differs from the numpy head by {error:.2e} (> 1e-6)")
    meta = {
        "format": SIDECAR_FORMAT,
        "file": args.out.name,
        "sha256": sha256_file(args.out),
        "opset": OPSET,
        "features": export_kind,
        "threshold": 0.5,
        "inputs": {"a": "[N, 128] float32", "b": "[N, 128] float32"},
        "output": "p_same [N] float32",
        "encoder_model_version": model_version,
        "training": {
            "pairs_csv": "lfw-dev/pairs.csv",
            "pairs_csv_folds": folds,
            "extra_csv": "lfw-dev/pairs_extra.csv",
            "extra_csv_folds": sorted({r[0] for r in extra_rows}),
            "pairs": len(train.same),
            "same": int(train.same.sum()),
            "different": int((~train.same).sum()),
            "pairs_without_face": train.missing,
            "l2": l2,
            "l2_cv_log_loss": l2_scores,
            "newton_iterations": fit.iterations,
            "final_loss": fit.losses[-1],
            "randomness": "none (Newton from zero; seedless and deterministic)",
        },
        "onnx_max_abs_error_vs_numpy": error,
        "cross_validation": results,
    }
    sidecar_path(args.out).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    PairClassifier(args.out, model_version=model_version)  # what an app would load: verifies the sidecar
    print(
        f"exported {args.out} ({export_kind}, λ {l2:g}, {len(train.same)} pairs, "
        f"{fit.iterations} Newton steps); "
        f"ONNX vs numpy max |Δp| {error:.1e}; sidecar {sidecar_path(args.out)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
