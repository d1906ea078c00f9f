"""What the second factor and lockdown cost per door request.

- ``verify_pin``: one scrypt check at each cost (log2 N), median and p90 over --repeat runs;
- ``check_after_authorization`` on a fresh SQLite file (what _record adds to every burst): no
  lockdown and no PIN (one indexed read), an 'all_but' lockdown (plus the person's groups), and a
  PIN door with the right PIN (plus the hash).

    .venv/bin/python scripts/bench_second_factor.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from app.access import pin as pinlib
from app.services.second_factor import check_after_authorization
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store import second_factor_queries as sfq
from app.store.models import Person


def _ms(fn: Callable[[], object], repeat: int) -> str:
    """Median and p90 wall-clock time, and the median CPU time of this thread (what the code costs
    when a machine shared with other work makes it wait for a core)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000.0)
        cpu.append((time.thread_time() - c) * 1000.0)
    wall.sort()
    p90 = wall[min(len(wall) - 1, int(0.9 * len(wall)))]
    median, cpu_median = statistics.median(wall), statistics.median(cpu)
    return f"median {median:.2f} ms, p90 {p90:.2f} ms, CPU median {cpu_median:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for log2_n in (12, 14, 15, 16):
        encoded = pinlib.hash_pin("482913", log2_n=log2_n)
        took = _ms(functools.partial(pinlib.verify_pin, "482913", encoded), args.repeat)
        mib = 128 * pinlib.SCRYPT_R * (1 << log2_n) / 2**20
        print(f"verify_pin scrypt ln={log2_n} (N=2^{log2_n}, r=8, p=1, {mib:.0f} MiB): {took}")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store_db.upgrade(url)
        engine = store_db.make_engine(url)
        factory = store_db.make_session_factory(engine)
        settings = Settings(data_dir=Path(tmp))
        with factory() as s:
            door = q.create_door(s, "Bench")
            person = q.create_person(s, "Bench person")
            s.execute(
                text("INSERT INTO access_groups (name, created_at) VALUES ('g', '2026-01-01 00:00:00')")
            )
            s.execute(
                text(
                    "INSERT INTO access_group_members (group_id, person_id, created_at) "
                    "VALUES (1, :p, '2026-01-01')"
                ),
                {"p": person.id},
            )
            s.commit()
            door_id, person_id = door.id, person.id

        def timed(pin: str | None, repeat: int) -> str:
            """The checks alone, in a session that already holds the person (as _record's does);
            none of these paths writes anything."""
            with factory() as s:
                p = s.get(Person, person_id)
                return _ms(
                    lambda: check_after_authorization(
                        s, settings, door_id=door_id, person=p, would_grant=True, pin=pin
                    ),
                    repeat,
                )

        print(
            "check_after_authorization, no lockdown, no PIN (SQLite):",
            timed(None, args.repeat * 10),
        )
        with factory() as s:
            sfq.start_lockdown(s, mode="all_but", allowed_group_ids=[1], note=None, key_id=None)
            s.commit()
        print(
            "check_after_authorization, 'all_but' lockdown (SQLite):",
            timed(None, args.repeat * 10),
        )
        with factory() as s:
            sfq.lift_lockdown(s, None)
            p = s.get(Person, person_id)
            assert p is not None
            sfq.set_pin_hash(s, p, pinlib.hash_pin("482913", log2_n=settings.pin_scrypt_log2_n))
            p.pin_required = True
            s.commit()
        took = timed("482913", args.repeat)
        ln = settings.pin_scrypt_log2_n
        print(f"check_after_authorization, PIN required, right PIN, ln={ln} (SQLite): {took}")
        engine.dispose()


if __name__ == "__main__":
    main()
