"""The audit hash chain (app/audit) on real SQLite and PostgreSQL (PostgreSQL skips when
unreachable): an intact chain verifies; any single altered, deleted or inserted record is found by
its id and `facegate audit verify` exits non-zero; admin actions through the real service carry
the caller's key id; concurrent writers keep one chain."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.audit.log import record_admin_action, verify
from app.cli import cli
from app.settings import get_settings
from app.store import db as store_db
from app.store import queries as q
from app.store.audit_chain import event_body, link_hash
from app.store.models import AccessEvent, AuditRecord, AuditState, utcnow
from tests.http_server import ServiceProcess, bearer

MODEL = "dlib-resnet-v1"


def _session(engine: Engine) -> Session:
    return store_db.make_session_factory(engine)()


def _event(session: Session, door_id: int, **overrides: Any) -> AccessEvent:
    fields: dict[str, Any] = {
        "door_id": door_id,
        "decision": "denied",
        "reason": "unknown_person",
        "frames": 3,
        "frames_with_face": 2,
        "latency_ms": 12.5,
        "model_version": MODEL,
        "request_id": uuid.uuid4().hex,
        "best_distance": 0.61,
        "second_distance": 0.7,
        "tau": 0.5,
        "liveness": {"live": True, "score": 0.83},
    }
    fields.update(overrides)
    return q.record_event(session, **fields)


@pytest.fixture
def chain(engine: Engine) -> dict[str, Any]:
    """A door, five events and two admin actions, committed: seq 1..7."""
    with _session(engine) as s:
        door = q.create_door(s, "Main")
        ids = [_event(s, door.id, person_id=i if i % 2 else None).id for i in range(3)]
        record_admin_action(s, 7, "person.create", {"person_id": 1})
        ids += [_event(s, door.id, decision="granted", reason="recognised", person_id=1).id for _ in range(2)]
        record_admin_action(s, 7, "door.update", {"door_id": door.id, "changed": ["mode"]})
        s.commit()
    return {"door_id": door.id, "event_ids": ids}


def _verify(engine: Engine) -> Any:
    with _session(engine) as s:
        return verify(s)


def _cli_verify(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FACEGATE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, ["audit", "verify"])
    finally:
        get_settings.cache_clear()


def test_intact_chain_verifies(
    engine: Engine, chain: dict[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _verify(engine)
    assert result.ok, result.problem
    assert (result.records, result.events, result.admin_actions, result.legacy_events) == (7, 5, 2, 0)
    with _session(engine) as s:
        links = list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
    assert [r.seq for r in links] == list(range(1, 8))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(links))
    cli_result = _cli_verify(db_url, monkeypatch)
    assert cli_result.exit_code == 0, cli_result.output
    assert "7 records checked (5 access events, 2 admin actions)" in cli_result.output


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision", "granted"),
        ("reason", "recognised"),
        ("person_id", 42),
        ("best_distance", 0.6100001),
        ("liveness", {"live": True, "score": 0.99}),
        ("latency_ms", 1.0),
        ("request_id", "forged"),
        ("claim", "badge-1"),
    ],
)
def test_an_altered_event_field_is_found_by_event_id(
    engine: Engine, chain: dict[str, Any], field: str, value: Any
) -> None:
    victim = chain["event_ids"][2]
    with _session(engine) as s:
        s.execute(update(AccessEvent).where(AccessEvent.id == victim).values({field: value}))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("altered", "access_events", victim)


def test_an_altered_time_and_an_altered_admin_record_are_found(engine: Engine, chain: dict[str, Any]) -> None:
    victim = chain["event_ids"][0]
    with _session(engine) as s:
        stamp = s.get_one(AccessEvent, victim).created_at
        s.execute(
            update(AccessEvent)
            .where(AccessEvent.id == victim)
            .values(created_at=stamp + timedelta(seconds=1))
        )
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None and (problem.kind, problem.id) == ("altered", victim)
    with _session(engine) as s:
        s.execute(update(AccessEvent).where(AccessEvent.id == victim).values(created_at=stamp))
        admin = s.scalars(
            select(AuditRecord).where(AuditRecord.kind == "admin").order_by(AuditRecord.seq)
        ).first()
        assert admin is not None
        s.execute(update(AuditRecord).where(AuditRecord.id == admin.id).values(actor_key_id=8))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("altered", "audit_records", admin.id)


def test_a_deleted_event_is_reported_missing_and_the_cli_exits_non_zero(
    engine: Engine,
    chain: dict[str, Any],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    victim = chain["event_ids"][3]
    with _session(engine) as s:
        s.execute(delete(AccessEvent).where(AccessEvent.id == victim))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("missing", "access_events", victim)
    cli_result = _cli_verify(db_url, monkeypatch)
    assert cli_result.exit_code == 1
    assert f"missing event {victim}" in cli_result.output


def test_a_deleted_event_with_its_link_is_found(engine: Engine, chain: dict[str, Any]) -> None:
    victim = chain["event_ids"][1]
    with _session(engine) as s:
        link = s.scalars(select(AuditRecord).where(AuditRecord.event_id == victim)).one()
        after = s.scalars(select(AuditRecord).where(AuditRecord.seq == link.seq + 1)).one()
        s.execute(delete(AuditRecord).where(AuditRecord.id == link.id))
        s.execute(delete(AccessEvent).where(AccessEvent.id == victim))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("missing", "audit_records", after.id)


def test_a_deleted_last_record_is_found(engine: Engine, chain: dict[str, Any]) -> None:
    with _session(engine) as s:
        last = s.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc())).first()
        assert last is not None
        s.execute(delete(AuditRecord).where(AuditRecord.id == last.id))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None and problem.kind == "missing"


def _forge_event(s: Session, door_id: int) -> int:
    values = {
        "created_at": utcnow(),
        "door_id": door_id,
        "decision": "granted",
        "reason": "recognised",
        "person_id": 1,
        "frames": 3,
        "frames_with_face": 3,
        "latency_ms": 10.0,
        "model_version": MODEL,
        "request_id": "forged",
    }
    return int(s.execute(insert(AccessEvent).values(values).returning(AccessEvent.id)).scalar_one())


def test_an_inserted_event_without_a_link_is_found(
    engine: Engine, chain: dict[str, Any], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _session(engine) as s:
        forged = _forge_event(s, chain["door_id"])
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("inserted", "access_events", forged)
    cli_result = _cli_verify(db_url, monkeypatch)
    assert cli_result.exit_code == 1
    assert f"inserted event {forged}" in cli_result.output


def test_an_inserted_event_with_a_plausible_link_is_found(engine: Engine, chain: dict[str, Any]) -> None:
    """The forger computes a correct hash on the current head and appends it, but cannot make the
    head row agree without rewriting it too (verify prints the head to keep elsewhere)."""
    with _session(engine) as s:
        forged = _forge_event(s, chain["door_id"])
        event = s.get_one(AccessEvent, forged)
        head = s.get_one(AuditState, 1)
        seq = head.seq + 1
        digest = link_hash(head.head_hash, seq, "event", event.created_at, event_body(event))
        link = AuditRecord(
            seq=seq,
            created_at=event.created_at,
            kind="event",
            event_id=forged,
            prev_hash=head.head_hash,
            hash=digest,
        )
        s.add(link)
        s.commit()
        link_id = link.id
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("inserted", "audit_records", link_id)


def test_a_replaced_link_in_the_middle_is_found(engine: Engine, chain: dict[str, Any]) -> None:
    """A forged event linked in place of a real one (a self-consistent hash on the real previous
    hash): the next record no longer links to it."""
    victim = chain["event_ids"][1]
    with _session(engine) as s:
        link = s.scalars(select(AuditRecord).where(AuditRecord.event_id == victim)).one()
        after = s.scalars(select(AuditRecord).where(AuditRecord.seq == link.seq + 1)).one()
        s.execute(update(AccessEvent).where(AccessEvent.id == victim).values(decision="granted"))
        event = s.get_one(AccessEvent, victim)
        s.refresh(event)
        digest = link_hash(link.prev_hash, link.seq, "event", link.created_at, event_body(event))
        s.execute(update(AuditRecord).where(AuditRecord.id == link.id).values(hash=digest))
        s.commit()
    problem = _verify(engine).problem
    assert problem is not None
    assert (problem.kind, problem.table, problem.id) == ("inserted", "audit_records", after.id)


def test_concurrent_writers_keep_one_chain(engine: Engine, db_url: str) -> None:
    """Threads with their own connections append events and admin actions at once (on PostgreSQL
    they meet on the audit_state row lock; SQLite serialises writers anyway)."""
    with _session(engine) as s:
        door_id = q.create_door(s, "Busy").id
        s.commit()
    errors: list[BaseException] = []
    threads_n, per_thread = 6, 10

    def write(worker: int) -> None:
        try:
            for i in range(per_thread):
                with _session(engine) as s:
                    if i % 5 == 4:
                        record_admin_action(s, worker, "key.revoke", {"key_id": i})
                    else:
                        _event(s, door_id, request_id=f"{worker}-{i}")
                    s.commit()
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    # Verifying while they write sees a consistent snapshot: never a false break.
    while any(t.is_alive() for t in threads):
        during = _verify(engine)
        assert during.ok, during.problem
    for t in threads:
        t.join()
    assert errors == []
    result = _verify(engine)
    assert result.ok, result.problem
    assert result.records == threads_n * per_thread
    with _session(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditRecord)) == threads_n * per_thread


def test_events_before_the_migration_are_an_explicit_unchained_prefix(db_url: str) -> None:
    store_db.upgrade(db_url, "0004")
    eng = store_db.make_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO doors (name, created_at, liveness_required, liveness_undetermined, mode) "
                "VALUES ('Old', '2026-01-01 00:00:00', true, 'deny', 'identify')"
            )
        with _session(eng) as s:
            old = [_forge_event(s, 1) for _ in range(2)]
            s.commit()
        store_db.upgrade(db_url)
        with _session(eng) as s:
            _event(s, 1)
            s.commit()
        result = _verify(eng)
        assert result.ok, result.problem
        assert (result.events, result.legacy_events) == (1, 2)
        with _session(eng) as s:
            s.execute(delete(AccessEvent).where(AccessEvent.id == old[0]))
            s.commit()
        problem = _verify(eng).problem
        assert problem is not None and problem.kind == "missing" and problem.table == "access_events"
    finally:
        eng.dispose()


# --- admin actions through the real service -----------------------------------------------------


def test_admin_actions_through_the_service_carry_the_key_id(
    model_dir: Path, tmp_path: Path, astronaut: NDArray[np.uint8]
) -> None:
    svc = ServiceProcess(tmp_path, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "audit-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    admin_id = int(created.stdout.split(" key ")[1].split()[0])
    ok, photo = cv2.imencode(".jpg", cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert ok
    with svc, httpx.Client(base_url=svc.url, timeout=60, headers=bearer(admin)) as c:
        door = c.post("/v1/doors", json={"name": "Lab"}).json()
        assert c.patch(f"/v1/doors/{door['id']}", json={"liveness_required": False}).status_code == 200
        key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door["id"]}).json()
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
        person = c.post("/v1/people", json={"name": "Eileen"}).json()
        face = c.post(
            f"/v1/people/{person['id']}/faces", files={"image": ("a.jpg", photo.tobytes(), "image/jpeg")}
        )
        assert face.status_code == 201, face.text
        assert c.delete(f"/v1/people/{person['id']}").status_code == 204
    verified = svc.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    engine = store_db.make_engine(f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}")
    try:
        with _session(engine) as s:
            links = list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
    finally:
        engine.dispose()
    actions = [(r.actor_key_id, r.action) for r in links]
    assert actions == [
        (None, "key.create"),  # the CLI
        (admin_id, "door.create"),
        (admin_id, "door.update"),
        (admin_id, "key.create"),
        (admin_id, "key.revoke"),
        (admin_id, "person.create"),
        (admin_id, "face.enrol"),
        (admin_id, "person.delete"),
    ]
    targets = {r.action: r.target for r in links}
    assert targets["key.revoke"] == {"key_id": key["id"]}
    assert targets["face.enrol"] == {"person_id": person["id"], "face_id": face.json()["id"]}
    assert targets["person.delete"] == {"person_id": person["id"], "face_ids": [face.json()["id"]]}
    assert targets["door.update"] is not None and targets["door.update"]["changed"] == ["liveness_required"]
    # No secrets, no biometric data in the log.
    dumped = json.dumps([r.target for r in links])
    assert admin not in dumped and "embedding" not in dumped
