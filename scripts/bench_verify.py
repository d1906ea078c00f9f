#!/usr/bin/env python3
"""What POST /v1/verify costs beyond encoding: per image, decode + detect (+ landmarks, align)
against one face's encoding, timed inside ``verify_images`` with the pipeline's stage timer.

    python scripts/bench_verify.py [--runs 20] [--profile fusion]

Images: the 480p, 720p and 1080p Obama portraits of ../shared/faces/examples (one face each). The
target of issue 16: decode + detect stays within one face's encoding time per image. Each size is
timed with the configured FACEGATE_DETECT_MAX_SIDE and with 0 (YuNet on the whole frame), the two
pipelines alternating run by run so that both see the same load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.services.verification import verify_images  # noqa: E402
from app.settings import get_settings  # noqa: E402
from app.vision.imageio import decode_image  # noqa: E402
from app.vision.pipeline import FacePipeline, StageTimer  # noqa: E402

FOLDER = REPO.parent / "shared" / "faces" / "examples" / "derived_variants_of_obama_portrait"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    settings = get_settings()
    pipeline = FacePipeline.load(settings, profile=args.profile)
    whole = FacePipeline.load(settings.model_copy(update={"detect_max_side": 0}), profile=args.profile)
    print(f"profile {pipeline.profile.name}, {args.runs} runs, medians in ms")
    images = {
        name: (FOLDER / f"examples__obama-{name}.jpg").read_bytes() for name in ("480p", "720p", "1080p")
    }
    variants = {f"max side {settings.detect_max_side}": pipeline, "whole frame": whole}
    for name, data in images.items():
        stages: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
        for i in range(args.runs + 2):
            for variant, pipe in variants.items():
                timer = StageTimer()
                with timer.stage("decode"):
                    bgr = decode_image(
                        data, max_pixels=settings.max_image_pixels, apply_exif_orientation=True
                    )
                faces = pipe.faces(bgr, timer)
                if len(faces) != 1:
                    raise SystemExit(f"{name}: expected one face, found {len(faces)}")
                if i >= 2:  # warm-up
                    for stage, ms in timer.ms.items():
                        stages[variant].setdefault(stage, []).append(ms)
        for variant, pipe in variants.items():
            med = {s: statistics.median(v) for s, v in stages[variant].items()}
            front = med["decode"] + med["convert"] + med["detect"]
            print(
                f"{name} ({variant}, YuNet at scale {pipe.detect_scale_for(decode_image(data).shape):.2f}): "
                + ", ".join(f"{s} {ms:.1f}" for s, ms in med.items())
                + f"; decode + detect {front:.1f} vs encode {med['encode']:.1f}"
                + (" (within one encoding)" if front <= med["encode"] else " (over one encoding)")
            )
    totals = []
    for i in range(args.runs + 2):
        start = time.perf_counter()
        verify_images(pipeline, images["480p"], images["720p"], settings, 1.0)
        if i >= 2:
            totals.append((time.perf_counter() - start) * 1000.0)
    print(f"verify_images(480p, 720p): {statistics.median(totals):.1f} ms")
    pipeline.close()
    whole.close()


if __name__ == "__main__":
    main()
