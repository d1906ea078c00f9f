"""Run a pairs CSV (fold,img1,img2,same; paths relative to the CSV) through the whole pipeline."""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.evaluation.metrics import OperatingPoint, Tradeoff, at_false_accept, equal_error_rate, tradeoff
from app.evaluation.verification import FoldResult, accuracy_at, cross_validated, split_folds
from app.gallery.metric import Metric, from_l2
from app.vision.imageio import decode_image
from app.vision.pipeline import Face, FacePipeline

log = logging.getLogger(__name__)

# The FARs a verification report quotes TAR at.
FAR_TARGETS = (1e-2, 1e-3)
# A pairs file with a single fold is split into this many for cross-validation (LFW's count).
DEFAULT_FOLDS = 10


@dataclass
class PairsReport:
    pairs: int
    images: int
    no_face: list[str]
    accuracy_at_tau: float
    tau: float
    folds: list[FoldResult] = field(default_factory=list)
    # Per pair, in CSV order: distance (NaN where an image had no face), same-person label.
    distances: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    same: NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=bool))
    folds_from_csv: bool = True  # False: the CSV had one fold and it was split (split_folds)
    name: str = "pairs"

    @property
    def curve(self) -> Tradeoff:
        """ROC: FAR over the different pairs, TAR over the same pairs (missing distances rejected)."""
        return tradeoff(self.distances[self.same], self.distances[~self.same])

    def tar_at_far(self, far: float) -> OperatingPoint:
        return at_false_accept(self.distances[self.same], self.distances[~self.same], far)

    @property
    def eer(self) -> OperatingPoint:
        return equal_error_rate(self.curve)

    @property
    def cv_accuracy(self) -> float:
        return float(np.mean([f.accuracy for f in self.folds]))

    @property
    def cv_std(self) -> float:
        return float(np.std([f.accuracy for f in self.folds]))


def central_face(faces: list[Face], shape: tuple[int, ...]) -> Face | None:
    """LFW images are centred on their subject: take the face whose centre is nearest the middle."""
    if not faces:
        return None
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def offset(face: Face) -> float:
        left, top, right, bottom = face.box
        return ((left + right) / 2.0 - cx) ** 2 + ((top + bottom) / 2.0 - cy) ** 2

    return min(faces, key=offset)


def read_pairs(csv_path: Path, limit: int | None = None) -> list[tuple[int, Path, Path, bool]]:
    base = csv_path.parent
    rows = []
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append((int(row["fold"]), base / row["img1"], base / row["img2"], row["same"] == "1"))
    if limit is not None:
        # Keep both classes in a small run: take from the same and the different pairs alike.
        same = [r for r in rows if r[3]][: (limit + 1) // 2]
        diff = [r for r in rows if not r[3]][: limit // 2]
        rows = same + diff
    return rows


class EmbeddingCache:
    """Central-face encodings keyed by image sha256, one file per model version (reruns are fast)."""

    def __init__(self, directory: Path | None, model_version: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_version)
        self.path = None if directory is None else directory / f"embeddings-{safe}.npz"
        self.items: dict[str, NDArray[np.float32]] = {}
        if self.path is not None and self.path.is_file():
            with np.load(self.path) as data:
                self.items = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def save(self) -> None:
        if self.path is None or not self.items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.items), dtype=str), vectors=np.stack(list(self.items.values())))
        tmp.replace(self.path)


def encode_images(
    pipeline: FacePipeline, images: list[Path], cache_dir: Path | None = None
) -> dict[Path, NDArray[np.float32] | None]:
    """The central face's encoding of each image, None where no face was found."""
    cache = EmbeddingCache(cache_dir, pipeline.model_version)
    out: dict[Path, NDArray[np.float32] | None] = {}
    for i, path in enumerate(images):
        data = path.read_bytes()
        key = hashlib.sha256(data).hexdigest()
        if key not in cache.items:
            bgr = decode_image(data)
            face = central_face(pipeline.faces(bgr), bgr.shape)
            # NaN marks "no face" so that a miss is cached too.
            cache.items[key] = np.full(pipeline.dim, np.nan, np.float32) if face is None else face.embedding
        vector = cache.items[key]
        out[path] = None if np.isnan(vector).any() else vector
        if (i + 1) % 500 == 0:
            log.info("encoded %d/%d images", i + 1, len(images))
    cache.save()
    return out


def pair_distances(
    rows: list[tuple[int, Path, Path, bool]],
    embeddings: dict[Path, NDArray[np.float32] | None],
    metric: Metric = "l2",
) -> NDArray[np.float64]:
    """Each pair's distance in ``metric`` (NaN where an image had no face)."""

    def distance(a: Path, b: Path) -> float:
        ea, eb = embeddings[a], embeddings[b]
        if ea is None or eb is None:
            return np.nan
        return float(from_l2(np.array([np.linalg.norm(ea - eb)]), metric)[0])

    return np.array([distance(a, b) for _, a, b, _ in rows], dtype=np.float64)


def evaluate_pairs(
    pipeline: FacePipeline,
    csv_path: Path,
    tau: float,
    limit: int | None = None,
    cache_dir: Path | None = None,
) -> PairsReport:
    rows = read_pairs(csv_path, limit)
    images = sorted({p for _, a, b, _ in rows for p in (a, b)})
    embeddings = encode_images(pipeline, images, cache_dir)
    distances = pair_distances(rows, embeddings, pipeline.profile.metric)
    same = np.array([s for *_, s in rows], dtype=bool)
    folds = np.array([f for f, *_ in rows], dtype=np.int64)
    folds_from_csv = len(np.unique(folds)) > 1
    if not folds_from_csv and len(rows) >= 2:
        folds = split_folds(same, DEFAULT_FOLDS)
    return PairsReport(
        pairs=len(rows),
        images=len(images),
        no_face=[str(p) for p, e in embeddings.items() if e is None],
        accuracy_at_tau=accuracy_at(distances, same, tau),
        tau=tau,
        folds=cross_validated(distances, same, folds) if len(np.unique(folds)) > 1 else [],
        distances=distances,
        same=same,
        folds_from_csv=folds_from_csv,
        name=csv_path.stem,
    )
