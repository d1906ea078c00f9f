"""Liveness cost per frame: judge() on real 8-frame door bursts, 2 threads, and each stage's share.

    .venv/bin/python scripts/bench_liveness.py [--model-dir var/models] [--runs 60] [--no-pad]

Bursts: 8 consecutive frames of the first live NUAA runs and the live webcam clip in
../shared/faces/liveness, tracked on the service's path (the pipeline's faces, follow_subject).
Prints the median wall and CPU milliseconds per frame of the whole judge (image cues on every frame, the
5-point geometry, the mesh on every frame's detection, MiniFASNet when imported, the fusion)
and of its stages; the face detection itself is not liveness and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from app.evaluation.liveness_real import build_bursts, load_recordings
from app.settings import Settings
from app.vision.liveness import LivenessModel
from app.vision.liveness_types import TrackedFace
from app.vision.manifest import load_manifest
from app.vision.pipeline import FacePipeline
from app.vision.tracking import follow_subject

LIVENESS = Path(__file__).resolve().parents[2] / "shared" / "faces" / "liveness"


def real_bursts(pipeline: FacePipeline, settings: Settings, count: int) -> list[list[TrackedFace]]:
    recordings = [r for r in load_recordings(LIVENESS) if r.label == "live" and r.source != "liveportrait"]
    bursts: list[list[TrackedFace]] = []
    for rec in recordings:
        for burst in build_bursts([rec])[:3]:
            if burst.length != 8:
                continue
            frames = []
            for jpeg in burst.jpegs:
                bgr = np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), np.uint8)
                frames.append((bgr, pipeline.faces(bgr)))
            tracked = follow_subject(frames, burst.timestamps, settings.recognize_min_face_px).observed
            if len(tracked) == 8:
                bursts.append(list(tracked))
            if len(bursts) >= count:
                return bursts
    return bursts


def per_frame_ms(
    fn: Callable[[Sequence[TrackedFace]], object], bursts: list[list[TrackedFace]], runs: int
) -> tuple[float, float]:
    """Median wall and CPU (all of the process's threads) milliseconds per frame. On a machine
    shared with other work the wall time grows with the load; the CPU time much less."""
    wall, cpu = [], []
    for run in range(runs):
        track = bursts[run % len(bursts)]
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(track)
        wall.append((time.perf_counter() - start) * 1000.0 / len(track))
        cpu.append((time.process_time() - start_cpu) * 1000.0 / len(track))
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--no-pad", action="store_true", help="leave an imported PAD model out")
    args = parser.parse_args()
    settings = Settings(model_dir=args.model_dir, onnx_intra_op_threads=2)
    pipeline = FacePipeline.load(settings)
    bursts = real_bursts(pipeline, settings, 12)
    if not bursts:
        raise SystemExit(f"no live 8-frame burst found in {LIVENESS}")
    model = LivenessModel.from_manifest(
        args.model_dir,
        load_manifest(args.model_dir),
        intra_op_threads=2,
        detector=pipeline.profile.detector,
        use_pad=not args.no_pad,
    )
    stages: dict[str, Callable[[Sequence[TrackedFace]], object]] = {
        "judge (all)": model.judge,
        "image cues": model.image_cues,
        "mesh": model.mesh_cues,
    }
    if model.pad is not None:
        stages["pad"] = model.pad_cues
    print(f"{len(bursts)} real bursts of 8 frames, {args.runs} runs, PAD {'on' if model.pad else 'off'}")
    for name, fn in stages.items():
        per_frame_ms(fn, bursts, 3)  # warm
        wall, cpu = per_frame_ms(fn, bursts, args.runs)
        print(f"{name:12s} {wall:6.2f} ms wall, {cpu:6.2f} ms CPU per frame (median)")
    model.close()
    pipeline.close()


if __name__ == "__main__":
    main()
