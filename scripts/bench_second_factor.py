"""What the second factor and lockdown cost per door request.

- ``verify_pin``: one scrypt check at each cost (log2 N), median and p90 over --repeat runs;
- ``check_after_authorization`` on a fresh SQLite file (what _record adds to every burst): no
  lockdown and no PIN (one indexed read), an 'all_but' lockdown (plus the person's groups), and a
  PIN door with the right PIN (plus the hash).

    .venv/bin/python scripts/bench_second_factor.py [--repeat 30]
"""

from __future__ import annotations

import argparse
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


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    for log2_n in (12, 14, 15, 16):
        encoded = pinlib.hash_pin("482913", log2_n=log2_n)
        med, p90 = _ms(lambda e=encoded: pinlib.verify_pin("482913", e), args.repeat)
        mib = 128 * pinlib.SCRYPT_R * (1 << log2_n) / 2**20
        print(
            f"verify_pin scrypt ln={log2_n} (N=2^{log2_n}, r=8, p=1, {mib:.0f} MiB): "
            f"median {med:.1f} ms, p90 {p90:.1f} ms"
        )

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

        def one(pin: str | None) -> None:
            with factory() as s:
                p = s.get(Person, person_id)
                check_after_authorization(s, settings, door_id=door_id, person=p, would_grant=True, pin=pin)
                s.rollback()

        med, p90 = _ms(lambda: one(None), args.repeat * 10)
        print(
            f"check_after_authorization, no lockdown, no PIN (SQLite): median {med:.2f} ms, p90 {p90:.2f} ms"
        )
        with factory() as s:
            sfq.start_lockdown(s, mode="all_but", allowed_group_ids=[1], note=None, key_id=None)
            s.commit()
        med, p90 = _ms(lambda: one(None), args.repeat * 10)
        print(
            f"check_after_authorization, 'all_but' lockdown (SQLite): median {med:.2f} ms, p90 {p90:.2f} ms"
        )
        with factory() as s:
            sfq.lift_lockdown(s, None)
            p = s.get(Person, person_id)
            assert p is not None
            sfq.set_pin_hash(s, p, pinlib.hash_pin("482913", log2_n=settings.pin_scrypt_log2_n))
            p.pin_required = True
            s.commit()
        med, p90 = _ms(lambda: one("482913"), args.repeat)
        print(
            f"check_after_authorization, PIN required, right PIN, ln={settings.pin_scrypt_log2_n} (SQLite): "
            f"median {med:.1f} ms, p90 {p90:.1f} ms"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
