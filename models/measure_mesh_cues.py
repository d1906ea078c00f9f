"""Measure the mesh geometry cues (app.vision.mesh_cues) on the real liveness captures.

Bursts: each NUAA run (15 frames in capture order, ../shared/faces/liveness/manifest.csv), its
first 8 frames, and 8-frame bursts at about 5 fps cut from the videos (the screen replay from
frame 30 on: before that the presenter's own face is in view). In every frame the project's
pipeline finds the largest face; the mesh is run on that box with the eye line upright (a
detection per frame: MediaPipe's tracking ROI loses hand-held prints at 5 fps). Frames without a
face, or whose mesh presence score is below 0.5, are dropped; a burst needs 5 frames.

Prints one line per burst and each cue's AUC (live against attack, higher = live) per burst
length, overall and per attack type.

    .venv/bin/python -m models.measure_mesh_cues --model-dir var/models --wheels var/cache/wheels
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.face_mesh import FaceMesh
from app.vision.mesh_cues import burst_geometry
from app.vision.pipeline import FacePipeline
from app.vision.runtime import create_session
from models.convert_face_mesh import convert_face_mesh, fetch_mediapipe_wheel, read_face_landmark_tflite

LIVENESS = Path(__file__).resolve().parents[2] / "shared" / "faces" / "liveness"
BURST_FPS = 5.0
VIDEO_BURST = 8
REPLAY_SKIP = 30  # frames of the replay video that also show the presenter's live face
MIN_FRAMES = 5

Burst = tuple[str, str, list[NDArray[np.uint8]]]  # name, live or attack type, RGB frames


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a live burst scores above an attack burst), ties counting half."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def _rgb(bgr: NDArray[Any] | None, source: Path) -> NDArray[np.uint8]:
    if bgr is None:
        raise OSError(f"{source}: unreadable image")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def nuaa_bursts(liveness: Path) -> list[Burst]:
    """NUAA runs in capture order (15 frames) and their first 8 frames."""
    rows: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    kind: dict[str, str] = {}
    with (liveness / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["frame_index"]:
                rows[row["sequence"]].append((int(row["frame_index"]), liveness / row["path"]))
                kind[row["sequence"]] = row["attack_type"] or "live"
    bursts = []
    for seq, frames in sorted(rows.items()):
        images = [_rgb(cv2.imread(str(p)), p) for _, p in sorted(frames)]
        bursts.append((f"{seq}/15", kind[seq], images))
        bursts.append((f"{seq}/8", kind[seq], images[:8]))
    return bursts


def video_bursts(liveness: Path) -> list[Burst]:
    """Consecutive 8-frame bursts at about 5 fps from each video."""
    bursts = []
    with (liveness / "manifest.csv").open() as fh:
        videos = [r for r in csv.DictReader(fh) if not r["frame_index"]]
    for row in videos:
        cap = cv2.VideoCapture(str(liveness / row["path"]))
        step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 25.0) / BURST_FPS))
        skip = REPLAY_SKIP if row["attack_type"] == "screen_replay" else 0
        frames, index = [], 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= skip and (index - skip) % step == 0:
                frames.append(_rgb(np.asarray(bgr), liveness / row["path"]))
            index += 1
        cap.release()
        kind = row["attack_type"] or "live"
        for start in range(0, len(frames) - VIDEO_BURST + 1, VIDEO_BURST):
            bursts.append((f"{row['sequence']}@{start}/8", kind, frames[start : start + VIDEO_BURST]))
    return bursts


def mesh_track(
    pipeline: FacePipeline, mesh: FaceMesh, frames: list[NDArray[np.uint8]]
) -> NDArray[np.float64]:
    """(F', 468, 3): one mesh per frame that has a face and a confident mesh."""
    kept, boxes, eyes = [], [], []
    for rgb in frames:
        faces = pipeline.faces_rgb(rgb)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.width)
        pts = face.landmarks  # dlib's 5 points: 0-1 the image's right eye, 2-3 its left
        kept.append(rgb)
        boxes.append(face.box)
        eyes.append(np.array([pts[2:4].mean(axis=0), pts[0:2].mean(axis=0)]))
    if not kept:
        return np.zeros((0, 468, 3))
    points, scores = mesh.predict_batch(kept, boxes, eyes)
    return points[scores >= mesh.threshold]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--wheels", type=Path, default=Path("var/cache/wheels"))
    parser.add_argument("--liveness", type=Path, default=LIVENESS)
    args = parser.parse_args()

    pipeline = FacePipeline.load(Settings(model_dir=args.model_dir, onnx_providers=("CPUExecutionProvider",)))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "face_mesh.onnx"
        details = convert_face_mesh(read_face_landmark_tflite(fetch_mediapipe_wheel(args.wheels)), onnx_path)
        mesh = FaceMesh(create_session(onnx_path, providers=("CPUExecutionProvider",)), details)

    # burst set -> cue -> [(kind, value)]
    values: dict[str, dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for name, kind, frames in nuaa_bursts(args.liveness) + video_bursts(args.liveness):
        track = mesh_track(pipeline, mesh, frames)
        if len(track) < MIN_FRAMES:
            print(f"{name:44s} {kind:22s} only {len(track)} frames with a face")
            continue
        cues = burst_geometry(track)
        group = "nuaa" + name.rsplit("/", 1)[1] if name.startswith("nuaa") else "video"
        for cue, v in cues.items():
            values[group][cue].append((kind, v))
        shown = " ".join(f"{k}={v:.4f}" for k, v in cues.items())
        print(f"{name:44s} {kind:22s} n={len(track):2d} {shown}")

    for group, by_cue in values.items():
        print(f"\nAUC live vs attack, {group} bursts (higher value = live)")
        for cue, pairs in by_cue.items():
            live = [v for k, v in pairs if k == "live"]
            attack = [v for k, v in pairs if k != "live"]
            if not live or not attack:
                continue
            types = sorted({k for k, _ in pairs if k != "live"})
            per_type = " ".join(f"{t}={auc(live, [v for k, v in pairs if k == t]):.3f}" for t in types)
            print(
                f"  {cue:20s} all={auc(live, attack):.3f} {per_type} "
                f"(median live {np.median(live):.4f}, attack {np.median(attack):.4f}; "
                f"{len(live)} live, {len(attack)} attack)"
            )


if __name__ == "__main__":
    main()
