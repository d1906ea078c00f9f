#!/usr/bin/env python3
"""Frames endpoint throughput and latency: a real `facegate serve` on loopback, real models, SQLite.

    python scripts/bench_service.py [--requests 120] [--clients 1,4]

Enrols the people of ../shared/faces/examples (one photo each) plus the astronaut, then posts
single 640x480 JPEG frames cut from their other photos (one face each) from N concurrent clients,
and prints frames/s and p50/p99 latency per client count. Without ../shared it uses the
astronaut alone. Traffic goes to 127.0.0.1 only and stops after --requests per run.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.http_server import ServiceProcess, bearer  # noqa: E402

EXAMPLES = REPO.parent / "shared" / "faces" / "examples"


def to_frame(bgr: np.ndarray) -> bytes:
    """A 640x480 door frame: the whole photo scaled to fit, on a grey background."""
    h, w = bgr.shape[:2]
    scale = min(640 / w, 480 / h)
    img = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 96, np.uint8)
    y0, x0 = (480 - img.shape[0]) // 2, (640 - img.shape[1]) // 2
    frame[y0 : y0 + img.shape[0], x0 : x0 + img.shape[1]] = img
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def dataset() -> tuple[dict[str, bytes], list[bytes]]:
    from skimage import data

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    enrol = {"astronaut": cv2.imencode(".jpg", astro)[1].tobytes()}
    frames = [to_frame(cv2.flip(astro, 1))]
    if EXAMPLES.is_dir():
        people: dict[str, list[Path]] = defaultdict(list)
        with (EXAMPLES / "labels.csv").open() as fh:
            for row in csv.DictReader(fh):
                people[row["identity"]].append(EXAMPLES / row["file"])
        for name, files in people.items():
            enrol[name] = files[0].read_bytes()
            frames += [to_frame(cv2.imread(str(f))) for f in files[1:]]
    return enrol, frames


def run(
    url: str, door: int, key: str, frames: list[bytes], *, clients: int, requests: int
) -> dict[str, float]:
    latencies: list[float] = []
    reasons: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60, headers=bearer(key)) as c:
            for i in counter:
                frame = frames[i % len(frames)]
                t0 = time.perf_counter()
                r = c.post(f"/v1/doors/{door}/frames", files=[("frames", ("f.jpg", frame, "image/jpeg"))])
                elapsed = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                    reasons[r.json()["reason"]] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "fps": len(lat) / wall,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
        "max": lat[-1],
        **{f"reason:{k}": v for k, v in reasons.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument(
        "--model-dir", default=os.environ.get("FACEGATE_MODEL_DIR", str(REPO / "var" / "models"))
    )
    parser.add_argument("--workers", default=None, help="FACEGATE_INFERENCE_WORKERS for the server")
    parser.add_argument("--threads", default=None, help="FACEGATE_ONNX_INTRA_OP_THREADS for the server")
    args = parser.parse_args()
    enrol, frames = dataset()
    with tempfile.TemporaryDirectory() as tmp:
        svc = ServiceProcess(Path(tmp), Path(args.model_dir), FACEGATE_LOG_LEVEL="WARNING")
        svc.env.pop("FACEGATE_ONNX_INTRA_OP_THREADS")  # the service's defaults unless asked
        if args.workers:
            svc.env["FACEGATE_INFERENCE_WORKERS"] = args.workers
        if args.threads:
            svc.env["FACEGATE_ONNX_INTRA_OP_THREADS"] = args.threads
        if svc.cli("db", "upgrade").returncode != 0:
            raise SystemExit("db upgrade failed")
        admin = (
            svc.cli("keys", "create", "--role", "admin", "--name", "bench").stdout.strip().splitlines()[-1]
        )
        with svc, httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin)) as c:
            door = c.post("/v1/doors", json={"name": "bench", "liveness_required": False}).json()["id"]
            key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]
            for name, photo in enrol.items():
                pid = c.post("/v1/people", json={"name": name}).json()["id"]
                c.post(
                    f"/v1/people/{pid}/faces",
                    files={"image": ("p.jpg", photo, "image/jpeg")},
                    params={"force": "true"},
                )
            run(svc.url, door, key, frames, clients=1, requests=8)  # warm-up
            print(
                f"frames endpoint, 640x480 JPEG, {len(frames)} distinct frames, "
                f"{len(enrol)} people enrolled, "
                f"{args.requests} requests per run, {os.cpu_count()} CPU cores"
            )
            for clients in (int(x) for x in args.clients.split(",")):
                r = run(svc.url, door, key, frames, clients=clients, requests=args.requests)
                reasons = ", ".join(f"{k[7:]} {int(v)}" for k, v in r.items() if k.startswith("reason:"))
                print(
                    f"  {clients} client(s): {r['fps']:5.1f} frames/s   p50 {r['p50']:6.1f} ms   "
                    f"p99 {r['p99']:6.1f} ms   max {r['max']:6.1f} ms   ({reasons})"
                )


if __name__ == "__main__":
    main()
