"""Liveness cost per frame: judge() on simulated 10-frame bursts over 640x480 frames, 2 threads.

    .venv/bin/python scripts/bench_liveness.py [--model-dir var/models] [--runs 200]

Prints the median milliseconds per frame (image cues on every frame + geometry + classifier).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from app.vision.liveness import LivenessModel
from app.vision.liveness_types import TrackedFace
from app.vision.manifest import load_manifest
from models.liveness_sim import simulate_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    model = LivenessModel.from_manifest(args.model_dir, load_manifest(args.model_dir), intra_op_threads=2)
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(120, 20, size=(480, 640, 3)), 0, 255).astype(np.uint8) for _ in range(10)]
    bursts = []
    for b in simulate_set(1, {"live": 20}):
        track = []
        for i, (pts, t) in enumerate(zip(b.landmarks[:10], b.t[:10], strict=False)):
            iod = float(np.linalg.norm(pts[0] - pts[2]))
            box = (
                int(pts[:, 0].min() - 0.3 * iod),
                int(pts[:, 1].min() - 0.6 * iod),
                int(pts[:, 0].max() + 0.3 * iod),
                int(pts[:, 1].max() + 0.6 * iod),
            )
            track.append(TrackedFace(t=float(t), box=box, landmarks=pts, frame=frames[i]))
        bursts.append(track)
    per_frame = []
    for run in range(args.runs):
        track = bursts[run % len(bursts)]
        start = time.perf_counter()
        model.judge(track)
        per_frame.append((time.perf_counter() - start) * 1000.0 / len(track))
    print(f"liveness: {statistics.median(per_frame):.2f} ms per frame (median of {args.runs} bursts)")


if __name__ == "__main__":
    main()
