"""Measure 5-point landmark jitter on real video: the noise figure the liveness simulation uses.

Runs our pipeline (detector + dlib's 5-point predictor, integer landmarks as dlib returns them)
on every frame of a clip of a live person, follows the largest face through runs of consecutive
frames, smooths each landmark coordinate with a local quadratic over a short window, and reports
the residual in units of the inter-ocular distance (IOD: between the two eye centres).

The residual of a least-squares quadratic over ``w`` frames holds (1 - h) of the noise variance,
where h is the fit's weight on the centre frame; the printed figure is corrected for that.
Fast real head motion that a quadratic cannot follow inflates the figure, so it is an upper
bound on the detector's own jitter.

    .venv/bin/python -m models.measure_landmark_jitter \
        ../shared/faces/videos/face_recognition_short_hamilton_clip.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.pipeline import FacePipeline

WINDOW = 7  # frames (about 0.23 s at 30 fps): short enough that a quadratic follows head motion


def _eye_centres(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return (points[0] + points[1]) / 2.0, (points[2] + points[3]) / 2.0


def _tracks(video: Path, pipeline: FacePipeline) -> list[NDArray[np.float64]]:
    """Runs of consecutive frames in which the largest face stays put: each (frames, 5, 2)."""
    cap = cv2.VideoCapture(str(video))
    runs: list[list[NDArray[np.float64]]] = [[]]
    last_box: tuple[int, int, int, int] | None = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        faces = pipeline.faces(np.ascontiguousarray(frame, dtype=np.uint8))
        if not faces:
            runs.append([])
            last_box = None
            continue
        face = max(faces, key=lambda f: f.width)
        if last_box is not None:
            width = last_box[2] - last_box[0] + 1
            moved = abs(face.box[0] - last_box[0]) + abs(face.box[1] - last_box[1])
            if moved > 0.5 * width:  # another face or a detector jump: start a new track
                runs.append([])
        runs[-1].append(face.landmarks)
        last_box = face.box
    cap.release()
    return [np.stack(r) for r in runs if len(r) >= WINDOW]


def jitter_iod(track: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-frame, per-coordinate residuals (IOD units) around a sliding quadratic, noise-corrected."""
    half = WINDOW // 2
    t = np.arange(WINDOW, dtype=np.float64) - half
    design = np.stack([np.ones_like(t), t, t * t], axis=1)
    hat = design @ np.linalg.pinv(design)
    centre_weight = float(hat[half, half])
    out = []
    for i in range(half, len(track) - half):
        window = track[i - half : i + half + 1].reshape(WINDOW, -1)
        fitted = hat[half] @ window
        right, left = _eye_centres(track[i])
        iod = float(np.linalg.norm(right - left))
        out.append((track[i].reshape(-1) - fitted) / iod)
    residuals: NDArray[np.float64] = np.asarray(out) / np.sqrt(1.0 - centre_weight)
    return residuals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path)
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"))
    args = parser.parse_args()
    settings = Settings(model_dir=args.model_dir, onnx_providers=("CPUExecutionProvider",))
    pipeline = FacePipeline.load(settings, flip_average=False)
    tracks = _tracks(args.video, pipeline)
    residuals = np.concatenate([jitter_iod(t) for t in tracks])
    frames = sum(len(t) for t in tracks)
    iods = np.concatenate(
        [np.linalg.norm(np.subtract(*_eye_centres(t.transpose(1, 0, 2))), axis=1) for t in tracks]
    )
    robust_sd = 1.4826 * np.median(np.abs(residuals - np.median(residuals, axis=0)), axis=0)
    print(f"tracks: {len(tracks)}, frames: {frames}, IOD median {np.median(iods):.1f} px")
    print("robust sd per point (x, y), IOD units:")
    for p in range(5):
        print(f"  point {p}: {robust_sd[2 * p]:.4f} {robust_sd[2 * p + 1]:.4f}")
    print(f"jitter (median of the per-coordinate robust sd): {np.median(robust_sd):.4f} IOD")
    print(f"jitter (plain sd of all residuals): {np.std(residuals):.4f} IOD")


if __name__ == "__main__":
    main()
