"""Measure an encoder's impostor-distance tail on LFW dev identities: the calibration prior.

    python models/calibrate_prior.py [--faces ../shared/faces] [--profile sface|dlib]

A gallery of a few people cannot estimate its own false-match rate, so the service also uses a
prior measured here on dev data (``app.gallery.calibration.applied_tau`` takes the stricter of
the two). Every LFW dev image of an identity that takes no part in the open-set protocol
(``openset_gallery.csv`` / ``openset_probes.csv``, which the README's door figures are measured
on) is encoded as the service encodes it, with and without flip averaging; every pair of images
of two different people is an impostor comparison (one template each, as
``applied_tau`` expects), and a normal is fitted to the lower 1% of those distances.

    python models/calibrate_prior.py --profile fusion   # and sface, dlib: one file each

The result is written to ``models/calibration/<profile>.json`` (committed: numbers only, no
images) keyed by the built encoder artifacts' sha256; ``facegate models build`` copies it into
the encoder's manifest entry as ``calibration[profile]`` when they match.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.evaluation.pairs import encode_images
from app.gallery.calibration import TAIL_FRACTION, fit_tail
from app.gallery.metric import Metric, from_squared_l2
from app.settings import get_settings
from app.vision.manifest import load_manifest
from app.vision.pipeline import FacePipeline
from app.vision.profiles import PROFILE_NAMES, profile_spec

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
FMR_POINTS = (1e-3, 1e-4, 1e-5, 1e-6)
log = logging.getLogger("calibrate_prior")


def calibration_identities(faces: Path) -> dict[Path, str]:
    """LFW dev images (path -> identity) of identities outside the open-set protocol."""
    lfw = faces / "lfw-dev"
    excluded: set[str] = set()
    with (lfw / "openset_gallery.csv").open(newline="") as fh:
        excluded |= {row["identity"] for row in csv.DictReader(fh)}
    with (lfw / "openset_probes.csv").open(newline="") as fh:
        excluded |= {row["true_identity"] for row in csv.DictReader(fh)}
    images: dict[Path, str] = {}
    with (lfw / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["identity"] not in excluded and row["known_label_error"] != "1":
                images[lfw / row["file"]] = row["identity"]
    return images


def impostor_distances(
    vectors: NDArray[np.float32], identities: NDArray[np.int64], metric: Metric
) -> NDArray[np.float64]:
    """Every distance between images of two different identities, ascending."""
    sq = (vectors * vectors).sum(axis=1)
    parts = []
    for i in range(len(vectors) - 1):
        d2 = sq[i] + sq[i + 1 :] - 2.0 * (vectors[i + 1 :] @ vectors[i])
        parts.append(from_squared_l2(d2[identities[i + 1 :] != identities[i]], metric))
    return np.sort(np.concatenate(parts))


def prior_for(vectors: NDArray[np.float32], identities: NDArray[np.int64], metric: Metric) -> dict[str, Any]:
    distances = impostor_distances(vectors, identities, metric)
    model = fit_tail(distances, TAIL_FRACTION)
    if model is None:
        raise ValueError("too few impostor comparisons to fit a tail")
    return {
        "impostor_tail": {
            "mu": model.mu,
            "sigma": model.sigma,
            "tail_fraction": model.tail_fraction,
            "points": model.points,
            "upper": model.upper,
            "r2": model.r2,
        },
        "comparisons": len(distances),
        "min_distance": float(distances[0]),
        "tau_at_fmr": {f"{f:g}": model.tau_for(f) for f in FMR_POINTS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="sface")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    spec = profile_spec(args.profile)
    manifest = load_manifest(settings.models_path)
    images = calibration_identities(args.faces)
    names = {name: i for i, name in enumerate(sorted(set(images.values())))}
    result: dict[str, Any] = {
        "profile": spec.name,
        "metric": spec.metric,
        "encoder_sha256s": {name: manifest.entry(name).sha256 for name in spec.encoders},
        "dataset": "LFW dev (deep-funneled): identities outside the open-set protocol, label errors out",
    }
    for key, flip in (("plain", False), ("flipavg", True)):
        pipeline = FacePipeline.load(settings, flip_average=flip, profile=spec.name)
        found = encode_images(pipeline, sorted(images), settings.data_dir / "cache")
        kept = [(p, v) for p, v in found.items() if v is not None]
        counts = Counter(images[p] for p, _ in kept)
        vectors = np.stack([v for _, v in kept]).astype(np.float32)
        identities = np.array([names[images[p]] for p, _ in kept], dtype=np.int64)
        prior = prior_for(vectors, identities, spec.metric)
        prior.update(images=len(kept), identities=len(counts), no_face=len(found) - len(kept))
        result[key] = prior
        log.info("%s %s: %s", spec.name, key, json.dumps(prior["tau_at_fmr"]))
        pipeline.close()
    CALIBRATION_DIR.mkdir(exist_ok=True)
    out = CALIBRATION_DIR / f"{spec.name}.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
