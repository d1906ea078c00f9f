"""face_recognition's side of scripts/bench_vs_face_recognition.py; runs inside var/bench-fr-venv.

Imports nothing from FaceGate (that venv has only face_recognition, dlib, numpy and pillow).

    fr_worker.py encode --images LIST.json --out ENC.npz [--upsample 1]
    fr_worker.py speed --frames FRAMES.json --reps R --model hog|cnn [--upsample 0]

``encode``: face_recognition's default usage per image: ``load_image_file``, ``face_locations``
(hog, upsample 1), then ``face_encodings`` (5-point landmarks, 1 jitter) on the face nearest the
image centre (LFW images are centred on their subject; FaceGate picks its face the same way).
``speed``: ``face_locations`` + ``face_encodings`` per frame on an already decoded RGB frame,
one warm-up run then ``reps`` timed runs; prints JSON with the times in ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import face_recognition
import numpy as np


def central(locations: list[tuple[int, int, int, int]], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def offset(loc: tuple[int, int, int, int]) -> float:
        top, right, bottom, left = loc
        return ((left + right) / 2.0 - cx) ** 2 + ((top + bottom) / 2.0 - cy) ** 2

    return min(locations, key=offset)


def encode(images: list[str], out: Path, upsample: int) -> None:
    vectors = np.full((len(images), 128), np.nan, dtype=np.float64)
    start = time.perf_counter()
    for i, path in enumerate(images):
        img = face_recognition.load_image_file(path)
        locations = face_recognition.face_locations(img, number_of_times_to_upsample=upsample, model="hog")
        if locations:
            vectors[i] = face_recognition.face_encodings(img, [central(locations, img.shape)])[0]
        if (i + 1) % 250 == 0:
            rate = (i + 1) / (time.perf_counter() - start)
            print(f"face_recognition: encoded {i + 1}/{len(images)} images ({rate:.1f}/s)", file=sys.stderr)
    np.savez(out, vectors=vectors)


def speed(frames: dict[str, str], reps: int, model: str, upsample: int) -> dict[str, list[float]]:
    from PIL import Image

    out: dict[str, list[float]] = {}
    for name, path in frames.items():
        rgb = np.asarray(Image.open(path).convert("RGB"))  # decode excluded from the timing
        times = []
        for i in range(reps + 1):
            t0 = time.perf_counter()
            locations = face_recognition.face_locations(
                rgb, number_of_times_to_upsample=upsample, model=model
            )
            encodings = face_recognition.face_encodings(rgb, locations)
            elapsed = (time.perf_counter() - t0) * 1000.0
            if len(encodings) != 1:
                raise SystemExit(
                    f"{name}: face_recognition ({model}) found {len(encodings)} faces, expected 1"
                )
            if i > 0:  # the first run warms caches
                times.append(elapsed)
        out[name] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p_enc = sub.add_parser("encode")
    p_enc.add_argument("--images", type=Path, required=True)
    p_enc.add_argument("--out", type=Path, required=True)
    p_enc.add_argument("--upsample", type=int, default=1)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--frames", type=Path, required=True)
    p_speed.add_argument("--reps", type=int, required=True)
    p_speed.add_argument("--model", choices=("hog", "cnn"), required=True)
    p_speed.add_argument("--upsample", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "encode":
        encode(json.loads(args.images.read_text()), args.out, args.upsample)
    else:
        result = speed(json.loads(args.frames.read_text()), args.reps, args.model, args.upsample)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
