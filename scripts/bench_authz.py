#!/usr/bin/env python3
"""What the access rules add to one door decision: the SQL read of the person's rights at the door
plus the pure decision (``app.services.access.authorize_entry``, as ``app/api/frames.py`` calls it).

    python scripts/bench_authz.py [--db-url URL | --pg] [--people 1000] [--groups 50] [--doors 200]
                                  [--requests 2000] [--runs 5]

Builds a realistic site in a fresh database (a temporary SQLite file; --pg: a fresh schema on the
PostgreSQL at FACEGATE_TEST_PG_URL or 127.0.0.1:5432/test, dropped afterwards): people in one to
three of the groups each, most doors granted to three to eight groups (60% of the grants within one
of ten weekly schedules), a tenth of the doors without grants (open), 30 holidays, a fifth of the
people with a validity period. Then ``--runs`` clean processes each time ``--requests`` decisions for
random (person, door) pairs at random times of the week: every decision in its own session, with the
person already loaded, as ``_record`` has it. Prints the median, p99 and mean ms per decision (each
run, then all runs together), the first decision of each process apart (cold), and the mix of
outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.access.schedule import days_mask  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store import db as store_db  # noqa: E402
from app.store.models import (  # noqa: E402
    AccessGrant,
    AccessGroup,
    AccessGroupMember,
    AccessHoliday,
    AccessSchedule,
    AccessScheduleWindow,
    Door,
    Person,
)

PG_URL = os.environ.get("FACEGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ZONE = "Europe/Paris"


def populate(url: str, people: int, groups: int, doors: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Door), [{"name": f"door {i}", "created_at": now} for i in range(doors)])
            conn.execute(insert(Person), [_person(i, rng, now) for i in range(people)])
            conn.execute(
                insert(AccessGroup), [{"name": f"group {i}", "created_at": now} for i in range(groups)]
            )
            conn.execute(
                insert(AccessSchedule),
                [
                    {"name": f"schedule {i}", "applies_on_holidays": i == 0, "created_at": now}
                    for i in range(10)
                ],
            )
            door_ids = [r[0] for r in conn.execute(text("SELECT id FROM doors ORDER BY id"))]
            person_ids = [r[0] for r in conn.execute(text("SELECT id FROM people ORDER BY id"))]
            group_ids = [r[0] for r in conn.execute(text("SELECT id FROM access_groups ORDER BY id"))]
            schedule_ids = [r[0] for r in conn.execute(text("SELECT id FROM access_schedules ORDER BY id"))]
            windows = [w for sid in schedule_ids for w in _windows(sid, rng)]
            conn.execute(insert(AccessScheduleWindow), windows)
            members = [
                {"group_id": g, "person_id": p, "created_at": now}
                for p in person_ids
                for g in rng.sample(group_ids, rng.randint(1, 3))
            ]
            conn.execute(insert(AccessGroupMember), members)
            grants = [
                {
                    "group_id": g,
                    "door_id": d,
                    "schedule_id": rng.choice(schedule_ids) if rng.random() < 0.6 else None,
                    "created_at": now,
                }
                for d in door_ids[doors // 10 :]  # the first tenth stays open
                for g in rng.sample(group_ids, rng.randint(3, 8))
            ]
            conn.execute(insert(AccessGrant), grants)
            start = date(now.year, 1, 1)
            days = sorted(rng.sample(range(730), 30))
            conn.execute(
                insert(AccessHoliday),
                [{"day": start + timedelta(days=d), "name": f"holiday {d}", "created_at": now} for d in days],
            )
    finally:
        engine.dispose()
    return {"members": len(members), "grants": len(grants), "windows": len(windows)}


def _person(i: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {"name": f"person {i}", "created_at": now, "valid_from": None, "valid_until": None}
    if rng.random() < 0.2:  # visitors and contractors
        start = now + timedelta(days=rng.randint(-60, 10))
        row.update(valid_from=start, valid_until=start + timedelta(days=rng.randint(1, 90)))
    return row


def _windows(schedule_id: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.randint(1, 3)):
        days = rng.sample(range(7), rng.randint(1, 5))
        start = rng.randrange(0, 24 * 60, 30)
        end = (start + rng.randrange(120, 16 * 60, 30)) % (24 * 60) or 24 * 60
        out.append(
            {"schedule_id": schedule_id, "days": days_mask(days), "start_minute": start, "end_minute": end}
        )
    return out


def measure(url: str, requests: int, seed: int) -> dict[str, Any]:
    """One clean process: ``requests`` decisions, each in its own session; ms per decision."""
    from app.services.access import authorize_entry
    from app.store import queries

    settings = Settings(site_timezone=ZONE)
    engine = store_db.make_engine(url)
    sessions = store_db.make_session_factory(engine)
    rng = random.Random(seed)
    with engine.connect() as conn:
        people = [r[0] for r in conn.execute(text("SELECT id FROM people"))]
        doors = [r[0] for r in conn.execute(text("SELECT id FROM doors"))]
    base = datetime.now(UTC)
    timings: list[float] = []
    cpu: list[float] = []
    outcomes: Counter[str] = Counter()
    for _ in range(requests):
        person_id, door_id = rng.choice(people), rng.choice(doors)
        now = base + timedelta(minutes=rng.randrange(7 * 24 * 60))
        with sessions() as session:
            person = queries.get_person(session, person_id)  # _record has it already
            assert person is not None
            start, start_cpu = time.perf_counter(), time.thread_time()
            decision = authorize_entry(session, person, door_id, now, settings)
            timings.append((time.perf_counter() - start) * 1000.0)
            cpu.append((time.thread_time() - start_cpu) * 1000.0)
        outcomes[decision.reason or decision.rule.split(":")[0]] += 1
    engine.dispose()
    return {"ms": timings, "cpu_ms": cpu, "outcomes": dict(outcomes)}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db-url", help="an empty database to fill (default: a temporary SQLite file)")
    parser.add_argument("--pg", action="store_true", help="a fresh schema on the test PostgreSQL")
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--doors", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000, help="decisions per run")
    parser.add_argument("--runs", type=int, default=5, help="clean processes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one run on this URL
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.requests, args.seed)))
        return

    schema = None
    tmp = tempfile.TemporaryDirectory()
    url = args.db_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    if args.pg:
        schema = f"fg_bench_{uuid.uuid4().hex[:12]}"
        with create_engine(PG_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = (
            make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
        )
    try:
        sizes = populate(url, args.people, args.groups, args.doors, args.seed)
        backend = make_url(url).get_backend_name()
        print(
            f"{backend}: {args.people} people, {args.groups} groups ({sizes['members']} memberships), "
            f"{args.doors} doors ({sizes['grants']} grants, {args.doors // 10} open doors), 10 schedules "
            f"({sizes['windows']} windows), 30 holidays; site zone {ZONE}"
        )
        all_ms: list[float] = []
        all_cpu: list[float] = []
        cold: list[float] = []
        outcomes: Counter[str] = Counter()
        for run in range(args.runs):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    url,
                    "--requests",
                    str(args.requests),
                    "--seed",
                    str(run),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            ms = result["ms"]
            cold.append(ms[0])
            warm = ms[1:]
            all_ms += warm
            all_cpu += result["cpu_ms"][1:]
            outcomes.update(result["outcomes"])
            print(
                f"run {run + 1}: median {statistics.median(warm):.3f} ms, p99 {_p(warm, 0.99):.3f} ms, "
                f"mean {statistics.fmean(warm):.3f} ms, first decision {ms[0]:.2f} ms"
            )
        print(
            f"all {len(all_ms)} decisions: median {statistics.median(all_ms):.3f} ms, "
            f"p99 {_p(all_ms, 0.99):.3f} ms, mean {statistics.fmean(all_ms):.3f} ms, "
            f"max {max(all_ms):.2f} ms (wall clock; target <= 2 ms)"
        )
        print(
            f"this thread's CPU time (the wall clock less waiting for a core or the server): median "
            f"{statistics.median(all_cpu):.3f} ms, p99 {_p(all_cpu, 0.99):.3f} ms; first decision per "
            f"process (cold): median {statistics.median(cold):.2f} ms"
        )
        total = sum(outcomes.values())
        mix = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in outcomes.most_common())
        print(f"outcomes: {mix}")
    finally:
        if schema is not None:
            with create_engine(PG_URL).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        tmp.cleanup()


if __name__ == "__main__":
    main()
