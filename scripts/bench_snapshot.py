#!/usr/bin/env python3
"""What an event snapshot adds to a door request: choosing the view, cropping, JPEG encoding, and
storing it in the event's own transaction.

    python scripts/bench_snapshot.py [--db-url URL] [--runs 1000] [--model-dir DIR] [--full-frame]

A burst of 5 door frames (640x480, skimage's astronaut moving a few pixels, as a door camera sees
her) goes once through the real pipeline (the configured profile) and the subject is tracked, as
the service does. Then, ``--runs`` times (after 20 uncounted warm-up runs), in this one fresh
process:

- ``take_snapshot`` on the tracked faces (best view, crop with margin, JPEG; ``--full-frame``
  encodes the whole frame too), timed;
- the event write as the service does it (``record_event`` with its audit link, one commit),
  alternately without and with ``add_snapshot`` in the same transaction, timed.

The added cost of run i is its snapshot time plus (write with snapshot - the neighbouring write
without); the median and p99 of those are printed, with their parts. The database is a temporary
SQLite file unless --db-url names an empty database (it is migrated and filled).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.settings import Settings  # noqa: E402
from app.store import db as store_db  # noqa: E402
from app.store import queries as q  # noqa: E402
from app.store import snapshot_queries as sq  # noqa: E402
from app.vision.pipeline import FacePipeline  # noqa: E402
from app.vision.snapshot import take_snapshot  # noqa: E402
from app.vision.tracking import follow_subject  # noqa: E402

WARM_UP = 20


def _burst() -> list[np.ndarray]:
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut()[:, ::-1])  # type: ignore[no-untyped-call]
    frames = []
    for i in range(5):
        frame = np.full((480, 640, 3), 60, np.uint8)
        face = cv2.resize(astronaut, (400, 400))
        dx = 4 * i
        frame[40:440, 110 + dx : 510 + dx] = (face * 0.8).astype(np.uint8)
        frames.append(np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)))
    return frames


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db-url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--model-dir", type=Path, default=None, help="built models (default: var/models)")
    parser.add_argument("--full-frame", action="store_true", help="keep the whole frame too")
    parser.add_argument("--quality", type=int, default=Settings().snapshot_jpeg_quality)
    args = parser.parse_args()

    model_dir = args.model_dir or next(
        (
            d
            for d in (REPO / "var" / "models", REPO / "var" / "test-models")
            if (d / "manifest.json").exists()
        ),
        REPO / "var" / "models",
    )
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="bench_snapshot_")),
        model_dir=model_dir,
        onnx_providers=("CPUExecutionProvider",),
    )
    pipeline = FacePipeline.load(settings)
    frames = _burst()
    faces = pipeline.faces_burst(frames)
    subject = follow_subject(list(zip(frames, faces, strict=True)), [0.1 * i for i in range(len(frames))])
    if len(subject.faces) != len(frames):
        raise SystemExit(f"the subject was found in {len(subject.faces)} of {len(frames)} frames")
    views = [o.frame for o in subject.observed]

    url = args.db_url or f"sqlite:///{(settings.data_dir / 'bench.db').as_posix()}"
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    sessions = store_db.make_session_factory(engine)
    with sessions() as s:
        door = q.create_door(s, f"bench-{uuid.uuid4().hex[:8]}").id
        s.commit()

    def write(snapshot: tuple[bytes, bytes | None] | None) -> float:
        start = time.perf_counter()
        with sessions() as s:
            event = q.record_event(
                s,
                door_id=door,
                decision="granted",
                reason="match",
                person_id=1,
                frames=5,
                frames_with_face=5,
                latency_ms=80.0,
                model_version="bench",
                request_id=uuid.uuid4().hex,
                best_distance=0.31,
                second_distance=0.83,
                tau=0.5,
                liveness={"outcome": "live", "score": 0.97},
            )
            if snapshot is not None:
                sq.add_snapshot(s, event, snapshot[0], snapshot[1])
            s.commit()
        return 1000 * (time.perf_counter() - start)

    cpu: list[float] = []
    base: list[float] = []
    with_snap: list[float] = []
    sizes: list[tuple[int, int]] = []
    for i in range(WARM_UP + args.runs):
        start = time.perf_counter()
        snap = take_snapshot(views, subject.faces, full_frame=args.full_frame, quality=args.quality)
        took = 1000 * (time.perf_counter() - start)
        if snap is None:
            raise SystemExit("no snapshot")
        # Alternate the order so that neither write always follows the other.
        if i % 2:
            plain, stored = write(None), write((snap.face_jpeg, snap.frame_jpeg))
        else:
            stored, plain = write((snap.face_jpeg, snap.frame_jpeg)), write(None)
        if i >= WARM_UP:
            cpu.append(took)
            base.append(plain)
            with_snap.append(stored)
            sizes.append((len(snap.face_jpeg), len(snap.frame_jpeg or b"")))
    engine.dispose()

    added = [c + w - b for c, w, b in zip(cpu, with_snap, base, strict=True)]
    backend = url.split(":", 1)[0].split("+", 1)[0]
    what = "face crop + full frame" if args.full_frame else "face crop"
    print(
        f"{args.runs} runs, {backend}, profile {pipeline.profile.name}, {what}, JPEG quality {args.quality}"
    )
    print(
        f"  JPEG size: face {statistics.median(s[0] for s in sizes) / 1024:.1f} KiB"
        + (f", frame {statistics.median(s[1] for s in sizes) / 1024:.1f} KiB" if args.full_frame else "")
    )
    print(f"  view + crop + encode: median {statistics.median(cpu):.2f} ms, p99 {_pct(cpu, 99):.2f} ms")
    print(
        f"  event write (one commit): without median {statistics.median(base):.2f} / p99 "
        f"{_pct(base, 99):.2f} ms, with snapshot median {statistics.median(with_snap):.2f} / p99 "
        f"{_pct(with_snap, 99):.2f} ms"
    )
    print(f"  added per request: median {statistics.median(added):.2f} ms, p99 {_pct(added, 99):.2f} ms")


if __name__ == "__main__":
    main()
