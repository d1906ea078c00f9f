#!/usr/bin/env python3
"""What POST /v1/verify costs beyond encoding: per image, decode + detect (+ landmarks, align)
against one face's encoding, timed inside ``verify_images`` with the pipeline's stage timer.

    python scripts/bench_verify.py [--runs 20] [--profile fusion]

Images: the 480p and 720p Obama portraits of ../shared/faces/examples (one face each). The target
of issue 16: the work other than encoding stays within one face's encoding time per image.
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
    print(f"profile {pipeline.profile.name}, {args.runs} runs, medians in ms")
    images = {name: (FOLDER / f"examples__obama-{name}.jpg").read_bytes() for name in ("480p", "720p")}
    for name, data in images.items():
        stages: dict[str, list[float]] = {}
        for i in range(args.runs + 2):
            timer = StageTimer()
            with timer.stage("decode"):
                bgr = decode_image(data, max_pixels=settings.max_image_pixels, apply_exif_orientation=True)
            faces = pipeline.faces(bgr, timer)
            if len(faces) != 1:
                raise SystemExit(f"{name}: expected one face, found {len(faces)}")
            if i >= 2:  # warm-up
                for stage, ms in timer.ms.items():
                    stages.setdefault(stage, []).append(ms)
        med = {s: statistics.median(v) for s, v in stages.items()}
        other = sum(ms for s, ms in med.items() if s != "encode")
        print(
            f"{name}: "
            + ", ".join(f"{s} {ms:.1f}" for s, ms in med.items())
            + f"; all but encode {other:.1f} vs encode {med['encode']:.1f}"
            + (" (within one encoding)" if other <= med["encode"] else " (over one encoding)")
        )
    totals = []
    for i in range(args.runs + 2):
        start = time.perf_counter()
        verify_images(pipeline, images["480p"], images["720p"], settings, 1.0)
        if i >= 2:
            totals.append((time.perf_counter() - start) * 1000.0)
    print(f"verify_images(480p, 720p): {statistics.median(totals):.1f} ms")
    pipeline.close()


if __name__ == "__main__":
    main()
