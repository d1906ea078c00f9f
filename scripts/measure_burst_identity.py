#!/usr/bin/env python3
"""Multi-frame identity on real sequences: majority vote over frames vs one fused encoding.

    python scripts/measure_burst_identity.py [--faces ../shared/faces] [--profile fusion]

The live sequences of ../shared/faces/liveness (7 NUAA people, the webcam person, 4 LivePortrait
people) are door bursts of 8 frames, as `facegate eval liveness` cuts them. Each person is
enrolled from one frame of their first recording (NUAA: the first run; videos: the first frame)
into a gallery that also holds the 239 LFW dev open-set people as distractors; bursts from their
*other* runs (videos: windows starting 2 s or more after the enrolment frame) are the genuine
attempts. Each person is then left out of the gallery and their bursts are stranger attempts.
Every burst is tracked as the service tracks it, and decided three ways at the τ the service would
apply to this gallery (and at two stricter τ):

- ``vote``: today's rule, a strict majority of the frames' decisions (``fuse_frames``);
- ``mean``: one decision on the mean of the frames' encodings (``FacePipeline.fuse``);
- ``best``: one decision on the frame whose face is widest (nearest the camera).

Prints granted-as-themselves and strangers-let-in per method. Changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.evaluation.liveness_real import Window, build_bursts, load_recordings  # noqa: E402
from app.evaluation.openset import build_index, read_gallery  # noqa: E402
from app.evaluation.pairs import central_face, encode_images  # noqa: E402
from app.gallery.calibration import applied_tau, impostor_sample, prior_model  # noqa: E402
from app.gallery.matching import decide_frame, fuse_frames  # noqa: E402
from app.settings import get_settings  # noqa: E402
from app.vision.imageio import decode_image  # noqa: E402
from app.vision.pipeline import Face, FacePipeline  # noqa: E402
from app.vision.tracking import follow_subject  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    settings = get_settings()
    pipeline = FacePipeline.load(settings, profile=args.profile)
    print(f"profile {pipeline.profile.name}, templates {pipeline.model_version}")

    recordings = [r for r in load_recordings(args.faces / "liveness") if r.label == "live"]
    faces_of: dict[int, list[tuple[NDArray[np.uint8], list[Face]]]] = {}
    for rec in recordings:
        frames = []
        for jpeg in rec.jpegs:
            bgr = decode_image(jpeg, max_pixels=settings.max_image_pixels)
            frames.append((bgr, pipeline.faces(bgr)))
        faces_of[id(rec)] = frames

    # Enrolment: the first recording of each person, its first frame with a face.
    enrol: dict[str, NDArray[np.float32]] = {}
    enrol_rec: dict[str, str] = {}
    for rec in recordings:
        if rec.subject in enrol:
            continue
        for bgr, found in faces_of[id(rec)]:
            face = central_face(found, bgr.shape)
            if face is not None:
                enrol[rec.subject], enrol_rec[rec.subject] = face.embedding, rec.name
                break
    lfw = args.faces / "lfw-dev"
    distractors = read_gallery(lfw / "openset_gallery.csv", 1)
    found = encode_images(pipeline, [r.file for r in distractors], settings.data_dir / "cache")
    base = [v for r in distractors if (v := found[r.file]) is not None]

    bursts = [
        b
        for b in build_bursts(recordings, nuaa_windows=(Window(8, 4),), video_windows=(Window(8, 4),))
        if not (b.recording.name == enrol_rec.get(b.subject) and b.recording.kind == "frames")
        and not (b.recording.kind == "video" and b.recording.times[b.start] < 2.0)
    ]
    print(f"{len(enrol)} people enrolled (+{len(base)} LFW distractors), {len(bursts)} bursts of 8 frames")

    subjects = sorted(enrol)
    results: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for left_out in [None, *subjects]:
        people = [s for s in subjects if s != left_out]
        vectors = np.stack([enrol[s] for s in people] + base).astype(np.float32)
        pids = np.arange(1, len(vectors) + 1, dtype=np.int64)
        index = build_index(settings, pipeline.dim, pids, vectors, pipeline.profile.metric)  # type: ignore[arg-type]
        sample = impostor_sample(pids, pids, vectors, metric=pipeline.profile.metric)  # type: ignore[arg-type]
        tau0 = applied_tau(
            sample,
            settings.target_stranger_far,
            prior_model(pipeline.calibration_prior),
            reference=pipeline.profile.reference_tau,
        ).tau
        for b in bursts:
            genuine = left_out is None
            if not genuine and b.subject != left_out:
                continue
            frames = [faces_of[id(b.recording)][i] for i in b.positions]
            subject = follow_subject(frames, b.timestamps, settings.recognize_min_face_px)
            if not subject.faces:
                continue
            embeddings = np.stack([f.embedding for f in subject.faces])
            hits = index.search_people(embeddings, k_people=2)
            mean_hits = index.search_people(pipeline.fuse(embeddings)[None], k_people=2)[0]
            widest = max(range(len(subject.faces)), key=lambda i: subject.faces[i].width)
            mate = people.index(b.subject) + 1 if genuine else -1
            for k, tau in enumerate((tau0, tau0 - 0.05, tau0 - 0.1)):
                vote = fuse_frames([decide_frame(h, tau, settings.match_margin) for h in hits], len(frames))
                decisions = {
                    "vote": (vote.reason == "match", vote.person_id),
                    "mean": _granted(decide_frame(mean_hits, tau, settings.match_margin)),
                    "best": _granted(decide_frame(hits[widest], tau, settings.match_margin)),
                }
                for method, (granted, person) in decisions.items():
                    row = results[f"tau{k}"][method]
                    if genuine:
                        row[0] += int(granted and person == mate)
                        row[1] += 1
                    else:
                        row[2] += int(granted)
                        row[3] += 1
        index.close()
        if left_out is None:
            print(
                f"tau in force for K={len(vectors)}: {tau0:.4f} "
                f"(tau1, tau2: {tau0 - 0.05:.4f}, {tau0 - 0.1:.4f})"
            )
    for key, methods in results.items():
        for method, (ok, genuine_n, let_in, stranger_n) in methods.items():
            print(
                f"{key} {method:5s}: granted as themselves {ok}/{genuine_n} ({ok / max(genuine_n, 1):.1%}), "
                f"strangers let in {let_in}/{stranger_n} ({let_in / max(stranger_n, 1):.1%})"
            )


def _granted(match: object) -> tuple[bool, int | None]:
    outcome = getattr(match, "outcome", None)
    return outcome == "match", getattr(match, "person_id", None)


if __name__ == "__main__":
    main()
