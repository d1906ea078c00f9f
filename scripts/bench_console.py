"""What the console's security pages cost: median and p95 of the event page (50 rows), one live-feed
poll with nothing new, the attempts page and the CSV export, over a log of N events.

The events are written through the store (app.store.queries.record_event, each with its audit
link) into a fresh SQLite database; the service is the real one (`facegate serve`).

    .venv/bin/python scripts/bench_console.py [--events 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.http_server import ServiceProcess  # noqa: E402


def fill(db: Path, events: int) -> str:
    from app.store import db as store_db
    from app.store import queries
    from app.store.models import utcnow

    engine = store_db.make_engine(f"sqlite:///{db}")
    factory = store_db.make_session_factory(engine)
    start = utcnow() - timedelta(days=6)
    with factory() as s:
        doors = [queries.create_door(s, f"Door {i}").id for i in range(4)]
        _, secret = queries.create_api_key(s, "auditor", "bench")
        s.commit()
        for i in range(events):
            granted = i % 3 == 0
            queries.record_event(
                s,
                door_id=doors[i % 4],
                decision="granted" if granted else "denied",
                reason="match" if granted else ("spoof" if i % 3 == 1 else "unknown_person"),
                frames=5,
                frames_with_face=5,
                latency_ms=100.0,
                model_version="bench",
                request_id=uuid.uuid4().hex,
                best_distance=0.5,
                tau=0.6,
                created_at=start + timedelta(seconds=20 * i),
            )
            if i % 1000 == 999:
                s.commit()
        s.commit()
    engine.dispose()
    return secret


def timed(client: httpx.Client, path: str, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(path)
        r.raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "test-models")
    args = parser.parse_args()
    from models.build import build_models

    build_models(args.model_dir)
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        svc = ServiceProcess(Path(tmp), args.model_dir)
        if svc.cli("db", "upgrade").returncode != 0:
            sys.exit("db upgrade failed")
        key = fill(Path(tmp) / "facegate.db", args.events)
        with svc, httpx.Client(base_url=svc.url, timeout=120) as c:
            if c.post("/console/login", data={"key": key}).status_code != 303:
                sys.exit("sign-in failed")
            page = c.get("/console/events").text
            newest = re.search(r'data-after="(\d+)"', page)
            after = newest.group(1) if newest else "0"
            print(f"{args.events} events, {args.runs} runs each (ms, median / p95):")
            for label, path in [
                ("events page (50 rows)", "/console/events"),
                ("events page, door + reason filter", "/console/events?door_id=2&reason=spoof"),
                ("live-feed poll, nothing new", f"/console/api/events?after_id={after}"),
                ("attempts per door (7 days)", "/console/attempts?days=7"),
            ]:
                median, p95 = timed(c, path, args.runs)
                print(f"  {label:<36} {median:7.1f} / {p95:7.1f}")
            t0 = time.perf_counter()
            rows = c.get("/console/events.csv").text.count("\n") - 1
            print(f"  CSV export of {rows} events: {(time.perf_counter() - t0) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
