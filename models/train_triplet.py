"""Train a triplet-loss adaptation head on a frozen encoder's embeddings, evaluate it honestly,
export it to ONNX with a manifest entry.

    facegate train triplet [--data ../shared/faces/lfw-dev] [--input sface|dlib|fusion]
                           [--hidden 0] [--mining semihard|hard] [--evaluate]
                           [--out var/models-extra/triplet_head.onnx]

What it trains: ``models/triplet.py``'s head, f(x) = normalise(x A + relu(x W1 + b1) W2), a
linear (``--hidden 0``) or 2-layer map from the encoder's embedding to a unit 128-d space, with
triplet loss (margin alpha = 0.2 on squared distances), batches of P people x K photos and online
semi-hard (default) or hard negative mining. The encoder stays frozen: every photo is encoded
once (the fusion profile gives both SFace's and dlib's vectors; ``app.evaluation.pairs``'s
embedding cache under ``<data_dir>/cache`` keeps them between runs), so an epoch is a few matrix
products. A validation split by identity (people never seen in training) picks the epoch with
the lowest validation triplet loss. Seeded numpy: the same data and seed give the same head.

Data: a folder tree, one folder per person (``<root>/<person>/*.jpg``, or ``<root>/images/...``
with LFW's ``labels.csv``, whose known label errors are left out).

``--evaluate`` measures the head against the plain encoder on identities it never saw:

- LFW View-2 pairs (``pairs.csv``, folds 1-5, identity-disjoint): for each fold k a head is
  trained on every LFW dev identity that does not appear in fold k, and scores fold k only; the
  held-out distances of the five folds are then cross-validated exactly as `facegate eval
  verify` does (τ for fold k chosen on the other folds' held-out distances);
- the open-set door protocol (``openset_gallery.csv`` / ``openset_probes.csv``): a head trained
  on the LFW dev identities outside it (the calibration prior's people), searched as
  `facegate eval openset` searches (the service's FAISS index, τ-free FNIR at FPIR);
- cross-dataset: the exported head (trained on LFW dev) on the real webcam and video identities
  of ``../shared/faces/liveness`` (NUAA live frames of 7 people, 5 live videos): every pair of
  frames of one person from different recordings is genuine (a video's frames at least 1 s
  apart), every pair of two people an impostor; τ is the one chosen on LFW.

Output: the head as ONNX (``embedding`` [N, in] float32 → ``adapted`` [N, 128] float32, unit
rows) and ``<out>.json``, its manifest entry (file, sha256, version; the encoder version and
artifacts' sha256 it was trained on, the source data's sha256, the training settings and every
figure), which ``facegate models build`` could list. No profile applies it: see README
("Triplet adaptation head") for the figures and why.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
from numpy.typing import NDArray

from app.evaluation.metrics import at_false_accept, equal_error_rate, tradeoff
from app.evaluation.verification import accuracy_at, best_threshold, cross_validated
from app.gallery.metric import Metric
from app.vision.profiles import FUSION_DLIB_SQUARED_L2, FUSION_SFACE_COSINE
from models.onnx_graph import FLOAT, GraphBuilder, rename_output, save_model_atomic, tensor_info
from models.triplet import (
    MINING_KINDS,
    Adam,
    Head,
    Mining,
    batch_loss,
    init_head,
    mine,
    pk_batches,
    squared_distances,
    triplet_loss,
)

log = logging.getLogger("train_triplet")

InputKind = Literal["sface", "dlib", "fusion"]
INPUT_KINDS: tuple[InputKind, ...] = ("sface", "dlib", "fusion")
# The plain encoder's distance for each input (what the service compares without the head).
INPUT_METRIC: dict[InputKind, Metric] = {"sface": "cosine", "dlib": "l2", "fusion": "fused"}
SFACE_DIM = 128
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ONNX_INPUT = "embedding"
ONNX_OUTPUT = "adapted"
HEAD_VERSION = "triplet-head-v1"
FAR_POINTS = (1e-2, 1e-3)
FPIR_POINTS = (0.01, 0.003, 0.001)
DEFAULT_OUT = Path("var/models-extra/triplet_head.onnx")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Photos:
    """Labelled photos: path and identity per row."""

    paths: list[Path]
    identities: list[str]

    def subset(self, keep: NDArray[np.bool_]) -> Photos:
        return Photos(
            [p for p, k in zip(self.paths, keep, strict=True) if k],
            [i for i, k in zip(self.identities, keep, strict=True) if k],
        )

    def without(self, banned: set[str]) -> Photos:
        return self.subset(np.array([i not in banned for i in self.identities], dtype=bool))


def read_folder_tree(root: Path) -> Photos:
    """``root/<person>/<photo>`` (or LFW dev: ``labels.csv``, known label errors left out)."""
    labels = root / "labels.csv"
    pairs: list[tuple[Path, str]] = []
    if labels.is_file():
        with labels.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("known_label_error", "0") != "1":
                    pairs.append((root / row["file"], row["identity"]))
    else:
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            for photo in sorted(person.iterdir()):
                if photo.suffix.lower() in IMAGE_SUFFIXES:
                    pairs.append((photo, person.name))
    if not pairs:
        raise ValueError(f"{root}: no photos (expected one folder per person, or LFW's labels.csv)")
    pairs.sort()
    return Photos([p for p, _ in pairs], [i for _, i in pairs])


def source_data_hash(photos: Photos, root: Path) -> str:
    """SHA-256 over every (relative path, identity, file sha256), sorted: what the head saw."""
    digest = hashlib.sha256()
    for path, identity in sorted(zip(photos.paths, photos.identities, strict=True)):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        digest.update(f"{rel}\t{identity}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def pairs_identities(lfw: Path) -> dict[int, set[str]]:
    """The identities in each View-2 fold of ``pairs.csv``."""
    folds: dict[int, set[str]] = {}
    with (lfw / "pairs.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            for key in ("img1", "img2"):
                folds.setdefault(int(row["fold"]), set()).add(Path(row[key]).parent.name)
    return folds


def openset_identities(lfw: Path) -> set[str]:
    out: set[str] = set()
    with (lfw / "openset_gallery.csv").open(newline="") as fh:
        out |= {row["identity"] for row in csv.DictReader(fh)}
    with (lfw / "openset_probes.csv").open(newline="") as fh:
        out |= {row["true_identity"] for row in csv.DictReader(fh)}
    return out


def as_input(fused: NDArray[np.float32], kind: InputKind) -> NDArray[np.float32]:
    """The encoder vector the head reads, from the fusion profile's stored vector
    ``[sqrt(a) s, sqrt(2 b) d]``: SFace's unit vector s, dlib's raw vector d, or the whole."""
    v = np.asarray(fused, dtype=np.float32)
    if kind == "fusion":
        return v
    if kind == "sface":
        out: NDArray[np.float32] = (v[..., :SFACE_DIM] / np.float32(np.sqrt(FUSION_SFACE_COSINE))).astype(
            np.float32
        )
        return out
    dlib: NDArray[np.float32] = (v[..., SFACE_DIM:] / np.float32(np.sqrt(2 * FUSION_DLIB_SQUARED_L2))).astype(
        np.float32
    )
    return dlib


def plain_distance(x1: NDArray[np.floating], x2: NDArray[np.floating], metric: Metric) -> NDArray[np.float64]:
    """Row-wise distance of the plain encoder in its metric (as the gallery computes it)."""
    d2: NDArray[np.float64] = ((np.asarray(x1, np.float64) - np.asarray(x2, np.float64)) ** 2).sum(axis=-1)
    out: NDArray[np.float64] = np.sqrt(d2) if metric == "l2" else 0.5 * d2
    return out


def site_photos(settings: Any, folder: Path) -> Photos:
    """The site's labelled faces (``app.store.labels.iter_training_faces``) written as a folder
    tree under ``folder``: one folder per person id."""
    from app.store.db import make_engine, make_session_factory
    from app.store.labels import iter_training_faces

    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine)() as session:
            for face in iter_training_faces(session):
                person = folder / f"person-{face.person_id}"
                person.mkdir(exist_ok=True)
                (person / f"{face.source}-{face.source_id}.jpg").write_bytes(face.jpeg)
    finally:
        engine.dispose()
    if not any(folder.iterdir()):
        raise ValueError("the site has no kept enrolment photos or labelled event snapshots")
    return read_folder_tree(folder)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    input: InputKind = "fusion"
    out_dim: int = 128
    hidden: int = 0
    margin: float = 0.2
    mining: Mining = "semihard"
    people: int = 32  # P per batch
    photos: int = 4  # K per person
    epochs: int = 40
    lr: float = 1e-3
    decay: float = 1e-2  # pull towards the starting (pretrained-geometry) weights
    val_fraction: float = 0.15
    patience: int = 8
    seed: int = 0


@dataclass
class TrainResult:
    head: Head
    best_epoch: int
    val_loss_start: float
    val_loss_best: float
    train_people: int
    train_photos: int
    val_people: int
    val_photos: int
    history: list[dict[str, float]] = field(default_factory=list)


def identity_split(identities: Sequence[str], fraction: float, seed: int) -> NDArray[np.bool_]:
    """True for rows whose person is in the validation share (people, not photos, are split;
    only people with two or more photos are drawn, as only they give positives)."""
    counts: dict[str, int] = {}
    for i in identities:
        counts[i] = counts.get(i, 0) + 1
    multi = sorted(i for i, c in counts.items() if c >= 2)
    rng = np.random.default_rng(seed)
    n_val = max(2, round(fraction * len(multi))) if fraction > 0 else 0
    chosen = set(rng.permutation(np.array(multi, dtype=object))[:n_val].tolist()) if multi else set()
    return np.array([i in chosen for i in identities], dtype=bool)


def validation_loss(
    head: Head, x: NDArray[np.floating], labels: NDArray[np.int64], cfg: TrainConfig
) -> float:
    """The mined triplet loss over the whole validation set as one batch (deterministic)."""
    return batch_loss(head(x), labels, cfg.mining, cfg.margin)


class Progress:
    """A one-line progress bar on a terminal (stderr), plain lines elsewhere."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.tty = out.isatty()

    def update(self, done: int, text: str) -> None:
        filled = round(self.width * done / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {text}"
        if self.tty:
            self.out.write("\r" + line)
            if done == self.total:
                self.out.write("\n")
        else:
            self.out.write(line + "\n")
        self.out.flush()


def labels_of(identities: Sequence[str]) -> NDArray[np.int64]:
    index = {name: i for i, name in enumerate(sorted(set(identities)))}
    return np.array([index[i] for i in identities], dtype=np.int64)


def train_head(
    x: NDArray[np.floating], identities: Sequence[str], cfg: TrainConfig, progress: bool = True
) -> TrainResult:
    """Train on ``x`` (rows: one photo's input vector) with a validation split by identity."""
    labels = labels_of(identities)
    is_val = identity_split(identities, cfg.val_fraction, cfg.seed)
    x64 = np.asarray(x, dtype=np.float64)
    xt, yt, xv, yv = x64[~is_val], labels[~is_val], x64[is_val], labels[is_val]
    if len(np.unique(yt)) < 2:
        raise ValueError("training needs at least two people with two photos each")
    head = init_head(xt, cfg.out_dim, cfg.hidden, cfg.seed)
    adam = Adam(lr=cfg.lr, decay=cfg.decay)
    rng = np.random.default_rng(cfg.seed + 1)
    has_val = len(np.unique(yv)) >= 2
    start = validation_loss(head, xv, yv, cfg) if has_val else float("nan")
    best, best_epoch, best_head, stale = start, 0, head.copy(), 0
    history: list[dict[str, float]] = []
    bar = Progress(cfg.epochs) if progress else None
    for epoch in range(1, cfg.epochs + 1):
        losses, actives = [], []
        for rows in pk_batches(yt, cfg.people, cfg.photos, rng):
            e, cache = head.forward(xt[rows])
            triplets = mine(squared_distances(e), yt[rows], cfg.mining, cfg.margin)
            loss, grad_e, active = triplet_loss(e, triplets, cfg.margin)
            adam.step(head, head.backward(grad_e, cache))
            losses.append(loss)
            actives.append(active)
        val = validation_loss(head, xv, yv, cfg) if has_val else float("nan")
        train_loss = float(np.mean(losses)) if losses else float("nan")
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val, "active": float(np.mean(actives))}
        )
        if has_val and val < best - 1e-6:
            best, best_epoch, best_head, stale = val, epoch, head.copy(), 0
        else:
            stale += 1
        if bar is not None:
            bar.update(epoch, f"train {train_loss:.4f} val {val:.4f} (best {best:.4f} @ {best_epoch})")
        if has_val and stale >= cfg.patience:
            break
    if not has_val:
        best_head, best_epoch = head, len(history)
    return TrainResult(
        head=best_head,
        best_epoch=best_epoch,
        val_loss_start=start,
        val_loss_best=best,
        train_people=len(np.unique(yt)),
        train_photos=len(yt),
        val_people=len(np.unique(yv)),
        val_photos=len(yv),
        history=history,
    )


# --------------------------------------------------------------------------- ONNX


def export_onnx(head: Head, path: Path) -> None:
    """embedding [N, in] float32 → adapted [N, out] float32, unit rows (the head's f)."""
    g = GraphBuilder()
    z = g.op("MatMul", [ONNX_INPUT, g.const("a", head.a.astype(np.float32))])
    if head.hidden:
        h = g.op(
            "Add",
            [
                g.op("MatMul", [ONNX_INPUT, g.const("w1", head.w1.astype(np.float32))]),
                g.const("b1", head.b1.astype(np.float32)),
            ],
        )
        z = g.op("Add", [z, g.op("MatMul", [g.op("Relu", [h]), g.const("w2", head.w2.astype(np.float32))])])
    norm = g.op("ReduceL2", [z], axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.const("eps", np.array(1e-12, dtype=np.float32))])
    out = g.op("Div", [z, norm])
    rename_output(g, out, ONNX_OUTPUT)
    model = g.model(
        [tensor_info(ONNX_INPUT, FLOAT, ["N", head.input_dim])],
        [tensor_info(ONNX_OUTPUT, FLOAT, ["N", head.output_dim])],
        "triplet_head",
        "FaceGate triplet-loss adaptation head: encoder embedding -> unit adapted embedding",
    )
    save_model_atomic(model, path)


def run_onnx(path: Path, x: NDArray[np.float32]) -> NDArray[np.float32]:
    """The exported head through the app's own ONNX Runtime session factory."""
    from app.vision.runtime import create_session

    session = create_session(path, providers=("CPUExecutionProvider",))
    out = session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- evaluation


def verification_summary(
    distances: NDArray[np.float64], same: NDArray[np.bool_], folds: NDArray[np.int64]
) -> dict[str, Any]:
    """`facegate eval verify`'s figures: accuracy with τ chosen on the other folds (mean ± std),
    TAR at FAR 1e-2 / 1e-3 and the EER over all pairs."""
    cv = cross_validated(distances, same, folds)
    acc = [f.accuracy for f in cv]
    out: dict[str, Any] = {
        "cv_accuracy": float(np.mean(acc)),
        "cv_std": float(np.std(acc)),
        "cv_taus": [f.tau for f in cv],
        "eer": equal_error_rate(tradeoff(distances[same], distances[~same])).false_accept,
    }
    for far in FAR_POINTS:
        out[f"tar_at_far_{far:g}"] = at_false_accept(distances[same], distances[~same], far).true_accept
    return out


def lfw_pairs_protocol(
    lfw: Path,
    vectors: Mapping[Path, NDArray[np.float32] | None],
    pool: Photos,
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Held-out heads per View-2 fold (see module doc); returns plain and head figures."""
    from app.evaluation.pairs import read_pairs

    rows = read_pairs(lfw / "pairs.csv")
    fold_ids = np.array([f for f, *_ in rows], dtype=np.int64)
    same = np.array([s for *_, s in rows], dtype=bool)
    metric = INPUT_METRIC[cfg.input]
    ok = np.array([vectors.get(a) is not None and vectors.get(b) is not None for _, a, b, _ in rows])
    if not ok.all():
        raise ValueError(f"{int((~ok).sum())} pairs have an image without a face; the protocol needs all")
    x1 = np.stack([as_input(vectors[a], cfg.input) for _, a, _, _ in rows])  # type: ignore[arg-type]
    x2 = np.stack([as_input(vectors[b], cfg.input) for _, _, b, _ in rows])  # type: ignore[arg-type]
    plain = plain_distance(x1, x2, metric)
    adapted = np.full(len(rows), np.nan)
    per_fold = []
    fold_people = pairs_identities(lfw)
    for k in sorted(fold_people):
        train = pool.without(fold_people[k])
        x = np.stack([as_input(vectors[p], cfg.input) for p in train.paths])  # type: ignore[arg-type]
        log.info(
            "fold %d: training on %d photos of %d people outside it",
            k,
            len(train.paths),
            len(set(train.identities)),
        )
        result = train_head(x, train.identities, cfg)
        idx = fold_ids == k
        adapted[idx] = plain_distance(result.head(x1[idx]), result.head(x2[idx]), "cosine")
        per_fold.append(
            {
                "fold": k,
                "train_people": result.train_people,
                "train_photos": result.train_photos,
                "best_epoch": result.best_epoch,
                "val_loss_start": result.val_loss_start,
                "val_loss_best": result.val_loss_best,
            }
        )
    return {
        "pairs": len(rows),
        "plain": verification_summary(plain, same, fold_ids),
        "head": verification_summary(adapted, same, fold_ids),
        "folds": per_fold,
        "head_lfw_tau": best_threshold(adapted, same),
        "plain_lfw_tau": best_threshold(plain, same),
    }


def openset_protocol(
    lfw: Path,
    vectors: Mapping[Path, NDArray[np.float32] | None],
    head: Head | None,
    cfg: TrainConfig,
    settings: Any,
) -> dict[str, Any]:
    """`facegate eval openset`'s search (the service's index) with plain or adapted vectors:
    rank-1 and FNIR at FPIR 1% / 0.3% / 0.1% for 1 and 3 enrolment photos."""
    from app.evaluation.openset import read_gallery, read_probes, search_probes

    probes = read_probes(lfw / "openset_probes.csv")
    out: dict[str, Any] = {}
    for shots in (1, 3):
        gallery = read_gallery(lfw / "openset_gallery.csv", shots)
        files = {r.file for r in gallery} | {p.file for p in probes}
        mapped: dict[Path, NDArray[np.float32] | None] = {}
        for f in files:
            v = vectors.get(f)
            if v is None:
                mapped[f] = None
            elif head is None:
                mapped[f] = as_input(v, cfg.input)
            else:
                mapped[f] = head(as_input(v, cfg.input)[None])[0].astype(np.float32)
        dim = head.output_dim if head is not None else len(as_input(next(iter(vectors.values())), cfg.input))  # type: ignore[arg-type]
        metric: Metric = "cosine" if head is not None else INPUT_METRIC[cfg.input]
        result = search_probes(
            settings, gallery, probes, mapped, shots=shots, tau=None, dim=dim, metric=metric
        )
        out[f"{shots}_shot"] = {
            "rank1": result.rank1,
            **{f"fnir_at_fpir_{f:g}": result.fnir_at_fpir(f).false_reject for f in FPIR_POINTS},
        }
    return out


@dataclass(frozen=True)
class LiveFrames:
    """Encodings of real live captures, with each frame's subject, recording and time (s)."""

    vectors: list[NDArray[np.float32]]
    subjects: list[str]
    recordings: list[str]
    times: list[float]


def liveness_identities(folder: Path, pipeline: Any, cache_dir: Path | None) -> LiveFrames:
    """Encodings of the real live captures: every NUAA live frame (central face) and a frame every
    0.5 s of each live video (largest face); with subject, recording and time (s) of each."""
    import cv2

    from app.evaluation.pairs import EmbeddingCache, encode_images

    rows = list(csv.DictReader((folder / "manifest.csv").open(newline="")))
    live = [r for r in rows if r["label"] == "live"]
    stills = [folder / r["path"] for r in live if not r["path"].startswith("videos/")]
    encoded = encode_images(pipeline, stills, cache_dir)
    vectors: list[NDArray[np.float32]] = []
    subjects: list[str] = []
    recordings: list[str] = []
    times: list[float] = []
    for r in live:
        if r["path"].startswith("videos/"):
            continue
        v = encoded[folder / r["path"]]
        if v is not None:
            vectors.append(v)
            subjects.append(r["subject"])
            recordings.append(r["sequence"])
            times.append(float(r["frame_index"] or 0) / 20.0)
    cache = EmbeddingCache(cache_dir, pipeline.model_version + "-video-frames")
    for r in live:
        if not r["path"].startswith("videos/"):
            continue
        cap = cv2.VideoCapture(str(folder / r["path"]))
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        step = max(1, round(fps * 0.5))
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % step == 0:
                key = hashlib.sha256(frame.tobytes()).hexdigest()
                if key not in cache.items:
                    faces = pipeline.faces(frame)
                    cache.items[key] = (
                        faces[0].embedding if faces else np.full(pipeline.dim, np.nan, np.float32)
                    )
                v = cache.items[key]
                if not np.isnan(v).any():
                    vectors.append(v)
                    subjects.append(r["subject"])
                    recordings.append(r["sequence"])
                    times.append(index / fps)
            index += 1
        cap.release()
    cache.save()
    return LiveFrames(vectors, subjects, recordings, times)


def cross_dataset(
    live: LiveFrames,
    head: Head,
    cfg: TrainConfig,
    taus: Mapping[str, float],
) -> dict[str, Any]:
    """Verification on the live captures, plain against adapted, τ chosen on LFW."""
    x = np.stack([as_input(v, cfg.input) for v in live.vectors]).astype(np.float64)
    subj = np.array(live.subjects)
    rec = np.array(live.recordings)
    t = np.array(live.times)
    i, j = np.triu_indices(len(x), k=1)
    same_person = subj[i] == subj[j]
    genuine = same_person & ((rec[i] != rec[j]) | (np.abs(t[i] - t[j]) >= 1.0))
    keep = genuine | ~same_person
    # NUAA subjects have several recordings: only pairs across recordings are genuine; a video
    # is one recording, so its frames at least 1 s apart are.
    has_several = {s for s in set(live.subjects) if len(set(rec[subj == s])) > 1}
    several = np.array([s in has_several for s in subj[i]])
    keep &= ~(same_person & several & (rec[i] == rec[j]))
    i, j, same = i[keep], j[keep], genuine[keep]
    out: dict[str, Any] = {
        "people": len(set(live.subjects)),
        "frames": len(x),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
    }
    adapted = head(x)
    for name, dist, metric in (
        ("plain", plain_distance(x[i], x[j], INPUT_METRIC[cfg.input]), INPUT_METRIC[cfg.input]),
        ("head", plain_distance(adapted[i], adapted[j], "cosine"), "cosine"),
    ):
        tau = taus[name]
        out[name] = {
            "metric": metric,
            "eer": equal_error_rate(tradeoff(dist[same], dist[~same])).false_accept,
            "tar_at_far_1e-3": at_false_accept(dist[same], dist[~same], 1e-3).true_accept,
            "lfw_tau": tau,
            "accuracy_at_lfw_tau": accuracy_at(dist, same, tau),
            "genuine_accepted_at_lfw_tau": float((dist[same] < tau).mean()),
            "impostors_accepted_at_lfw_tau": float((dist[~same] < tau).mean()),
        }
    return out


# --------------------------------------------------------------------------- main


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def format_report(report: Mapping[str, Any]) -> list[str]:
    lines = []
    lfw = report.get("lfw_pairs")
    if lfw:
        lines.append("LFW View-2 pairs (5 folds; each fold scored by a head that never saw its people):")
        for name in ("plain", "head"):
            s = lfw[name]
            lines.append(
                f"  {name:5s} accuracy {_pct(s['cv_accuracy'])} ± {_pct(s['cv_std'])}  TAR@FAR1e-2 "
                f"{_pct(s['tar_at_far_0.01'])}  TAR@FAR1e-3 {_pct(s['tar_at_far_0.001'])}  "
                f"EER {_pct(s['eer'])}"
            )
    op = report.get("openset")
    if op:
        lines.append("LFW open set (head trained without any open-set identity):")
        for name in ("plain", "head"):
            for shots in ("1_shot", "3_shot"):
                s = op[name][shots]
                lines.append(
                    f"  {name:5s} {shots}: rank-1 {_pct(s['rank1'])}  "
                    f"FNIR@FPIR1% {_pct(s['fnir_at_fpir_0.01'])}  "
                    f"@0.3% {_pct(s['fnir_at_fpir_0.003'])}  @0.1% {_pct(s['fnir_at_fpir_0.001'])}"
                )
    cross = report.get("cross_dataset")
    if cross:
        lines.append(
            f"Cross-dataset (trained on LFW dev; {cross['people']} people, {cross['frames']} live frames, "
            f"{cross['genuine_pairs']} genuine / {cross['impostor_pairs']} impostor pairs):"
        )
        for name in ("plain", "head"):
            s = cross[name]
            lines.append(
                f"  {name:5s} EER {_pct(s['eer'])}  TAR@FAR1e-3 {_pct(s['tar_at_far_1e-3'])}  at LFW tau "
                f"{s['lfw_tau']:.3f}: accuracy {_pct(s['accuracy_at_lfw_tau'])}, genuine accepted "
                f"{_pct(s['genuine_accepted_at_lfw_tau'])}, impostors accepted "
                f"{_pct(s['impostors_accepted_at_lfw_tau'])}"
            )
    return lines


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="facegate train triplet", description=(__doc__ or "").split("\n\n")[0].replace("\n", " ")
    )
    p.add_argument("--data", type=Path, default=Path("../shared/faces/lfw-dev"), help="one folder per person")
    p.add_argument(
        "--site",
        action="store_true",
        help="train on the site's database instead (FACEGATE_DATABASE_URL): kept enrolment photos and "
        "the face crops of events labelled correct or wrong_person",
    )
    p.add_argument(
        "--faces", type=Path, default=None, help="../shared/faces for --evaluate (default: --data/..)"
    )
    p.add_argument(
        "--input", choices=INPUT_KINDS, default=d.input, help="which frozen encoder's vector to adapt"
    )
    p.add_argument(
        "--hidden", type=int, default=d.hidden, help="hidden units of the residual layer (0: linear)"
    )
    p.add_argument("--out-dim", type=int, default=d.out_dim)
    p.add_argument("--margin", type=float, default=d.margin, help="triplet margin alpha (squared distance)")
    p.add_argument("--mining", choices=MINING_KINDS, default=d.mining)
    p.add_argument("--people", type=int, default=d.people, help="P people per batch")
    p.add_argument("--photos", type=int, default=d.photos, help="K photos per person")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--decay", type=float, default=d.decay, help="weight decay towards the starting weights")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of people held out")
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without a better validation loss")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--evaluate", action="store_true", help="also run the honest LFW and cross-dataset protocols"
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the ONNX file; its manifest entry is <out>.json"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = TrainConfig(
        input=args.input,
        out_dim=args.out_dim,
        hidden=args.hidden,
        margin=args.margin,
        mining=args.mining,
        people=args.people,
        photos=args.photos,
        epochs=args.epochs,
        lr=args.lr,
        decay=args.decay,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
    )
    from app.settings import get_settings

    settings = get_settings()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facegate-site-") as site_dir:
        try:
            if args.site:
                # The site's own faces go to a private temporary folder tree, gone at the end,
                # and their encodings are not cached: no biometric data outlives the run.
                root, cache_dir = Path(site_dir), None
                photos = site_photos(settings, root)
            else:
                root, cache_dir = args.data, settings.data_dir / "cache"
                photos = read_folder_tree(root)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _train_and_report(args, cfg, settings, Source(root, photos, cache_dir), started)


@dataclass(frozen=True)
class Source:
    root: Path
    photos: Photos
    cache_dir: Path | None  # None: encodings are not kept (the site's own faces)


def _train_and_report(
    args: argparse.Namespace, cfg: TrainConfig, settings: Any, source: Source, started: float
) -> int:
    root, photos, cache_dir = source.root, source.photos, source.cache_dir
    from app.evaluation.pairs import encode_images
    from app.vision.pipeline import FacePipeline

    # The fusion profile encodes both SFace and dlib once; every input kind is a slice of it.
    pipeline = FacePipeline.load(settings, flip_average=False, profile="fusion")
    vectors = encode_images(pipeline, photos.paths, cache_dir)
    found = np.array([vectors[p] is not None for p in photos.paths], dtype=bool)
    photos = photos.subset(found)
    log.info(
        "%d photos of %d people encoded (%.0f s)",
        len(photos.paths),
        len(set(photos.identities)),
        time.perf_counter() - started,
    )
    x = np.stack([as_input(vectors[p], cfg.input) for p in photos.paths])  # type: ignore[arg-type]
    result = train_head(x, photos.identities, cfg)
    log.info(
        "validation triplet loss %.4f -> %.4f (epoch %d; %d people held out)",
        result.val_loss_start,
        result.val_loss_best,
        result.best_epoch,
        result.val_people,
    )
    report: dict[str, Any] = {}
    if args.evaluate:
        faces = args.faces if args.faces is not None else args.data.parent
        lfw = faces / "lfw-dev"
        pool = read_folder_tree(lfw)
        from app.evaluation.pairs import read_pairs

        pair_paths = {p for _, a, b, _ in read_pairs(lfw / "pairs.csv") for p in (a, b)}
        lfw_vectors = encode_images(pipeline, sorted(set(pool.paths) | pair_paths), cache_dir)
        pool = pool.subset(np.array([lfw_vectors[p] is not None for p in pool.paths], dtype=bool))
        report["lfw_pairs"] = lfw_pairs_protocol(lfw, lfw_vectors, pool, cfg)
        outside = pool.without(openset_identities(lfw))
        xo = np.stack([as_input(lfw_vectors[p], cfg.input) for p in outside.paths])  # type: ignore[arg-type]
        open_head = train_head(xo, outside.identities, cfg).head
        report["openset"] = {
            "train_people": len(set(outside.identities)),
            "plain": openset_protocol(lfw, lfw_vectors, None, cfg, settings),
            "head": openset_protocol(lfw, lfw_vectors, open_head, cfg, settings),
        }
        taus = {"plain": report["lfw_pairs"]["plain_lfw_tau"], "head": report["lfw_pairs"]["head_lfw_tau"]}
        live = liveness_identities(faces / "liveness", pipeline, cache_dir)
        report["cross_dataset"] = cross_dataset(live, result.head, cfg, taus)
        for line in format_report(report):
            print(line)
    export_onnx(result.head, args.out)
    probe = x[: min(64, len(x))].astype(np.float32)
    onnx_error = float(np.abs(run_onnx(args.out, probe) - result.head(probe)).max())
    digest = sha256_of(args.out)
    entry = {
        "triplet_head": {
            "file": args.out.name,
            "sha256": digest,
            "kind": "onnx",
            "version": f"{HEAD_VERSION}:{digest[:12]}",
            "input": {
                "name": ONNX_INPUT,
                "encoder": cfg.input,
                "dim": result.head.input_dim,
                "metric": INPUT_METRIC[cfg.input],
            },
            "output": {
                "name": ONNX_OUTPUT,
                "dim": result.head.output_dim,
                "metric": "cosine",
                "unit_rows": True,
            },
            "encoder_version": pipeline.model_version,
            "encoder_sha256s": {n: pipeline_manifest_sha(settings, n) for n in ("sface", "encoder")},
            "source_data": {
                "root": "site database" if args.site else str(root),
                "sha256": source_data_hash(photos, root),
                "people": len(set(photos.identities)),
                "photos": len(photos.paths),
            },
            "training": {
                **asdict(cfg),
                "best_epoch": result.best_epoch,
                "train_people": result.train_people,
                "train_photos": result.train_photos,
                "val_people": result.val_people,
                "val_photos": result.val_photos,
                "val_loss_start": result.val_loss_start,
                "val_loss_best": result.val_loss_best,
                "history": result.history,
            },
            "onnx_max_abs_error": onnx_error,
            "metrics": report,
        }
    }
    manifest_path = args.out.with_suffix(".json")
    manifest_path.write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    print(
        f"wrote {args.out} (sha256 {digest[:12]}, ONNX vs numpy max |diff| {onnx_error:.2e}) "
        f"and {manifest_path}"
    )
    return 0


def pipeline_manifest_sha(settings: Any, name: str) -> str:
    from app.vision.manifest import read_manifest

    return read_manifest(settings.models_path).entry(name).sha256


if __name__ == "__main__":
    raise SystemExit(main())
