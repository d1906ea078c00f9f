"""Signed door requests: the HMAC check, nonces and secrets on real SQL (SQLite and PostgreSQL), a real
`facegate serve` (valid, replayed, stale, tampered, unsigned at a signing-required door, rotated
secret, the door client's own signatures), and two replicas on one PostgreSQL refusing each other's
replays."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.door.client import DoorClient, RunStats, sign_request
from app.door.config import ConfigError, DoorConfig, door_signing_secret
from app.services.signing import (
    MasterKey,
    RequestSigning,
    SignatureError,
    SignedHeaders,
    SigningConfigError,
    signature,
    string_to_sign,
)
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store.models import RequestNonce
from tests.http_server import ServiceProcess, bearer

PATH = "/v1/doors/{door}/frames"
KEY = "k" * 40


# --- the check on real SQL ------------------------------------------------------------------------


def _headers(
    secret: str, door: int, body: bytes, *, ts: int | None = None, nonce: str | None = None
) -> SignedHeaders:
    stamp = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_urlsafe(18)
    digest = hashlib.sha256(body).hexdigest()
    sig = signature(secret, string_to_sign("POST", PATH.format(door=door), stamp, nonce, digest))
    return SignedHeaders(stamp, nonce, sig)


def _check(signing: RequestSigning, door: int, headers: SignedHeaders, body: bytes, **kw: Any) -> bool:
    return signing.check(
        door, "POST", PATH.format(door=door), headers, hashlib.sha256(body).hexdigest(), **kw
    )


def _code(fn: Any) -> str:
    with pytest.raises(SignatureError) as caught:
        fn()
    return caught.value.code


def test_check_on_real_sql(engine: Engine, tmp_path: Path) -> None:
    sessions = store_db.make_session_factory(engine)
    signing = RequestSigning(sessions, Settings(data_dir=tmp_path, secret_key=KEY, signing_window_s=60))
    with sessions() as s:
        door = q.create_door(s, "Signed")
        open_door = q.create_door(s, "Open")
        assert signing.issue(s, door).generation == 1
        issued = signing.issue(s, door)  # a second issue retires the first
        s.commit()
    secret, body = issued.secret, b"--boundary\r\nframe bytes\r\n--boundary--\r\n"
    assert issued.generation == 2 and secret.startswith("fgs_") and len(secret) == 47
    assert issued.secret == MasterKey(Settings(data_dir=tmp_path, secret_key=KEY)).door_secret(door.id, 2)

    # Unsigned: fine at a door that does not require signing, refused where it does.
    assert _check(signing, open_door.id, SignedHeaders(None, None, None), body) is False
    good = _headers(secret, door.id, body)
    assert _check(signing, door.id, good, body) is True
    assert _code(lambda: _check(signing, door.id, good, body)) == "replayed_request"
    # Tampered body, another path, an old secret, a stale or future timestamp, malformed headers.
    fresh = _headers(secret, door.id, body)
    assert _code(lambda: _check(signing, door.id, fresh, body + b"x")) == "bad_signature"
    digest = hashlib.sha256(body).hexdigest()
    assert (
        _code(lambda: signing.check(door.id, "POST", "/v1/doors/99/frames", fresh, digest)) == "bad_signature"
    )
    old = signing.master.door_secret(door.id, 1)
    assert _code(lambda: _check(signing, door.id, _headers(old, door.id, body), body)) == "bad_signature"
    now = time.time()
    stale = _headers(secret, door.id, body, ts=int(now) - 61)
    assert _code(lambda: _check(signing, door.id, stale, body, now=now)) == "stale_request"
    future = _headers(secret, door.id, body, ts=int(now) + 61)
    assert _code(lambda: _check(signing, door.id, future, body, now=now)) == "stale_request"
    edge = _headers(secret, door.id, body, ts=int(now) - 59)
    assert _check(signing, door.id, edge, body, now=now) is True
    for broken in (
        SignedHeaders(good.timestamp, good.nonce, None),
        SignedHeaders("12.5", fresh.nonce, fresh.signature),
        SignedHeaders(fresh.timestamp, "short", fresh.signature),
        SignedHeaders(fresh.timestamp, fresh.nonce, "sha256=" + "0" * 64),
    ):
        assert _code(lambda b=broken: _check(signing, door.id, b, body)) == "bad_signature"
    # No secret issued yet for the open door: a signature cannot be right.
    assert _code(lambda: _check(signing, open_door.id, _headers(secret, open_door.id, body), body)) == (
        "bad_signature"
    )

    with sessions() as s:
        s.get(type(door), door.id).signing_required = True  # type: ignore[union-attr]
        s.commit()
    assert (
        _code(lambda: _check(signing, door.id, SignedHeaders(None, None, None), body)) == "signature_required"
    )

    # Another master key (a replica not sharing it) is named as such, not as a forged request.
    other = RequestSigning(sessions, Settings(data_dir=tmp_path, secret_key="o" * 40))
    assert _code(lambda: _check(other, door.id, _headers(secret, door.id, body), body)) == "bad_signature"

    # Nonces past the window are purged (at most once per window per replica).
    with sessions() as s:
        s.add(
            RequestNonce(door_id=door.id, nonce="x" * 20, expires_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        s.commit()
    signing._next_purge = 0.0
    assert _check(signing, door.id, _headers(secret, door.id, body), body) is True
    with sessions() as s:
        nonces = set(s.scalars(select(RequestNonce.nonce)))
    assert "x" * 20 not in nonces and len(nonces) == 3


def test_master_key_file_is_made_once_with_mode_600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    a, b = MasterKey(settings), MasterKey(settings)
    assert a.door_secret(1, 1) == b.door_secret(1, 1)  # the second one reads the first one's file
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().strip()) >= 32
    assert a.door_secret(1, 1) != a.door_secret(1, 2) != a.door_secret(2, 1)
    assert MasterKey(Settings(data_dir=tmp_path, secret_key=KEY)).key_id() != a.key_id()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SigningConfigError, match="cannot create"):
        MasterKey(Settings(data_dir=tmp_path, secret_key_file=tmp_path / "a-file" / "secret.key")).key_id()
    (tmp_path / "short.key").write_text("too short\n")
    with pytest.raises(RuntimeError, match="shorter than 32"):
        MasterKey(Settings(data_dir=tmp_path, secret_key_file=tmp_path / "short.key")).key_id()


def test_door_signing_secret_comes_from_env_or_file_never_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEGATE_DOOR_SIGNING_SECRET", raising=False)
    assert door_signing_secret(DoorConfig()) is None
    (tmp_path / "s").write_text("fgs_file\n")
    assert door_signing_secret(DoorConfig(signing_secret_file=tmp_path / "s")) == "fgs_file"
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        door_signing_secret(DoorConfig(signing_secret_file=tmp_path / "empty"))
    monkeypatch.setenv("FACEGATE_DOOR_SIGNING_SECRET", "fgs_env")
    assert door_signing_secret(DoorConfig(signing_secret_file=tmp_path / "s")) == "fgs_env"


def test_door_client_signs_every_try_with_a_new_nonce() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, json={"error": {"code": "busy"}})
        return httpx.Response(
            200, json={"event_id": 1, "decision": "denied", "reason": "no_face", "hint": None, "person": None}
        )

    client = DoorClient(
        "http://door.test",
        3,
        "fg_k",
        DoorConfig(backoff_base_s=0.1),
        sleep=lambda _: None,
        transport=httpx.MockTransport(handler),
        signing_secret="fgs_secret",
    )
    frame = np.full((48, 64, 3), 90, np.uint8)
    assert client._send([(frame, 0.0), (frame, 0.2)], RunStats()) is not None
    client.close()
    assert len(calls) == 2 and calls[0].headers["X-FaceGate-Nonce"] != calls[1].headers["X-FaceGate-Nonce"]
    for call in calls:
        digest = hashlib.sha256(call.content).hexdigest()
        message = string_to_sign(
            "POST",
            "/v1/doors/3/frames",
            call.headers["X-FaceGate-Timestamp"],
            call.headers["X-FaceGate-Nonce"],
            digest,
        )
        assert call.headers["X-FaceGate-Signature"] == signature("fgs_secret", message)
        assert abs(int(call.headers["X-FaceGate-Timestamp"]) - time.time()) < 5


# --- a real service ---------------------------------------------------------------------------------


def _jpeg(value: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _burst(door: int, key: str, value: int = 100) -> httpx.Request:
    files = [("frames", (f"f{i}.jpg", _jpeg(value + i), "image/jpeg")) for i in range(3)]
    request = httpx.Request("POST", f"http://x/v1/doors/{door}/frames", files=files, headers=bearer(key))
    request.read()
    return request


def _send(base: str, request: httpx.Request, **header_changes: str) -> httpx.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
    headers.update(header_changes)
    content = request.content
    return httpx.post(base + request.url.path, content=content, headers=headers, timeout=60)


def _signed(door: int, key: str, secret: str, value: int = 100, ts: int | None = None) -> httpx.Request:
    request = _burst(door, key, value)
    sign_request(request, secret)
    if ts is not None:  # re-sign at another time
        stamp, nonce = str(ts), secrets.token_urlsafe(18)
        digest = hashlib.sha256(request.content).hexdigest()
        request.headers["X-FaceGate-Timestamp"] = stamp
        request.headers["X-FaceGate-Nonce"] = nonce
        request.headers["X-FaceGate-Signature"] = signature(
            secret, string_to_sign("POST", request.url.path, stamp, nonce, digest)
        )
    return request


def _error(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("signed")
    svc = ServiceProcess(folder, model_dir, FACEGATE_SIGNING_WINDOW_S="30")
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=60, headers=bearer(admin))
        doors = {}
        for name in ("Signed", "Open"):
            door = c.post("/v1/doors", json={"name": name, "liveness_required": False}).json()["id"]
            key = c.post("/v1/keys", json={"role": "door", "name": name, "door_id": door}).json()["key"]
            doors[name] = (door, key)
        yield {"svc": svc, "admin": c, "doors": doors, "folder": folder}
        c.close()


@pytest.mark.slow
def test_signed_bursts_against_the_real_service(service: dict[str, Any]) -> None:
    svc, admin = service["svc"], service["admin"]
    door, key = service["doors"]["Signed"]
    base = svc.url

    # No secret yet: unsigned bursts pass (signing not required), signed ones cannot be right.
    assert _send(base, _burst(door, key)).status_code == 200
    r = _send(base, _signed(door, key, "fgs_guess"))
    assert r.status_code == 401 and _error(r) == "bad_signature", r.text
    assert r.headers.get("WWW-Authenticate") == "Bearer"

    issued = admin.post(f"/v1/doors/{door}/signing-secret")
    assert issued.status_code == 201, issued.text
    secret = issued.json()["secret"]
    assert issued.json()["generation"] == 1 and issued.json()["signing_required"] is False
    key_file = service["folder"] / "secret.key"  # made on first use, owner-only
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    signed = _signed(door, key, secret)
    first = _send(base, signed)
    assert first.status_code == 200 and first.json()["reason"] == "no_face", first.text
    replay = _send(base, signed)
    assert replay.status_code == 401 and _error(replay) == "replayed_request", replay.text
    # The same nonce at the other door is another door's business; the signature is not.
    other_door, other_key = service["doors"]["Open"]
    stale = _send(base, _signed(door, key, secret, ts=int(time.time()) - 120))
    assert stale.status_code == 401 and _error(stale) == "stale_request", stale.text
    tampered = _signed(door, key, secret)
    body = bytearray(tampered.content)
    at = body.index(b"\xff\xd8") + 200  # inside the first JPEG
    body[at] ^= 0x01
    headers = {k: v for k, v in tampered.headers.items() if k.lower() not in ("host", "content-length")}
    r = httpx.post(base + tampered.url.path, content=bytes(body), headers=headers, timeout=60)
    assert r.status_code == 401 and _error(r) == "bad_signature", r.text
    # Another door's key is refused as before (403), signed or not.
    r = _send(base, _signed(door, other_key, secret))
    assert r.status_code == 403 and _error(r) == "wrong_door"

    # Signing required: unsigned refused with a clear code; signed accepted.
    patched = admin.patch(f"/v1/doors/{door}", json={"signing_required": True})
    assert patched.status_code == 200 and patched.json()["signing_required"] is True
    assert patched.json()["signing_generation"] == 1
    r = _send(base, _burst(door, key))
    assert r.status_code == 401 and _error(r) == "signature_required", r.text
    assert _send(base, _signed(door, key, secret)).status_code == 200
    # The open door still takes unsigned bursts.
    assert _send(base, _burst(other_door, other_key)).status_code == 200

    # Rotation: the old secret stops at once.
    rotated = admin.post(f"/v1/doors/{door}/signing-secret").json()
    assert rotated["generation"] == 2 and rotated["secret"] != secret
    r = _send(base, _signed(door, key, secret))
    assert r.status_code == 401 and _error(r) == "bad_signature"
    assert _send(base, _signed(door, key, rotated["secret"])).status_code == 200

    # The issue is an admin action in the audit chain: door, generation and key id, never the secret.
    db = sqlite3.connect(service["folder"] / "facegate.db")
    targets = [
        json.loads(t)
        for (t,) in db.execute(
            "SELECT target FROM audit_records WHERE action = 'door.signing_secret' ORDER BY seq"
        )
    ]
    db.close()
    assert [t["generation"] for t in targets] == [1, 2] and all(t["door_id"] == door for t in targets)
    assert not any(secret in json.dumps(t) or rotated["secret"] in json.dumps(t) for t in targets)
    log = (service["folder"] / f"server-{svc.port}.log").read_text()
    assert secret not in log and rotated["secret"] not in log

    # The schema documents the signing headers and codes.
    schema = httpx.get(f"{base}/openapi.json").json()
    op = schema["paths"]["/v1/doors/{door_id}/frames"]["post"]
    assert {"X-FaceGate-Timestamp", "X-FaceGate-Nonce", "X-FaceGate-Signature"} <= {
        p["name"] for p in op["parameters"]
    }
    assert "replayed_request" in op["responses"]["401"]["description"]


@pytest.mark.slow
def test_the_door_client_signs_bursts_the_real_service_accepts(service: dict[str, Any]) -> None:
    svc, admin = service["svc"], service["admin"]
    door, key = service["doors"]["Open"]
    secret = admin.post(f"/v1/doors/{door}/signing-secret").json()["secret"]
    assert admin.patch(f"/v1/doors/{door}", json={"signing_required": True}).status_code == 200
    lines: list[str] = []
    frames = [(np.full((120, 160, 3), 80 + i, np.uint8), i * 0.2) for i in range(5)]
    for used, expect in ((secret, "answer"), (None, "signature_required"), ("fgs_wrong", "bad_signature")):
        client = DoorClient(svc.url, door, key, DoorConfig(), echo=lines.append, signing_secret=used)
        answer = client._send(frames, RunStats())
        client.close()
        if expect == "answer":
            assert answer is not None and answer["reason"] == "no_face", lines
        else:
            assert answer is None and any(expect in line for line in lines), lines
    admin.patch(f"/v1/doors/{door}", json={"signing_required": False})


@pytest.mark.slow
def test_a_replay_is_refused_by_another_replica_on_the_same_postgresql(
    pg_database: str,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    master = secrets.token_urlsafe(32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = ServiceProcess(tmp_path / "a", model_dir, pg_database, FACEGATE_SECRET_KEY=master)
    b = ServiceProcess(tmp_path / "b", model_dir, pg_database, FACEGATE_SECRET_KEY=master)
    assert a.cli("db", "upgrade").returncode == 0
    admin_key = a.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    door_name = f"Replicated {uuid.uuid4().hex[:6]}"
    with a, b:
        c = httpx.Client(base_url=a.url, timeout=60, headers=bearer(admin_key))
        door = c.post("/v1/doors", json={"name": door_name, "liveness_required": False}).json()["id"]
        key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]
        # The CLI issues secrets too (the same master key from the environment).
        issued = a.cli("keys", "signing-secret", "--door-id", str(door))
        assert issued.returncode == 0, issued.stderr
        secret = issued.stdout.strip().splitlines()[-1]
        c.close()
        signed = _signed(door, key, secret)
        assert _send(a.url, signed).status_code == 200
        replay = _send(b.url, signed)
        assert replay.status_code == 401 and _error(replay) == "replayed_request", replay.text
        # B accepts its own fresh requests with the same secret (it derives the same one).
        assert _send(b.url, _signed(door, key, secret)).status_code == 200
        # Both nonces are in the shared table; the replay added none.
        engine = store_db.make_engine(pg_database)
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(RequestNonce)) == 2
        engine.dispose()


@pytest.mark.slow
def test_facegate_door_signs_with_the_secret_from_its_environment(
    service: dict[str, Any], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    svc, admin = service["svc"], service["admin"]
    door = admin.post("/v1/doors", json={"name": "CLI door", "liveness_required": False}).json()["id"]
    key = admin.post("/v1/keys", json={"role": "door", "name": "cli", "door_id": door}).json()["key"]
    secret = admin.post(f"/v1/doors/{door}/signing-secret").json()["secret"]
    assert admin.patch(f"/v1/doors/{door}", json={"signing_required": True}).status_code == 200
    # A still, face-sized skin-tone blob for 4 s: the local check fires once, one burst goes out.
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (480, 360))
    rng = np.random.default_rng(0)
    for _ in range(40):
        img = rng.integers(20, 40, size=(360, 480, 3), dtype=np.uint8)
        cv2.ellipse(img, (240, 180), (60, 80), 0, 0, 360, (120, 160, 220), -1)
        writer.write(img)
    writer.release()
    config = tmp_path / "door.toml"
    config.write_text("detector = 'skin'\nburst_frames = 5\nburst_fps = 5\nretry_s = 60\nmax_attempts = 1\n")

    def run(env_secret: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "FACEGATE_DOOR_SIGNING_SECRET"}
        env["FACEGATE_DOOR_KEY"] = key
        if env_secret is not None:
            env["FACEGATE_DOOR_SIGNING_SECRET"] = env_secret
        args = [
            "door",
            "--server",
            svc.url,
            "--door-id",
            str(door),
            "--source",
            str(video),
            "--config",
            str(config),
        ]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert secret not in done.stdout + done.stderr
        return done.stdout

    signed = run(secret)
    assert f"door {door}: denied, no_face" in signed and "1 answers" in signed, signed
    unsigned = run(None)
    assert "401" in unsigned and "signature_required" in unsigned and "0 answers" in unsigned, unsigned
