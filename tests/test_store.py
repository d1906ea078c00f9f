"""app.store on a fresh SQLite file and on PostgreSQL (a fresh schema per test; skipped when the
server at 127.0.0.1:5432, or FACEGATE_TEST_PG_URL, is unreachable)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from numpy.typing import NDArray
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from app.store import db as store_db
from app.store import queries as q
from app.store.models import AccessEvent, ApiKey, Base

MODEL = "dlib-resnet-v1"
SHA = "ab" * 32


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with store_db.make_session_factory(engine)() as s:
        yield s


def _vec(rng: np.random.Generator, dim: int = 128) -> np.ndarray:
    return rng.standard_normal(dim).astype(np.float32)


def _event(session: Session, door_id: int, **overrides: object) -> AccessEvent:
    fields: dict[str, object] = {
        "door_id": door_id,
        "decision": "denied",
        "reason": "unknown_person",
        "frames": 3,
        "frames_with_face": 2,
        "latency_ms": 12.5,
        "model_version": MODEL,
        "request_id": uuid.uuid4().hex,
    }
    fields.update(overrides)
    return q.record_event(session, **fields)  # type: ignore[arg-type]


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


# --- schema ------------------------------------------------------------------------------------


def test_migrations_up_down_up_without_drift(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    try:
        store_db.upgrade(db_url)
        store_db.check_schema(engine)
        assert store_db.current_revision(engine) == store_db.head_revision()
        assert _drift(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables

        store_db.downgrade(db_url, "base")
        assert store_db.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        store_db.upgrade(db_url)
        assert _drift(engine) == []
        with Session(engine) as s:
            assert q.gallery_version(s) == 0
    finally:
        engine.dispose()


def test_check_schema_refuses_uninitialised_behind_and_unknown(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = store_db.make_engine(db_url)
    try:
        head = store_db.head_revision()
        with pytest.raises(store_db.SchemaError, match=r"at revision <none>.*run `facegate db upgrade`"):
            store_db.check_schema(engine)

        store_db.upgrade(db_url)
        store_db.check_schema(engine)

        # A newer FaceGate would have a later head: this database is then behind.
        monkeypatch.setattr(store_db, "head_revision", lambda: "0099")
        with pytest.raises(store_db.SchemaError, match=rf"at revision {head}, this FaceGate needs 0099"):
            store_db.check_schema(engine)
        monkeypatch.undo()

        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'fffffff'"))
        with pytest.raises(store_db.SchemaError, match="newer version"):
            store_db.check_schema(engine)
    finally:
        engine.dispose()


def test_env_takes_url_from_settings_when_none_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    store_db.upgrade(None)
    engine = store_db.make_engine(f"sqlite:///{(tmp_path / 'var' / 'facegate.db').as_posix()}")
    try:
        store_db.check_schema(engine)
    finally:
        engine.dispose()


def test_sqlite_connection_pragmas(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'a' / 'b' / 'x.db').as_posix()}"
    engine = store_db.make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store_db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_times_are_aware_utc_and_naive_is_refused(session: Session) -> None:
    door = q.create_door(session, "front")
    local = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    ev = _event(session, door.id, created_at=local)
    session.commit()
    session.expire_all()
    got = q.get_event(session, ev.id)
    assert got is not None
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert door.created_at.tzinfo is not None

    with pytest.raises(StatementError, match="naive datetime"):
        _event(session, door.id, created_at=datetime(2024, 5, 1, 12, 0))
    session.rollback()


# --- API keys ----------------------------------------------------------------------------------


def test_keys_are_hashed_and_authenticate(session: Session, engine: Engine) -> None:
    key, secret = q.create_api_key(session, "admin", "bootstrap")
    session.commit()
    assert secret.startswith("fg_")
    assert len(secret) >= 3 + 43  # 32 random bytes in url-safe base64
    assert key.prefix == secret[:8]
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()

    # Nothing in the stored row contains the secret (or its random tail).
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key.id}).one()
    for value in row:
        assert secret not in str(value)
        assert secret[8:] not in str(value)

    found = q.authenticate(session, secret)
    assert found is not None
    assert found.id == key.id
    assert found.last_used_at is not None
    session.commit()

    assert q.authenticate(session, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert q.authenticate(session, "fg_" + "x" * 43) is None
    assert q.authenticate(session, "") is None
    assert q.authenticate(session, "Bearer " + secret) is None
    assert q.authenticate(session, secret + "x" * 1000) is None

    assert q.revoke_api_key(session, key.id) is not None
    session.commit()
    assert q.authenticate(session, secret) is None
    assert q.revoke_api_key(session, 999_999) is None


def test_secret_not_in_sqlite_file(db_url: str, engine: Engine, session: Session) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("scans the SQLite file")
    _, secret = q.create_api_key(session, "auditor", "audit")
    session.commit()
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(make_url(db_url).database or "")
    blob = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert secret[8:].encode() not in blob


def test_door_key_needs_a_door(session: Session) -> None:
    with pytest.raises(ValueError, match="needs a door_id"):
        q.create_api_key(session, "door", "cam")
    with pytest.raises(ValueError, match="no door_id"):
        q.create_api_key(session, "admin", "a", door_id=1)
    with pytest.raises(ValueError, match="unknown role"):
        q.create_api_key(session, "root", "r")

    door = q.create_door(session, "lobby")
    _, secret = q.create_api_key(session, "door", "lobby cam", door_id=door.id)
    session.commit()
    found = q.authenticate(session, secret)
    assert found is not None
    assert (found.role, found.door_id) == ("door", door.id)

    # The database enforces the same rules for writers that bypass queries.py.
    for bad in (
        {"role": "door", "door_id": None},
        {"role": "auditor", "door_id": door.id},
        {"role": "root", "door_id": None},
        {"role": "door", "door_id": 424242},  # no such door
    ):
        session.add(ApiKey(name="bad", prefix="fg_xxxxx", key_hash="0" * 64, **bad))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()


# --- doors and people --------------------------------------------------------------------------


def test_unique_door_names_and_external_ids(session: Session) -> None:
    q.create_door(session, "front")
    session.commit()
    with pytest.raises(IntegrityError):
        q.create_door(session, "front")
    session.rollback()

    q.create_person(session, "Ada", external_id="E1")
    q.create_person(session, "Bob")
    q.create_person(session, "Cy")  # several people without external id
    session.commit()
    with pytest.raises(IntegrityError):
        q.create_person(session, "Ada again", external_id="E1")
    session.rollback()
    person = q.get_person_by_external_id(session, "E1")
    assert person is not None
    assert person.name == "Ada"
    assert [d.name for d in q.list_doors(session)] == ["front"]


def test_upgrade_gives_existing_doors_the_secure_liveness_policy(db_url: str) -> None:
    engine = store_db.make_engine(db_url)
    try:
        store_db.upgrade(db_url, "0001")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO doors (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"))
        store_db.upgrade(db_url)
        with Session(engine) as s:
            (door,) = q.list_doors(s)
            assert (door.name, door.liveness_required, door.liveness_undetermined) == ("old", True, "deny")
        with engine.begin() as conn, pytest.raises(IntegrityError):
            conn.execute(text("UPDATE doors SET liveness_undetermined = 'maybe'"))
    finally:
        engine.dispose()


def test_door_policy_create_and_update(session: Session) -> None:
    door = q.create_door(session, "lab", liveness_required=False, liveness_undetermined="grant")
    session.commit()
    assert (door.liveness_required, door.liveness_undetermined) == (False, "grant")
    updated = q.update_door(session, door.id, liveness_required=True)
    session.commit()
    assert updated is not None
    assert (updated.name, updated.liveness_required, updated.liveness_undetermined) == ("lab", True, "grant")
    assert q.update_door(session, 999_999, name="x") is None
    with pytest.raises(ValueError, match="liveness_undetermined"):
        q.update_door(session, door.id, liveness_undetermined="maybe")
    with pytest.raises(ValueError, match="liveness_undetermined"):
        q.create_door(session, "other", liveness_undetermined="open")


def test_embeddings_round_trip_bit_exact(session: Session) -> None:
    rng = np.random.default_rng(0)
    person = q.create_person(session, "Ada")
    vec = _vec(rng)
    # Values whose bits a lossy path would change.
    vec[:6] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1 / 3, -7.1]
    big_endian = _vec(rng).astype(">f4")
    t1 = q.add_template(
        session, person.id, vec, model_version=MODEL, quality={"score": 1.25, "width": 96}, image_sha256=SHA
    )
    t2 = q.add_template(
        session,
        person.id,
        big_endian,
        model_version=MODEL,
        quality={},
        image_sha256=SHA,
        thumbnail=b"\x00\xff",
    )
    session.commit()
    session.expire_all()

    got1 = q.get_template(session, t1.id)
    got2 = q.get_template(session, t2.id)
    assert got1 is not None
    assert got2 is not None
    assert got1.embedding == vec.astype("<f4").tobytes()
    assert q.template_vector(got1).tobytes() == vec.tobytes()
    assert np.array_equal(q.template_vector(got2), big_endian)
    assert (got1.dim, got1.model_version, got1.quality) == (128, MODEL, {"score": 1.25, "width": 96})
    assert got2.thumbnail == b"\x00\xff"
    assert got1.thumbnail is None

    arrays = q.all_templates(session, MODEL)
    assert arrays.vectors.dtype == np.float32
    assert arrays.vectors[0].tobytes() == vec.tobytes()

    bad_vectors: list[NDArray[Any]] = [
        vec.astype(np.float64),
        vec.reshape(2, 64),
        np.array([np.nan] * 4, np.float32),
    ]
    for bad in bad_vectors:
        with pytest.raises(ValueError, match="embedding"):
            q.add_template(session, person.id, bad, model_version=MODEL, quality={}, image_sha256=SHA)


def test_delete_person_cascades_keeps_events_and_bumps_version(session: Session, engine: Engine) -> None:
    rng = np.random.default_rng(1)
    door = q.create_door(session, "front")
    ada = q.create_person(session, "Ada")
    bob = q.create_person(session, "Bob")
    ada_tpl = [
        q.add_template(session, ada.id, _vec(rng), model_version=MODEL, quality={}, image_sha256=SHA).id
        for _ in range(3)
    ]
    bob_tpl = q.add_template(session, bob.id, _vec(rng), model_version=MODEL, quality={}, image_sha256=SHA).id
    ev = _event(session, door.id, decision="granted", reason="match", person_id=ada.id, best_distance=0.31)
    session.commit()
    version = q.gallery_version(session)
    assert version == 4
    assert dict((p.name, n) for p, n in q.list_people(session)) == {"Ada": 3, "Bob": 1}

    assert q.delete_person(session, ada.id) == ada_tpl
    session.commit()
    assert q.delete_person(session, ada.id) is None
    assert q.gallery_version(session) == version + 1

    with engine.connect() as conn:  # the cascade happened in the database, not only in the ORM
        left = conn.execute(text("SELECT id FROM face_templates ORDER BY id")).scalars().all()
    assert left == [bob_tpl]
    session.expire_all()
    kept = q.get_event(session, ev.id)
    assert kept is not None
    assert kept.person_id == ada.id
    assert q.get_person(session, ada.id) is None
    assert [e.id for e in q.list_events(session, person_id=ada.id)[0]] == [ev.id]

    # A deleted person's id is never handed out again (SQLite AUTOINCREMENT), so old events
    # cannot be attributed to someone new.
    cy = q.create_person(session, "Cy")
    assert cy.id > bob.id


def test_all_templates_and_change_feed(session: Session) -> None:
    rng = np.random.default_rng(2)
    people = [q.create_person(session, f"p{i}") for i in range(4)]
    expected: dict[int, tuple[int, np.ndarray]] = {}
    for i in range(10):
        person = people[i % 4]
        vec = _vec(rng)
        tpl = q.add_template(session, person.id, vec, model_version=MODEL, quality={}, image_sha256=SHA)
        expected[tpl.id] = (person.id, vec)
    q.add_template(
        session, people[0].id, _vec(rng, 64), model_version="other-v2", quality={}, image_sha256=SHA
    )
    session.commit()

    version, arrays = q.gallery_snapshot(session, MODEL, dim=128)
    assert version == 11
    assert arrays.ids.dtype == np.int64
    assert arrays.person_ids.dtype == np.int64
    assert arrays.vectors.shape == (10, 128)
    assert arrays.vectors.flags.c_contiguous
    assert list(arrays.ids) == sorted(expected)
    for tid, pid, row in zip(arrays.ids, arrays.person_ids, arrays.vectors, strict=True):
        assert pid == expected[int(tid)][0]
        assert row.tobytes() == expected[int(tid)][1].tobytes()
    assert q.all_templates(session, "other-v2").vectors.shape == (1, 64)
    empty = q.all_templates(session, "nothing", dim=128)
    assert (empty.ids.shape, empty.vectors.shape) == ((0,), (0, 128))
    with pytest.raises(ValueError, match="dimension"):
        q.all_templates(session, "other-v2", dim=128)

    # Changes after the snapshot: one added, one deleted singly, one person deleted.
    new = q.add_template(session, people[1].id, _vec(rng), model_version=MODEL, quality={}, image_sha256=SHA)
    first = int(arrays.ids[0])
    assert q.delete_template(session, first)
    assert not q.delete_template(session, first)
    gone = q.delete_person(session, people[3].id)
    assert gone
    transient = q.add_template(
        session, people[2].id, _vec(rng), model_version=MODEL, quality={}, image_sha256=SHA
    )
    assert q.delete_template(session, transient.id)
    session.commit()

    delta = q.gallery_changes_since(session, version, MODEL, dim=128)
    assert delta is not None
    assert delta.version == q.gallery_version(session)
    assert sorted(delta.removed_ids.tolist()) == sorted([first, *gone, transient.id])
    assert delta.added.ids.tolist() == [new.id]
    assert delta.added.vectors.shape == (1, 128)

    # Applying the delta to the snapshot gives the same set as a fresh snapshot.
    ids = (set(arrays.ids.tolist()) - set(delta.removed_ids.tolist())) | set(delta.added.ids.tolist())
    assert ids == set(q.all_templates(session, MODEL).ids.tolist())

    nothing = q.gallery_changes_since(session, delta.version, MODEL, dim=128)
    assert nothing is not None
    assert (nothing.removed_ids.size, nothing.added.ids.size) == (0, 0)
    assert q.gallery_changes_since(session, delta.version + 5, MODEL) is None  # database was reset


# --- access events -----------------------------------------------------------------------------


def test_list_events_filters_and_cursor_pagination(session: Session) -> None:
    front = q.create_door(session, "front")
    back = q.create_door(session, "back")
    t0 = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    events = []
    for i in range(25):
        # Pairs of events share a timestamp: the id must break the tie.
        at = t0 + timedelta(minutes=i // 2, microseconds=7)
        granted = i % 3 == 0
        events.append(
            _event(
                session,
                front.id if i % 2 == 0 else back.id,
                created_at=at,
                decision="granted" if granted else "denied",
                reason="match" if granted else "unknown_person",
                person_id=100 + i % 4 if granted else None,
                liveness={"score": 0.9} if granted else None,
            )
        )
    session.commit()
    newest_first = sorted(events, key=lambda e: (e.created_at, e.id), reverse=True)

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = q.list_events(session, limit=10, cursor=cursor)
        pages += 1
        seen += [e.id for e in page]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [e.id for e in newest_first]
    assert len(set(seen)) == 25

    # Paging survives new events arriving between pages: they are newer, so they do not shift it.
    page1, cur = q.list_events(session, limit=10)
    _event(session, front.id, created_at=t0 + timedelta(days=1))
    session.commit()
    page2, _ = q.list_events(session, limit=10, cursor=cur)
    assert [e.id for e in page1 + page2] == [e.id for e in newest_first[:20]]

    def ids(**filters: object) -> list[int]:
        out: list[int] = []
        cur: str | None = None
        while True:
            page, cur = q.list_events(session, limit=4, cursor=cur, **filters)  # type: ignore[arg-type]
            out += [e.id for e in page]
            if cur is None:
                return out

    # until excludes the event added one day later.
    assert ids(door_id=front.id, until=t0 + timedelta(days=1)) == [
        e.id for e in newest_first if e.door_id == front.id
    ]
    assert ids(decision="granted") == [e.id for e in newest_first if e.decision == "granted"]
    assert ids(person_id=101) == [e.id for e in newest_first if e.person_id == 101]
    since, until = t0 + timedelta(minutes=3), t0 + timedelta(minutes=8, microseconds=7)
    assert ids(since=since, until=until) == [e.id for e in newest_first if since <= e.created_at < until]
    assert ids(door_id=back.id, decision="denied", since=since) == [
        e.id
        for e in newest_first
        if e.door_id == back.id and e.decision == "denied" and e.created_at >= since
    ]

    got = q.get_event(session, events[0].id)
    assert got is not None
    assert got.liveness == {"score": 0.9}
    assert got.person_id == 100


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "bm90IGpzb24", q.encode_cursor(datetime(2024, 1, 1, tzinfo=UTC), 1)[:-3] + "zzz"],
)
def test_bad_cursor_is_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="bad cursor"):
        q.decode_cursor(cursor)


def test_bad_cursor_and_arguments_in_list_events(session: Session) -> None:
    naive = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00", 1]).encode()).decode()
    not_int = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00+00:00", "1"]).encode()).decode()
    for cursor in ("garbage", naive, not_int, "W10"):
        with pytest.raises(ValueError, match="bad cursor"):
            q.list_events(session, cursor=cursor)
    with pytest.raises(ValueError, match="limit"):
        q.list_events(session, limit=0)
    with pytest.raises(ValueError, match="decision"):
        q.list_events(session, decision="maybe")
    with pytest.raises(ValueError, match="timezone-aware"):
        q.list_events(session, since=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="decision"):
        _event(session, 1, decision="maybe")


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_writers_do_not_fail(engine: Engine) -> None:
    """Two threads enrol and log events at once. On SQLite the second writer waits (busy_timeout)
    instead of failing with 'database is locked'; on PostgreSQL they queue on the gallery row."""
    factory = store_db.make_session_factory(engine)
    with factory() as s:
        door_id = q.create_door(s, "front").id
        person_ids = [q.create_person(s, "a").id, q.create_person(s, "b").id]
        s.commit()
    rounds = 40
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(person_id: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            barrier.wait()
            for _ in range(rounds):
                with factory() as s:
                    q.add_template(s, person_id, _vec(rng), model_version=MODEL, quality={}, image_sha256=SHA)
                    _event(s, door_id, person_id=person_id)
                    s.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pid, i)) for i, pid in enumerate(person_ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        assert q.gallery_version(s) == 2 * rounds
        assert len(q.all_templates(s, MODEL).ids) == 2 * rounds
        assert s.scalar(select(func.count()).select_from(AccessEvent)) == 2 * rounds
        # Every version appears once in the feed: writers were serialised on the gallery row.
        delta = q.gallery_changes_since(s, 0, MODEL)
        assert delta is not None
        assert len(delta.added.ids) == 2 * rounds
