#!/usr/bin/env python3
"""Per-stage latency of FaceGate's vision pipeline, per profile, against dlib's own, on the same frames.

Each runtime runs in a fresh subprocess (a session measured in a busy process runs several
times slower), warms up, then times every stage over many runs; medians are printed. FaceGate's
stages are the service's own (``FacePipeline.faces`` with its stage timer), with the profile's
default flip averaging (FACEGATE_ENCODE_FLIP_AVERAGE overrides it, as in the service).

    python scripts/bench_pipeline.py [--runs 30] [--profiles fusion,sface,dlib]

Frames: 640x480 and 1280x720 with one face, cut from ../shared/faces/examples when present,
else skimage's astronaut placed on a grey canvas.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "faces" / "examples" / "derived_variants_of_obama_portrait"
STAGES = ("decode", "detect", "landmarks", "align", "encode", "total")
PROFILES = ("fusion", "sface", "dlib")


def make_frames(out_dir: Path) -> dict[str, Path]:
    frames: dict[str, Path] = {}
    for name, (w, h), source in (
        ("640x480", (640, 480), SHARED / "examples__obama-480p.jpg"),
        ("1280x720", (1280, 720), SHARED / "examples__obama-720p.jpg"),
    ):
        if source.is_file():
            img = cv2.imread(str(source))
            y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
            frame = np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])
        else:
            from skimage import data

            face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
            scale = h / 512 * 0.8
            face = cv2.resize(face, None, fx=scale, fy=scale)
            frame = np.full((h, w, 3), 128, np.uint8)
            fy, fx = (h - face.shape[0]) // 2, (w - face.shape[1]) // 2
            frame[fy : fy + face.shape[0], fx : fx + face.shape[1]] = face
        path = out_dir / f"{name}.jpg"
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        frames[name] = path
    return frames


def _time(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - start) * 1000.0


def worker_facegate(frames: dict[str, str], runs: int, profile: str) -> dict[str, dict[str, float]]:
    from app.settings import Settings
    from app.vision.imageio import decode_image
    from app.vision.pipeline import FacePipeline, StageTimer

    settings = Settings(onnx_providers=("CPUExecutionProvider",))
    pipe = FacePipeline.load(settings, profile=profile)
    out: dict[str, dict[str, float]] = {}
    for name, path in frames.items():
        data = Path(path).read_bytes()
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        for i in range(runs + 3):
            timer = StageTimer()
            t0 = time.perf_counter()
            with timer.stage("decode"):
                bgr = decode_image(data)
            faces = pipe.faces(bgr, timer)
            total = (time.perf_counter() - t0) * 1000.0
            if len(faces) != 1:
                raise SystemExit(f"{name}: expected one face, found {len(faces)}")
            if i >= 3:  # first runs warm caches
                ms = {**timer.ms, "total": total}
                ms["detect"] = ms.get("detect", 0.0) + ms.pop("convert", 0.0)  # BGR -> RGB is detection's
                for stage in STAGES:
                    times[stage].append(ms.get(stage, 0.0))
        out[name] = {s: statistics.median(v) for s, v in times.items()}
    return out


def worker_dlib(frames: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    import dlib

    from models.source import source_dir

    src = source_dir()
    det = dlib.cnn_face_detection_model_v1(str(src / "mmod_human_face_detector.dat"))
    sp = dlib.shape_predictor(str(src / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(src / "dlib_face_recognition_resnet_model_v1.dat"))
    out = {}
    for name, path in frames.items():
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        for i in range(runs + 2):
            t0 = time.perf_counter()
            rgb, t_dec = _time(dlib.load_rgb_image, path)
            up = 1 if max(rgb.shape[:2]) < 600 else 0
            dets, t_det = _time(det, rgb, up)
            shape, t_lm = _time(sp, rgb, dets[0].rect)
            chip, t_al = _time(dlib.get_face_chip, rgb, shape, 150, 0.25)
            _, t_enc = _time(rec.compute_face_descriptor, chip)
            total = (time.perf_counter() - t0) * 1000.0
            if i >= 2:
                for stage, value in zip(STAGES, (t_dec, t_det, t_lm, t_al, t_enc, total), strict=True):
                    times[stage].append(value)
        out[name] = {s: statistics.median(v) for s, v in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        frames = json.loads(args.frames)
        if args.worker == "dlib20":
            print(json.dumps(worker_dlib(frames, args.runs)))
        else:
            print(json.dumps(worker_facegate(frames, args.runs, args.worker)))
        return
    runtimes = [*args.profiles.split(","), "dlib20"]
    with tempfile.TemporaryDirectory() as tmp:
        frames = {k: str(v) for k, v in make_frames(Path(tmp)).items()}
        results = {}
        for runtime in runtimes:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    runtime,
                    "--runs",
                    str(args.runs),
                    "--frames",
                    json.dumps(frames),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            results[runtime] = json.loads(proc.stdout.strip().splitlines()[-1])
    import os

    print(
        f"FaceGate vision pipeline per profile vs dlib 20: medians of {args.runs} runs, "
        f"a fresh process each, {os.cpu_count()} CPU cores"
    )
    for frame in ("640x480", "1280x720"):
        print(f"\n{frame} frame, one face (ms)")
        print("  " + f"{'stage':10s}" + "".join(f"{r:>10s}" for r in runtimes))
        for stage in STAGES:
            print("  " + f"{stage:10s}" + "".join(f"{results[r][frame][stage]:10.2f}" for r in runtimes))


if __name__ == "__main__":
    main()
