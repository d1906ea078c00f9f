#!/usr/bin/env python3
"""What the audit chain costs: event writes with and without their link, and `audit verify`.

    python scripts/bench_audit.py [--db-url URL] [--events 20000]

Writes N access events through ``record_event`` into a fresh database (a temporary SQLite file
unless --db-url names an empty one: it is migrated and filled), one commit per event as the
service does, then verifies the chain. The same writes with the link left out (``append_audit``
replaced by a no-op, in a second fresh SQLite file or a second run on PostgreSQL) give the base.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.audit.log import verify  # noqa: E402
from app.store import db as store_db  # noqa: E402
from app.store import queries as q  # noqa: E402


def _write(url: str, n: int) -> tuple[float, Any]:
    """ms per event (one transaction each) and the engine, left open for verify."""
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    sessions = store_db.make_session_factory(engine)
    with sessions() as s:
        door = q.create_door(s, f"bench-{uuid.uuid4().hex[:8]}").id
        s.commit()
    start = time.perf_counter()
    for _ in range(n):
        with sessions() as s:
            q.record_event(
                s,
                door_id=door,
                decision="denied",
                reason="unknown_person",
                frames=3,
                frames_with_face=2,
                latency_ms=12.5,
                model_version="bench",
                request_id=uuid.uuid4().hex,
                best_distance=0.61,
                liveness={"live": True, "score": 0.83},
            )
            s.commit()
    return 1000 * (time.perf_counter() - start) / n, engine


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db-url", help="an empty database (default: temporary SQLite files)")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--no-chain", action="store_true", help="write without links (the base)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    url = args.db_url or f"sqlite:///{(tmp / 'audit.db').as_posix()}"
    if args.no_chain:
        q.append_audit = lambda *_a, **_k: None  # type: ignore[assignment]
    ms, engine = _write(url, args.events)
    kind = "no chain" if args.no_chain else "chained"
    print(f"{args.events} events, one commit each: {ms:.3f} ms per event ({kind})")
    if not args.no_chain:
        with store_db.make_session_factory(engine)() as s:
            start = time.perf_counter()
            result = verify(s)
            took = time.perf_counter() - start
        print(
            f"verify: {result.records} records in {took:.2f} s ({'intact' if result.ok else result.problem})"
        )
    engine.dispose()


if __name__ == "__main__":
    main()
