#!/usr/bin/env python3
"""How long `facegate explain` takes for one pair on 2 cores (issue 14: at most 2 s).

    python scripts/bench_explain.py [--processes 5] [--repeats 5] [--profile fusion] [--grid 8]
                                    [--model-dir DIR] [--cli]

Each of ``--processes`` fresh Python processes, pinned to 2 cores (onnxruntime with 2 intra-op
threads), loads the profile's pipeline (timed: ``load``), then explains one real pair: decode both
JPEGs, detect, align, the occlusion map (grid^2 occluded copies through each encoder, batched) and
the PNG figure. The first explanation (``first``) and the median of ``--repeats`` more (``warm``)
are timed, and, as a yardstick of how busy the machine is, one face through the profile's
encoders (``make bench`` measured 9.85 ms for the fusion on idle cores). The medians over the
processes are printed. ``--cli`` also times the whole command,
``facegate explain A B --out F``, as a user runs it (interpreter start, imports and model loading
included), from a fresh process each time.

The pair is LFW's Aaron_Sorkin 0001/0002 from ../shared/faces when present, else skimage's
astronaut against a mirrored, rotated copy of herself.
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

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "faces" / "lfw-dev" / "images"
PAIR = ("Aaron_Sorkin/Aaron_Sorkin_0001.jpg", "Aaron_Sorkin/Aaron_Sorkin_0002.jpg")
CORES = {0, 1}


def _pair_files(folder: Path) -> tuple[Path, Path, str]:
    """Two JPEG files to explain, and what they are."""
    if (LFW / PAIR[0]).exists():
        return LFW / PAIR[0], LFW / PAIR[1], f"LFW {PAIR[0]} vs {PAIR[1]}"
    import cv2
    import numpy as np
    from skimage import data

    astronaut = cv2.cvtColor(np.ascontiguousarray(data.astronaut()), cv2.COLOR_RGB2BGR)  # type: ignore[no-untyped-call]
    other = cv2.warpAffine(
        np.ascontiguousarray(astronaut[:, ::-1]), cv2.getRotationMatrix2D((256, 256), 6, 0.9), (512, 512)
    )
    a, b = folder / "a.jpg", folder / "b.jpg"
    cv2.imwrite(str(a), astronaut)
    cv2.imwrite(str(b), other)
    return a, b, "skimage astronaut vs a mirrored, rotated copy"


def _child(args: argparse.Namespace) -> None:
    """One fresh process: load, then explain the pair 1 + repeats times; JSON on stdout."""
    sys.path.insert(0, str(REPO))
    from app.services.explain import decode_rgb
    from app.settings import Settings
    from app.vision.explain import encode_png, explain_pair, render
    from app.vision.pipeline import FacePipeline

    settings = Settings(
        model_dir=args.model_dir, onnx_providers=("CPUExecutionProvider",), onnx_intra_op_threads=len(CORES)
    )
    start = time.perf_counter()
    pipeline = FacePipeline.load(settings, profile=args.profile)
    load = time.perf_counter() - start
    data = [Path(args.a).read_bytes(), Path(args.b).read_bytes()]
    times, cpu = [], []
    distance = 0.0
    for _ in range(1 + args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        images = [decode_rgb(d, settings, "image") for d in data]
        explanation = explain_pair(pipeline, images[0], images[1], grid=args.grid)
        encode_png(render(explanation))
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        distance = explanation.occlusion.base_distance
    # The load yardstick: one face through the profile's encoders, as `make bench` times it.
    probe = explanation.probe
    second = probe.chips[1][None] if len(probe.chips) > 1 else None
    one = []
    for _ in range(20):
        start = time.perf_counter()
        pipeline.encode(probe.chips[0][None], second)
        one.append(time.perf_counter() - start)
    result = {"load": load, "first": times[0], "warm": statistics.median(times[1:])}
    result |= {"cpu": statistics.median(cpu[1:]), "one": statistics.median(one), "distance": distance}
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", default="fusion")
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument(
        "--model-dir", default=os.environ.get("FACEGATE_MODEL_DIR", str(REPO / "var" / "models"))
    )
    parser.add_argument("--cli", action="store_true", help="Also time the whole `facegate explain` command.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--a", help=argparse.SUPPRESS)
    parser.add_argument("--b", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    pin = (lambda: os.sched_setaffinity(0, CORES)) if len(os.sched_getaffinity(0)) > len(CORES) else None
    with tempfile.TemporaryDirectory() as tmp:
        a, b, what = _pair_files(Path(tmp))
        cmd = [sys.executable, __file__, "--child", "--a", str(a), "--b", str(b), "--profile", args.profile]
        cmd += ["--grid", str(args.grid), "--model-dir", args.model_dir, "--repeats", str(args.repeats)]
        runs = []
        for _ in range(args.processes):
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, preexec_fn=pin)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"pair: {what}; profile {args.profile}, {args.grid}x{args.grid} patches; {len(CORES)} cores")
        print(f"distance {runs[0]['distance']:.4f}; medians over {args.processes} fresh processes:")
        for key, label in (
            ("load", "load the pipeline (sessions, warm-up)"),
            ("first", "first explanation (decode, detect, align, occlusion map, PNG)"),
            ("warm", f"later explanations (median of {args.repeats} per process)"),
            ("cpu", "  their CPU time, both cores together"),
        ):
            values = [r[key] for r in runs]
            spread = f"(min {min(values):.2f}, max {max(values):.2f})"
            print(f"  {label:<64s} {statistics.median(values):6.2f} s  {spread}")
        one = statistics.median(r["one"] for r in runs) * 1000
        print(f"  {'yardstick: one face through the encoders, no occlusion':<64s} {one:6.1f} ms")
        if args.cli:
            env = {**os.environ, "FACEGATE_MODEL_DIR": args.model_dir, "FACEGATE_DATA_DIR": tmp}
            env["FACEGATE_ONNX_INTRA_OP_THREADS"] = str(len(CORES))
            walls = []
            for _ in range(args.processes):
                start = time.perf_counter()
                out = Path(tmp) / "explain.png"
                explain = [sys.executable, "-m", "app.cli", "explain", str(a), str(b), "--out", str(out)]
                explain += ["--profile", args.profile, "--grid", str(args.grid)]
                subprocess.run(explain, cwd=REPO, env=env, capture_output=True, check=True, preexec_fn=pin)
                walls.append(time.perf_counter() - start)
            label = "the whole `facegate explain` command (start to exit)"
            print(f"  {label:<64s} {statistics.median(walls):6.2f} s")


if __name__ == "__main__":
    main()
