#!/usr/bin/env python3
"""How the fusion profile's weight was chosen, and what each encoder gives alone on the same faces.

    python scripts/measure_profile_fusion.py [--faces ../shared/faces]

The fusion profile's template holds both encodings of one face (``[sqrt(a) s, sqrt(2 b) d]``, see
app/vision/profiles.py), so its cached LFW dev encodings give SFace's and dlib's vectors for the
very same detections. For weights w from 0 (dlib alone) to 1 (SFace alone) the fused score
``w z(cosine distance) + (1 - w) z(squared L2)`` (each standardised by its impostor pairs' mean and
standard deviation on pairs.csv) is scored by cross-validated accuracy on the View-2 pairs, and
by FNIR at FPIR 1% / 0.3% / 0.1% on the open-set protocol with 1 and 3 enrolment photos. The
profile uses w = 0.5 (its coefficients are w / sd and (1 - w) / sd, scaled so that an impostor's
mean score is about 1). Prints figures; changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.evaluation.metrics import at_false_accept, mated_scores  # noqa: E402
from app.evaluation.openset import read_gallery, read_probes  # noqa: E402
from app.evaluation.pairs import encode_images, read_pairs  # noqa: E402
from app.evaluation.verification import cross_validated  # noqa: E402
from app.settings import get_settings  # noqa: E402
from app.vision.pipeline import FacePipeline  # noqa: E402
from app.vision.profiles import FUSION_DLIB_SQUARED_L2, FUSION_SFACE_COSINE  # noqa: E402

WEIGHTS = (0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 1.0)


def split(v: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A fusion template -> (unit SFace vector, dlib vector)."""
    s = v[:128].astype(np.float64) / np.sqrt(FUSION_SFACE_COSINE)
    d = v[128:].astype(np.float64) / np.sqrt(2 * FUSION_DLIB_SQUARED_L2)
    return s, d


def both(a: NDArray[np.float32], b: NDArray[np.float32]) -> tuple[float, float]:
    """(SFace cosine distance, dlib squared L2) between two fusion templates."""
    (sa, da), (sb, db) = split(a), split(b)
    return 0.5 * float(np.sum((sa - sb) ** 2)), float(np.sum((da - db) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    args = parser.parse_args()
    lfw = args.faces / "lfw-dev"
    settings = get_settings()
    pipeline = FacePipeline.load(settings, profile="fusion")
    print(f"templates {pipeline.model_version}")
    pairs = read_pairs(lfw / "pairs.csv")
    probes = read_probes(lfw / "openset_probes.csv")
    gallery3 = read_gallery(lfw / "openset_gallery.csv", 3)
    files = sorted(
        {r.file for r in gallery3} | {p.file for p in probes} | {p for _, a, b, _ in pairs for p in (a, b)}
    )
    vectors = encode_images(pipeline, files, settings.data_dir / "cache")

    same = np.array([s for *_, s in pairs], dtype=bool)
    folds = np.array([f for f, *_ in pairs], dtype=np.int64)
    pair_d = np.array(
        [
            both(va, vb)
            if (va := vectors[a]) is not None and (vb := vectors[b]) is not None
            else (np.inf, np.inf)
            for _, a, b, _ in pairs
        ]
    )
    impostor = pair_d[~same & np.isfinite(pair_d[:, 0])]
    mean, sd = impostor.mean(axis=0), impostor.std(axis=0)
    print(
        f"impostor pairs: cosine distance mean {mean[0]:.4f} sd {sd[0]:.4f}; "
        f"squared L2 {mean[1]:.4f} sd {sd[1]:.4f}"
    )

    def fused(d: NDArray[np.float64], w: float) -> NDArray[np.float64]:
        z = (d - mean) / sd
        return np.asarray(w * z[..., 0] + (1 - w) * z[..., 1], dtype=np.float64)

    openset = {}
    for shots in (1, 3):
        gallery = read_gallery(lfw / "openset_gallery.csv", shots)
        ids = {name: i for i, name in enumerate(sorted({r.identity for r in gallery}))}
        mate = np.array([ids[p.true_identity] if p.is_enrolled else -1 for p in probes], dtype=np.int64)
        d = np.full((len(probes), len(ids), 2), np.inf)
        for j, p in enumerate(probes):
            if (vp := vectors[p.file]) is None:
                continue
            for r in gallery:
                if (vr := vectors[r.file]) is not None:
                    pair = np.array(both(vp, vr))
                    k = ids[r.identity]
                    d[j, k] = np.minimum(d[j, k], pair)  # each encoder's nearest template
        openset[shots] = (d, mate)

    for w in WEIGHTS:
        accuracy = np.mean([f.accuracy for f in cross_validated(fused(pair_d, w), same, folds)])
        line = f"w={w:<4} pairs.csv CV accuracy {accuracy:.2%}"
        for shots, (d, mate) in openset.items():
            scores = fused(d, w)
            best = scores.argmin(axis=1)
            rank1 = scores[np.arange(len(scores)), best]
            enrolled = mate >= 0
            mated = mated_scores(rank1[enrolled], best[enrolled] == mate[enrolled])
            fnir = [at_false_accept(mated, rank1[~enrolled], r).false_reject for r in (1e-2, 3e-3, 1e-3)]
            line += f" | {shots} shot(s) FNIR@FPIR 1% {fnir[0]:.2%} 0.3% {fnir[1]:.2%} 0.1% {fnir[2]:.2%}"
        print(line)


if __name__ == "__main__":
    main()
