"""Per-frame MiniFASNet p_real on the real liveness dev set, with the project's own face boxes.

Frames: every NUAA live/print frame in ../shared/faces/liveness/manifest.csv and the videos sampled
at about 5 fps. The face box is the largest face found (as in the tracker) at least
``recognize_min_face_px`` wide (narrower ones are 'low_quality' at the door and never scored). In the
phone-screen replay the presenter's own live face is in view for the first ~2 s (PROVENANCE.md):
there the phone's face is the one scored, i.e. faces wider than PHONE_FACE_MAX_PX are left out
(the presenter's face is 160-165 px wide in that clip, the phone's 95-115 px).

Prints, per box scale: p_real per set (mean, 5th/50th/95th percentile, fraction above 0.5), then
bursts of 8 consecutive scored frames fused by mean / median / min, then the PAD cost per frame.

    .venv/bin/facegate models build
    .venv/bin/facegate models import-pad ../shared/models/silent_face
    .venv/bin/python scripts/measure_pad.py [--profile dlib|sface] [--box-scale 1.0,1.3 ...]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.manifest import load_manifest
from app.vision.pad import FUSIONS, Box, BoxScale, PadModel, fuse_scores
from app.vision.pipeline import FacePipeline
from app.vision.profiles import PROFILE_NAMES, profile_spec

REPO = Path(__file__).resolve().parents[1]
LIVENESS = REPO.parent / "shared" / "faces" / "liveness"
SCREEN_REPLAY_PRESENTER_S = 2.0
PHONE_FACE_MAX_PX = 130
BURST = 8
BENCH_FRAMES = 64


@dataclass
class Frame:
    group: str  # nuaa live / nuaa print_flat / video file stem ...
    label: str
    attack_type: str
    sequence: str
    order: int
    bgr: NDArray[np.uint8]
    seconds: float = 0.0  # videos: time of the frame in the clip


@dataclass
class Scored:
    frame: Frame
    box: Box
    p_real: dict[BoxScale, NDArray[np.float64]]  # box scale -> (n_networks,) p_real


def nuaa_frames(rows: list[dict[str, str]]) -> Iterator[Frame]:
    for row in rows:
        if not row["path"].startswith("nuaa/"):
            continue
        bgr = cv2.imread(str(LIVENESS / row["path"]))
        if bgr is None:
            raise SystemExit(f"cannot read {row['path']}")
        kind = row["attack_type"] or "live"
        order = int(row["frame_index"])
        yield Frame(f"nuaa {kind}", row["label"], kind, row["sequence"], order, np.asarray(bgr, np.uint8))


def video_frames(rows: list[dict[str, str]], fps: float) -> Iterator[Frame]:
    for row in rows:
        if not row["path"].startswith("videos/"):
            continue
        cap = cv2.VideoCapture(str(LIVENESS / row["path"]))
        rate = cap.get(cv2.CAP_PROP_FPS) or 25.0
        step = max(1, round(rate / fps))
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % step == 0:
                kind = row["attack_type"] or "live"
                stem = Path(row["path"]).stem
                yield Frame(
                    stem, row["label"], kind, row["sequence"], index, np.asarray(bgr, np.uint8), index / rate
                )
            index += 1
        cap.release()


FaceBoxes = Callable[[NDArray[np.uint8]], list[Box]]  # BGR frame -> inclusive (l, t, r, b) boxes


def profile_boxes(settings: Settings, profile: str) -> FaceBoxes:
    """The service's own pipeline for that profile: dlib's MMOD ("dlib") or YuNet ("sface")."""
    pipeline = FacePipeline.load(settings, profile=profile)

    def boxes(bgr: NDArray[np.uint8]) -> list[Box]:
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        return [d.box for d in pipeline.detect(rgb)]

    return boxes


def pick_face(detect: FaceBoxes, frame: Frame, min_face_px: int) -> Box | None:
    boxes = [b for b in detect(frame.bgr) if b[2] - b[0] + 1 >= min_face_px]  # the door's low_quality gate
    if frame.attack_type == "screen_replay" and frame.seconds < SCREEN_REPLAY_PRESENTER_S:
        boxes = [b for b in boxes if b[2] - b[0] + 1 <= PHONE_FACE_MAX_PX]
    if not boxes:
        return None
    return max(boxes, key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1))


def stats(values: NDArray[np.float64]) -> str:
    if values.size == 0:
        return "n=0"
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return (
        f"n={values.size:4d} mean {values.mean():.3f}  p5 {p5:.3f}  p50 {p50:.3f}  p95 {p95:.3f}  "
        f">0.5 {np.mean(values > 0.5):6.1%}"
    )


def report(scored: list[Scored], scale: BoxScale, names: list[str]) -> None:
    print(f"\n== box_scale {scale} (width, height): per-frame fused p_real ==")
    sets: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        sets[f"label {s.frame.label}"].append(s)
        sets[f"type  {s.frame.attack_type}"].append(s)
        sets[f"set   {s.frame.group}"].append(s)
    for name in sorted(sets):
        fused = np.array([s.p_real[scale].mean() for s in sets[name]])
        print(f"  {name:44s} {stats(fused)}")
    for i, net in enumerate(names):
        live = np.array([s.p_real[scale][i] for s in scored if s.frame.label == "live"])
        attack = np.array([s.p_real[scale][i] for s in scored if s.frame.label == "attack"])
        print(f"  {net} alone: live {stats(live)}\n  {' ' * len(net)}        attack {stats(attack)}")
    bursts: dict[str, list[list[float]]] = defaultdict(list)
    by_seq: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        by_seq[s.frame.sequence].append(s)
    for seq in by_seq.values():
        seq.sort(key=lambda s: s.frame.order)
        for start in range(0, len(seq) - BURST + 1, BURST // 2):  # half-overlapping bursts
            window = seq[start : start + BURST]
            key = window[0].frame.attack_type if window[0].frame.label == "attack" else "live"
            bursts[key].append([float(s.p_real[scale].mean()) for s in window])
    print(f"  bursts of {BURST} scored frames (half-overlapping), fraction with fused p_real > 0.5:")
    for key in sorted(bursts):
        cells = []
        for method in FUSIONS:
            fused = np.array([fuse_scores(b, method) for b in bursts[key]])
            cells.append(
                f"{method} {np.mean(fused > 0.5):6.1%} (lowest {fused.min():.3f}, highest {fused.max():.3f})"
            )
        print(f"    {key:24s} n={len(bursts[key]):3d}  " + "  ".join(cells))


def bench(pad: PadModel, samples: list[tuple[NDArray[np.uint8], Box]]) -> None:
    frames = [bgr for bgr, _ in samples]
    boxes = [box for _, box in samples]
    for parallel in (False, True):
        model = PadModel(pad.branches, box_scale=pad.box_scale, parallel=parallel)
        model.score_frames(frames[:4], boxes[:4])
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for i in range(0, len(frames), BURST):
                model.score_frames(frames[i : i + BURST], boxes[i : i + BURST])
            best = min(best, (time.perf_counter() - start) * 1000 / len(frames))
        model.close()
        how = "two networks in parallel threads" if parallel else "one thread"
        print(f"  PAD (crop + both networks), {how}: {best:.2f} ms per frame (best of 5, bursts of {BURST})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default=None,
        help="whose face boxes: that profile's detector (default: FACEGATE_PROFILE)",
    )
    parser.add_argument(
        "--box-scale",
        action="append",
        default=[],
        help="width,height expansion (repeatable); default: manifest",
    )
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--limit", type=int, default=0, help="at most this many NUAA frames (0: all)")
    args = parser.parse_args()
    if not LIVENESS.is_dir():
        sys.exit(f"{LIVENESS} is absent")
    settings = Settings()
    profile = profile_spec(args.profile or settings.profile)
    detect = profile_boxes(settings, profile.name)
    manifest = load_manifest(settings.models_path)
    pad = PadModel.from_manifest(
        settings.models_path, manifest, detector=profile.detector, intra_op_threads=1, parallel=True
    )
    scales: list[BoxScale] = [pad.box_scale]
    for text in args.box_scale:
        w, h = (float(v) for v in text.split(","))
        if (w, h) not in scales:
            scales.append((w, h))
    models = {s: PadModel(pad.branches, box_scale=s, parallel=True) for s in scales}
    rows = list(csv.DictReader((LIVENESS / "manifest.csv").open()))
    nuaa = [r for r in rows if r["path"].startswith("nuaa/")]
    if args.limit:
        nuaa = nuaa[:: max(1, len(nuaa) // args.limit)]
    scored: list[Scored] = []
    samples: list[tuple[NDArray[np.uint8], Box]] = []
    missed: dict[str, int] = defaultdict(int)
    start = time.perf_counter()
    for frame in itertools.chain(nuaa_frames(nuaa), video_frames(rows, args.fps)):
        box = pick_face(detect, frame, settings.recognize_min_face_px)
        if box is None:
            missed[frame.group] += 1
            continue
        p_real = {s: m.predict([frame.bgr], [box])[0, :, 1] for s, m in models.items()}
        if len(samples) < BENCH_FRAMES:
            samples.append((frame.bgr, box))
        frame.bgr = frame.bgr[:0]  # keep memory flat: only the scores are needed from here on
        scored.append(Scored(frame, box, p_real))
    took = time.perf_counter() - start
    print(f"boxes from {profile.detector!r} ({profile.name}); scored {len(scored)} frames in {took:.0f} s")
    print(f"frames without a scored face: {dict(missed)}")
    names = [b.name for b in pad.branches]
    for scale in scales:
        report(scored, scale, names)
    print("\n== cost ==")
    bench(pad, samples)


if __name__ == "__main__":
    main()
