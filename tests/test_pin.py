"""The PIN second factor: hash and verify (app/access/pin.py), the lockout rule, the SQL state on
SQLite and PostgreSQL (concurrent wrong PINs count one after the other), the door client's resend
with a PIN, and the whole flow through the real service over HTTP: door and person settings, wrong
PIN lockout and reset, look-alikes turned on, audit records without the PIN."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.access import pin as pinlib
from app.access.pin import FailureState, LockoutPolicy, PinFormatError, PinHashError, decide_pin
from app.door.client import DoorClient
from app.door.config import DoorConfig
from app.door.pin_entry import PinEntry
from app.services.second_factor import check_after_authorization
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store import second_factor_queries as sfq
from app.store.models import AuditRecord, Person, PinFailure
from tests.http_server import ServiceProcess, bearer
from tests.test_door_client import _frame, _write_video

PIN = "482913"  # searched for in logs, events and audit records: it must appear in none
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


# --- hashing -------------------------------------------------------------------------------------


def test_hash_and_verify() -> None:
    encoded = pinlib.hash_pin(PIN)
    assert encoded.startswith("scrypt$ln=14,r=8,p=1$") and PIN not in encoded
    assert pinlib.verify_pin(PIN, encoded)
    for other in ("482914", "48291", "4829130", "000000", "", "48291a", " 482913"):
        assert not pinlib.verify_pin(other, encoded), other
    # A random salt per hash: the same PIN never hashes the same twice.
    again = pinlib.hash_pin(PIN)
    assert again != encoded and pinlib.verify_pin(PIN, again)
    # The cost is a parameter, kept in the hash: a hash made at another cost still verifies.
    cheap = pinlib.hash_pin("1234", log2_n=10)
    assert cheap.startswith("scrypt$ln=10,") and pinlib.verify_pin("1234", cheap)
    with pytest.raises(ValueError, match="log2_n"):
        pinlib.hash_pin("1234", log2_n=9)


@pytest.mark.parametrize("bad", ["123", "1234567890123", "12a4", "12 34", "١٢٣٤", "+1234", "", "1234\n"])
def test_only_4_to_12_ascii_digits_are_pins(bad: str) -> None:
    with pytest.raises(PinFormatError) as exc:
        pinlib.validate_pin(bad)
    assert bad.strip() == "" or bad not in str(exc.value)  # the message never repeats the input
    with pytest.raises(PinFormatError):
        pinlib.hash_pin(bad)


@pytest.mark.parametrize(
    "stored",
    [
        "bcrypt$x",
        "scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # 2**30: a memory bomb
        "scrypt$ln=14,r=8,p=1$!!!!$" + "A" * 44,
        "scrypt$ln=14,r=8,p=1$AAAA$" + "A" * 44,  # 3-byte salt
    ],
)
def test_a_stored_hash_this_code_did_not_make_is_refused(stored: str) -> None:
    with pytest.raises(PinHashError):
        pinlib.verify_pin("1234", stored)


def test_a_tampered_hash_does_not_verify() -> None:
    encoded = pinlib.hash_pin("7391")
    head, salt, digest = encoded.rsplit("$", 2)
    flipped = ("B" if digest[0] == "A" else "A") + digest[1:]
    assert not pinlib.verify_pin("7391", f"{head}${salt}${flipped}")


# --- the lockout rule ----------------------------------------------------------------------------


def test_wrong_pins_lock_out_and_a_correct_pin_resets() -> None:
    policy = LockoutPolicy(max_failures=3, lockout_s=60)
    encoded = pinlib.hash_pin("2468", log2_n=10)
    state = FailureState()
    checks = []
    now = T0
    for pin in ("1111", "2222", "2468", "1111", "2222", "3333", "2468"):
        d = decide_pin(pin=pin, pin_hash=encoded, state=state, now=now, policy=policy)
        checks.append(d.check)
        state = d.state if d.state is not None else state
        now += timedelta(seconds=1)
    # Two wrong, a correct one resets, three wrong lock out: even the right PIN is then refused.
    assert checks == ["wrong", "wrong", "correct", "wrong", "wrong", "wrong", "locked_out"]
    assert state.locked_until == T0 + timedelta(seconds=5 + 60) and state.failures == 0
    later = T0 + timedelta(seconds=5 + 60)
    assert decide_pin(pin="2468", pin_hash=encoded, state=state, now=later, policy=policy).check == "correct"
    # Order: no PIN set, then locked out, then none sent.
    assert decide_pin(pin=None, pin_hash=None, state=state, now=now, policy=policy).reason == "pin_not_set"
    assert (
        decide_pin(pin=None, pin_hash=encoded, state=state, now=now, policy=policy).reason == "pin_locked_out"
    )
    free = FailureState()
    assert decide_pin(pin=None, pin_hash=encoded, state=free, now=now, policy=policy).reason == "pin_required"


# --- SQL state (SQLite and PostgreSQL) -----------------------------------------------------------


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, pin_max_failures=5, pin_lockout_s=900, **overrides)


def _check(engine: Engine, settings: Settings, person_id: int, door_id: int, pin: str | None) -> str | None:
    """One burst's checks after authorization, committed as _record commits them."""
    with store_db.make_session_factory(engine)() as s:
        person = s.get(Person, person_id)
        after = check_after_authorization(
            s, settings, door_id=door_id, person=person, would_grant=True, pin=pin
        )
        s.commit()
    return after.pin_check


def test_lockout_state_is_shared_in_sql_and_concurrent_wrong_pins_count_one_by_one(
    engine: Engine, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    factory = store_db.make_session_factory(engine)
    with factory() as s:
        door = q.create_door(s, "Server room")
        other = q.create_door(s, "Lobby")
        person = q.create_person(s, "Grace")
        sfq.set_pin_hash(s, person, pinlib.hash_pin(PIN, log2_n=10))
        person.pin_required = True
        s.commit()
        pid, did, other_id = person.id, door.id, other.id
    # Two wrong PINs, then the right one: the count goes back to zero (the row is gone).
    assert [_check(engine, settings, pid, did, p) for p in ("000000", "111111")] == ["wrong", "wrong"]
    with factory() as s:
        assert s.get(PinFailure, (pid, did)).failures == 2  # type: ignore[union-attr]
    assert _check(engine, settings, pid, did, PIN) == "correct"
    with factory() as s:
        assert s.get(PinFailure, (pid, did)) is None

    # Eight wrong PINs at once, each on its own connection (as from several replicas): exactly
    # five count, the fifth locks out, and the three that lost the race find the lockout.
    results: list[str | None] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        results.append(_check(engine, settings, pid, did, f"90000{i}"))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r or "" for r in results) == ["locked_out"] * 3 + ["wrong"] * 5
    assert _check(engine, settings, pid, did, PIN) == "locked_out"  # the right PIN too, at this door
    assert _check(engine, settings, pid, other_id, PIN) == "correct"  # only at this door
    with factory() as s:
        row = s.get(PinFailure, (pid, did))
        assert row is not None and row.failures == 0 and row.locked_until is not None
        until = row.locked_until
    assert timedelta(seconds=890) < until - datetime.now(UTC) <= timedelta(seconds=900)
    # A new PIN (or an admin's unlock) lifts it.
    with factory() as s:
        again = s.get(Person, pid)
        assert again is not None
        sfq.set_pin_hash(s, again, pinlib.hash_pin("7777", log2_n=10))
        s.commit()
    assert _check(engine, settings, pid, did, "7777") == "correct"

    # A hash this code did not write (a hand-edited row) is no PIN: denied, never a crash.
    with factory() as s:
        again = s.get(Person, pid)
        assert again is not None
        again.pin_hash = "md5$5f4dcc3b5aa765d61d8327deb882cf99"
        s.commit()
    assert _check(engine, settings, pid, did, "7777") == "not_set"
    # Wrong PINs and lockouts go with their person.
    _check(engine, settings, pid, other_id, "0000")
    with factory() as s:
        sfq.set_pin_hash(s, s.get(Person, pid), pinlib.hash_pin("7777", log2_n=10))  # type: ignore[arg-type]
        s.commit()
    _check(engine, settings, pid, other_id, "0000")
    with factory() as s:
        assert len(sfq.pin_failures(s, pid)) == 1
        assert q.delete_person(s, pid) is not None
        s.commit()
        assert s.scalars(select(PinFailure)).all() == []


def test_migration_0007_up_down_up(db_url: str) -> None:
    """Up and down over existing rows: doors and people that other tables point at must not be
    recreated (on SQLite that trips the foreign keys)."""
    from sqlalchemy import inspect, text

    store_db.upgrade(db_url, "0006")
    eng = store_db.make_engine(db_url)
    with eng.begin() as conn:
        t = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        conn.execute(
            text(
                "INSERT INTO doors (name, created_at, liveness_required, liveness_undetermined, mode) "
                "VALUES ('Old', :t, :yes, 'deny', 'identify')"
            ),
            {"t": t, "yes": True},
        )
        conn.execute(text("INSERT INTO people (name, created_at) VALUES ('P', :t)"), {"t": t})
        conn.execute(
            text(
                "INSERT INTO access_events (created_at, door_id, decision, reason, frames, frames_with_face, "
                "latency_ms, model_version, request_id) VALUES (:t, 1, 'denied', 'x', 1, 1, 1.0, 'm', 'r')"
            ),
            {"t": t},
        )
    store_db.upgrade(db_url, "0007")
    try:
        with eng.connect() as conn:
            assert conn.execute(text("SELECT pin_required FROM doors")).scalar_one() in (False, 0)
            assert conn.execute(text("SELECT pin_hash FROM people")).scalar_one() is None
        names = set(inspect(eng).get_table_names())
        assert {"pin_failures", "lockdowns"} <= names
        assert {"pin_required", "pin_hash"} <= {c["name"] for c in inspect(eng).get_columns("people")}
        store_db.downgrade(db_url, "0006")
        eng.dispose()
        cols = {c["name"] for c in inspect(eng).get_columns("people")}
        assert "pin_hash" not in cols and "lockdowns" not in set(inspect(eng).get_table_names())
        assert "pin_required" not in {c["name"] for c in inspect(eng).get_columns("doors")}
        store_db.upgrade(db_url, "0007")
        eng.dispose()
        assert "lockdown_id" in {c["name"] for c in inspect(eng).get_columns("access_events")}
    finally:
        eng.dispose()


# --- the door client -----------------------------------------------------------------------------


def test_the_door_client_resends_the_same_burst_with_a_pin_it_reads(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "still.avi", [_frame((240, 180), seed=i) for i in range(30)])
    bodies: list[list[tuple[str, bytes]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(_parts(request))
        has_pin = any(name == "pin" for name, _ in bodies[-1])
        answer = {
            "event_id": len(bodies),
            "decision": "granted" if has_pin else "denied",
            "reason": "match" if has_pin else "pin_required",
            "hint": None,
            "person": {"id": 3, "name": "Ada"} if has_pin else None,
        }
        return httpx.Response(200, json=answer)

    lines: list[str] = []
    cfg = DoorConfig(burst_frames=5, burst_fps=5, cooldown_s=100)
    keypad = PinEntry("stdin", stdin=io.StringIO(PIN + "\n"), echo=lines.append)
    client = DoorClient(
        "http://door.test",
        2,
        "k",
        cfg,
        echo=lines.append,
        transport=httpx.MockTransport(handler),
        pin_entry=keypad,
    )
    stats = client.run(str(video))
    client.close()
    assert [a["reason"] for a in stats.answers] == ["pin_required", "match"]
    first, second = bodies
    # The very same frames and timestamps went again, with the PIN.
    assert [n for n, _ in first].count("frames") == 5 and "pin" not in [n for n, _ in first]
    assert sorted(second) == sorted([*first, ("pin", PIN.encode())])
    assert PIN not in "\n".join(lines) and any("PIN required" in line for line in lines)


def _parts(request: httpx.Request) -> list[tuple[str, bytes]]:
    """(field name, value) of a multipart request, in order."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    parts = []
    for chunk in request.content.split(b"--" + boundary)[1:-1]:
        head, _, value = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        parts.append((name, value))
    return parts


def test_pin_entry_sources(tmp_path: Path) -> None:
    said: list[str] = []
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    assert PinEntry(f"file:{pin_file}").read() == PIN
    pin_file.write_text("12ab\n")
    assert PinEntry(f"file:{pin_file}", echo=said.append).read() is None
    assert PinEntry(f"file:{tmp_path / 'absent'}", echo=said.append).read() is None
    assert PinEntry("stdin", stdin=io.StringIO(""), echo=said.append).read() is None
    assert said == [
        "the PIN entered is not 4 to 12 digits; not sent",
        f"cannot read the PIN from {tmp_path / 'absent'}: FileNotFoundError",
        "no PIN entered",
    ]
    with pytest.raises(ValueError):
        PinEntry("1234")
    with pytest.raises(ValueError):
        DoorConfig(pin_from="1234")  # a PIN on the command line or in the config is refused
    assert DoorConfig(pin_from="file:/run/keypad").pin_from == "file:/run/keypad"


# --- through the real service --------------------------------------------------------------------


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def photos() -> dict[str, bytes]:
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut())
    frame = np.full((480, 640, 3), 60, np.uint8)
    small = cv2.resize(np.ascontiguousarray(astronaut[:, ::-1]), (400, 400))
    frame[40:440, 120:520] = (small * 0.8).astype(np.uint8)
    camera = np.ascontiguousarray(np.dstack([data.camera()] * 3))
    return {
        "astronaut": jpeg(astronaut),
        "astronaut_frame": jpeg(frame, 80),
        "astronaut_mirror": jpeg(np.ascontiguousarray(astronaut[:, ::-1]), 85),
        "camera": jpeg(camera),
        "camera_big": jpeg(cv2.resize(camera, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)),
    }


class Site:
    """A running service with an admin, a door without liveness (still photos), its key and an
    auditor; helpers for people, frames and the audit chain."""

    def __init__(self, svc: ServiceProcess, admin: str, db_url: str) -> None:
        self.svc, self.admin, self.db_url = svc, admin, db_url
        self.c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
        self.door = self.c.post("/v1/doors", json={"name": "Lab", "liveness_required": False}).json()["id"]
        self.door_key = self.key("door", door_id=self.door)
        self.auditor = self.key("auditor")

    def key(self, role: str, door_id: int | None = None) -> str:
        r = self.c.post("/v1/keys", json={"role": role, "name": f"{role}-{door_id}", "door_id": door_id})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def person(self, name: str, photo: bytes, *, force: bool = False) -> int:
        pid = int(self.c.post("/v1/people", json={"name": name}).json()["id"])
        r = self.c.post(
            f"/v1/people/{pid}/faces",
            params={"force": "true"} if force else None,
            files={"image": ("p.jpg", photo, "image/jpeg")},
        )
        assert r.status_code == 201, r.text
        return pid

    def frames(
        self, photo: bytes, *, pin: str | None = None, door: int | None = None, key: str | None = None
    ) -> httpx.Response:
        data = {"pin": pin} if pin is not None else None
        return self.c.post(
            f"/v1/doors/{door or self.door}/frames",
            files=[("frames", ("f.jpg", photo, "image/jpeg"))],
            data=data,
            headers=bearer(key or self.door_key),
        )

    def decide(self, photo: bytes, **kw: Any) -> tuple[str, str, str | None]:
        r = self.frames(photo, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        return body["decision"], body["reason"], body["pin_check"]

    def audit(self) -> list[AuditRecord]:
        eng = store_db.make_engine(self.db_url)
        try:
            with Session(eng) as s:
                return list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        finally:
            eng.dispose()

    def verify_chain(self) -> None:
        verified = self.svc.cli("audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def start_site(model_dir: Path, data_dir: Path, db_url: str, **env: str) -> tuple[ServiceProcess, str]:
    svc = ServiceProcess(data_dir, model_dir, database_url=db_url, **env)
    upgrade = svc.cli("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    created = svc.cli("keys", "create", "--role", "admin", "--name", "admin")
    assert created.returncode == 0, created.stderr
    return svc, created.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_pin_through_the_service(model_dir: Path, tmp_path: Path, db_url: str) -> None:
    p = photos()
    svc, admin = start_site(
        model_dir, tmp_path, db_url, FACEGATE_PIN_MAX_FAILURES="3", FACEGATE_PIN_LOCKOUT_S="2"
    )
    with svc:
        site = Site(svc, admin, db_url)
        c = site.c
        pid = site.person("Eileen", p["astronaut"])
        assert site.decide(p["astronaut_frame"]) == ("granted", "match", None)  # no PIN anywhere yet

        # The door asks everyone for a PIN; Eileen has none yet.
        r = c.patch(f"/v1/doors/{site.door}", json={"pin_required": True})
        assert r.status_code == 200 and r.json()["pin_required"] is True
        assert site.decide(p["astronaut_frame"], pin=PIN) == ("denied", "pin_not_set", "not_set")

        # Admin only; the PIN is validated and never echoed.
        for key in (site.door_key, site.auditor):
            r = c.put(f"/v1/people/{pid}/pin", json={"pin": PIN}, headers=bearer(key))
            assert r.status_code == 403
        r = c.put(f"/v1/people/{pid}/pin", json={"pin": "12ab"})
        assert r.status_code == 422 and "12ab" not in r.text
        assert c.put("/v1/people/999999/pin", json={"pin": PIN}).status_code == 404
        r = c.put(f"/v1/people/{pid}/pin", json={"pin": PIN})
        assert r.status_code == 200, r.text
        assert r.json() == {"person_id": pid, "pin_required": False, "pin_set": True, "lockouts": []}
        assert PIN not in r.text

        # No PIN sent, a malformed one, the right one.
        assert site.decide(p["astronaut_frame"]) == ("denied", "pin_required", "missing")
        r = site.frames(p["astronaut_frame"], pin="48a913")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert "48a913" not in r.text
        assert site.decide(p["astronaut_frame"], pin=PIN) == ("granted", "match", "correct")
        # A stranger at a PIN door is still just unknown; the PIN is not looked at.
        assert site.decide(p["camera"], pin=PIN)[:2] == ("denied", "unknown_person")

        # Two wrong, one right (resets), three wrong: locked out, even with the right PIN.
        wrong = [site.decide(p["astronaut_frame"], pin=x)[1] for x in ("000000", "111111")]
        assert wrong == ["wrong_pin", "wrong_pin"]
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "match"
        wrong = [site.decide(p["astronaut_frame"], pin=x)[1] for x in ("000000", "111111", "222222")]
        assert wrong == ["wrong_pin"] * 3
        assert site.decide(p["astronaut_frame"], pin=PIN) == ("denied", "pin_locked_out", "locked_out")
        status = c.get(f"/v1/people/{pid}/second-factor").json()
        assert [(x["door_id"], x["locked"]) for x in status["lockouts"]] == [(site.door, True)]
        # The lockout ends on its own (FACEGATE_PIN_LOCKOUT_S=2 here) ...
        time.sleep(2.2)
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "match"
        # ... or an admin lifts it.
        for x in ("000000", "111111", "222222"):
            site.decide(p["astronaut_frame"], pin=x)
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "pin_locked_out"
        r = c.delete(f"/v1/people/{pid}/pin/lockouts")
        assert r.status_code == 200 and r.json()["lockouts"] == []
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "match"

        # Per person instead of per door.
        c.patch(f"/v1/doors/{site.door}", json={"pin_required": False})
        assert site.decide(p["astronaut_frame"]) == ("granted", "match", None)
        r = c.patch(f"/v1/people/{pid}/second-factor", json={"pin_required": True})
        assert r.status_code == 200 and r.json()["pin_required"] is True
        assert site.decide(p["astronaut_frame"])[1] == "pin_required"
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "match"
        r = c.delete(f"/v1/people/{pid}/pin")
        assert r.status_code == 200 and r.json()["pin_set"] is False
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "pin_not_set"

        events = httpx.get(
            f"{svc.url}/v1/events", params={"limit": 200}, headers=bearer(site.auditor), timeout=60
        ).json()["items"]
    log_text = svc.log.read_text()
    checks = {e["pin_check"] for e in events}
    assert {"correct", "wrong", "missing", "locked_out", "not_set", None} <= checks
    for e in events:  # a PIN reason always comes with its check; strangers never get one
        expected = _PIN_CHECK_OF.get(e["reason"], "any")
        assert expected == "any" or e["pin_check"] == expected, e
    # The PIN is nowhere: not in events, not in the log, not in the audit chain.
    assert PIN not in json.dumps(events) and PIN not in log_text
    records = site.audit()
    pin_actions = [(r.action, r.target) for r in records if r.action and r.action.startswith("person.pin")]
    assert pin_actions == [
        ("person.pin_set", {"person_id": pid}),
        ("person.pin_unlock", {"person_id": pid, "doors": 1}),
        ("person.pin_required", {"person_id": pid, "pin_required": True}),
        ("person.pin_clear", {"person_id": pid}),
    ]
    dumped = json.dumps([r.target for r in records])
    assert PIN not in dumped and "scrypt" not in dumped
    site.verify_chain()


_PIN_CHECK_OF = {
    "pin_required": "missing",
    "wrong_pin": "wrong",
    "pin_locked_out": "locked_out",
    "pin_not_set": "not_set",
    "unknown_person": None,
}


@pytest.mark.slow
def test_look_alikes_get_a_pin_when_the_admin_chooses(model_dir: Path, tmp_path: Path, db_url: str) -> None:
    p = photos()
    svc, admin = start_site(model_dir, tmp_path, db_url)
    with svc:
        site = Site(svc, admin, db_url)
        eileen = site.person("Eileen", p["astronaut"])
        twin = site.person("Twin", p["astronaut_mirror"], force=True)  # the same face: a look-alike pair
        other = site.person("Camera", p["camera_big"])
        calibration = site.c.get("/v1/gallery/calibration").json()
        below = [
            (x["person_a"]["id"], x["person_b"]["id"]) for x in calibration["look_alikes"] if x["below_tau"]
        ]
        assert below == [(eileen, twin)]
        r = site.c.post("/v1/gallery/look-alikes/require-pin", json={}, headers=bearer(site.auditor))
        assert r.status_code == 403
        r = site.c.post("/v1/gallery/look-alikes/require-pin", json={"scope": "below_tau"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["people"], out["enabled"], out["without_pin"]) == (
            [eileen, twin],
            [eileen, twin],
            [eileen, twin],
        )
        # Idempotent: nobody new the second time.
        assert site.c.post("/v1/gallery/look-alikes/require-pin", json={}).json()["enabled"] == []
        flags = {
            pid: site.c.get(f"/v1/people/{pid}/second-factor").json()["pin_required"]
            for pid in (eileen, twin, other)
        }
        assert flags == {eileen: True, twin: True, other: False}
        # 'all' takes every reported pair, the distant stranger's too.
        out = site.c.post("/v1/gallery/look-alikes/require-pin", json={"scope": "all"}).json()
        assert out["enabled"] == [other]
        assert site.c.post("/v1/gallery/look-alikes/require-pin", json={"scope": "some"}).status_code == 422
    targets = [r.target or {} for r in site.audit() if r.action == "pin.lookalikes"]
    assert [(t["scope"], t["enabled"]) for t in targets] == [
        ("below_tau", [eileen, twin]),
        ("below_tau", []),
        ("all", [other]),
    ]
    assert targets[0]["pairs"] == [[eileen, twin]]
    site.verify_chain()


@pytest.mark.slow
def test_the_pin_for_lookalikes_setting_turns_it_on_after_calibration(
    model_dir: Path, tmp_path: Path
) -> None:
    p = photos()
    url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
    svc, admin = start_site(model_dir, tmp_path, url, FACEGATE_PIN_FOR_LOOKALIKES="true")
    with svc:
        site = Site(svc, admin, url)
        eileen = site.person("Eileen", p["astronaut"])
        twin = site.person("Twin", p["astronaut_mirror"], force=True)
        deadline = time.monotonic() + 60
        flags: list[bool] = []
        while time.monotonic() < deadline:
            flags = [
                site.c.get(f"/v1/people/{x}/second-factor").json()["pin_required"] for x in (eileen, twin)
            ]
            if all(flags):
                break
            time.sleep(0.5)
        assert flags == [True, True]
    actions = [(r.actor_key_id, r.action, r.target) for r in site.audit() if r.action == "pin.lookalikes"]
    assert len(actions) == 1 and actions[0][0] is None and actions[0][2]["enabled"] == [eileen, twin]  # type: ignore[index]
    site.verify_chain()


def test_the_door_client_gets_in_with_a_pin_against_the_real_service(model_dir: Path, tmp_path: Path) -> None:
    """End to end: the door client on a video of an enrolled face, at a door that asks for a PIN,
    with a keypad file: denied pin_required, then the same burst with the PIN is granted."""
    p = photos()
    url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
    svc, admin = start_site(model_dir, tmp_path, url)
    frame = cv2.imdecode(np.frombuffer(p["astronaut_frame"], np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    # 3 s of the face, held still with 1-px jitter.
    video = _write_video(tmp_path / "door.avi", [np.roll(frame, i % 2, axis=1) for i in range(30)])
    keypad = tmp_path / "keypad"
    keypad.write_text(PIN + "\n")
    with svc:
        site = Site(svc, admin, url)
        pid = site.person("Eileen", p["astronaut"])
        site.c.patch(f"/v1/doors/{site.door}", json={"pin_required": True})
        site.c.put(f"/v1/people/{pid}/pin", json={"pin": PIN})
        lines: list[str] = []
        cfg = DoorConfig(burst_frames=5, burst_fps=5, cooldown_s=100, pin_from=f"file:{keypad}")
        client = DoorClient(svc.url, site.door, site.door_key, cfg, echo=lines.append)
        stats = client.run(str(video))
        client.close()
    assert [(a["reason"], a["pin_check"]) for a in stats.answers][:2] == [
        ("pin_required", "missing"),
        ("match", "correct"),
    ]
    assert PIN not in "\n".join(lines)
