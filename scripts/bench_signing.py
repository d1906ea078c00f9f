#!/usr/bin/env python3
"""What a signed door request costs the service, per request, and what a rate-limit check costs.

    python scripts/bench_signing.py [--db-url URL] [--requests 2000] [--body-kb 480]

- hashing the body: SHA-256 of a burst-sized body fed in 64 KiB chunks, as the ASGI middleware
  sees it arrive (a door burst of 8 VGA JPEGs is ~ 400-600 kB);
- the signature: deriving the door's secret from the master key, HMAC-SHA256 over the string to
  sign, constant-time compare;
- ``RequestSigning.check`` end to end: the door read, the signature, the nonce INSERT and its commit
  (a temporary SQLite file unless --db-url names an empty database: it is migrated and written to);
- one token-bucket take (app/api/ratelimit.py).

Prints the median and p99 of each, in milliseconds (µs for the small ones).
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.api.ratelimit import TokenBuckets  # noqa: E402
from app.services.signing import (  # noqa: E402
    MasterKey,
    RequestSigning,
    SignedHeaders,
    signature,
    string_to_sign,
)
from app.settings import Settings  # noqa: E402
from app.store import db as store_db  # noqa: E402
from app.store import queries as q  # noqa: E402

CHUNK = 65536


def _times(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _report(name: str, seconds: list[float], unit: str = "ms") -> None:
    scale = 1e3 if unit == "ms" else 1e6
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(
        f"{name:46s} median {statistics.median(ordered) * scale:8.3f} {unit}   p99 {p99 * scale:8.3f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db-url", help="An empty database, migrated here (default: a temporary SQLite file)."
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--body-kb", type=int, default=480, help="Body size in kB (default: 8 VGA JPEGs).")
    args = parser.parse_args()

    body = secrets.token_bytes(args.body_kb * 1000)
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]

    def hash_body() -> str:
        h = hashlib.sha256()
        for c in chunks:
            h.update(c)
        return h.hexdigest()

    digest = hash_body()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key=secrets.token_urlsafe(32))
        master = MasterKey(settings)
        path = "/v1/doors/1/frames"

        def sign_and_compare() -> bool:
            stamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
            message = string_to_sign("POST", path, stamp, nonce, digest)
            expected = signature(master.door_secret(1, 1), message)
            return secrets.compare_digest(expected, signature(master.door_secret(1, 1), message))

        url = args.db_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store_db.upgrade(url)
        engine = store_db.make_engine(url)
        sessions = store_db.make_session_factory(engine)
        signing = RequestSigning(sessions, settings, master)
        with sessions() as s:
            door = q.create_door(s, f"bench-{secrets.token_hex(4)}")
            secret = signing.issue(s, door).secret
            door_id = door.id
            s.commit()
        path = f"/v1/doors/{door_id}/frames"

        def check() -> bool:
            stamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
            sig = signature(secret, string_to_sign("POST", path, stamp, nonce, digest))
            return signing.check(door_id, "POST", path, SignedHeaders(stamp, nonce, sig), digest)

        buckets = TokenBuckets({"door": 1e9}, {"door": 10**9})
        print(f"body {len(body) / 1000:.0f} kB, {args.requests} requests, database {engine.dialect.name}")
        _report("SHA-256 of the body (streamed, 64 KiB chunks)", _times(hash_body, min(args.requests, 500)))
        _report("derive secret + HMAC + compare", _times(sign_and_compare, args.requests * 5), "µs")
        unsigned = SignedHeaders(None, None, None)
        _report(
            "check() unsigned: the door read only",
            _times(lambda: signing.check(door_id, "POST", path, unsigned, None), args.requests),
        )
        _report("check(): door read, HMAC, nonce insert+commit", _times(check, args.requests))
        _report("rate limit: one token-bucket take", _times(lambda: buckets.take(1, "door"), 100_000), "µs")
        engine.dispose()


if __name__ == "__main__":
    main()
