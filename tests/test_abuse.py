"""Abuse: per-key rate limits (429 rate_limited with Retry-After), key expiry (401 key_expired), the
request size cap on chunked bodies, and alerts on a streak of unknown-person bursts at one door:
stored, readable by auditors and admins, judged on real SQL (SQLite and PostgreSQL), published to
the real Mosquitto at 127.0.0.1:1883 (skipped when absent) and POSTed to a webhook, never blocking
a request."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
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
from sqlalchemy import Engine

from app.api.ratelimit import TokenBuckets
from app.services.alerts import STREAK_KIND, AlertService, Publisher
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store import security
from tests.http_server import ServiceProcess, bearer

# --- token buckets ---------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate_per_key() -> None:
    now = [100.0]
    buckets = TokenBuckets({"door": 2.0, "admin": 0.0}, {"door": 3, "admin": 1}, clock=lambda: now[0])
    assert [buckets.take(1, "door") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(1, "door") == pytest.approx(0.5)  # empty: one token every 0.5 s
    assert buckets.take(2, "door") == 0.0  # another key has its own bucket
    now[0] += 0.5
    assert buckets.take(1, "door") == 0.0
    assert buckets.take(1, "door") == pytest.approx(0.5)
    now[0] += 60  # refills up to the burst size, not beyond
    assert [buckets.take(1, "door") for _ in range(4)][-1] > 0.0
    assert all(buckets.take(5, "admin") == 0.0 for _ in range(1000))  # rate 0: no limit


def test_rate_settings_merge_with_defaults_and_are_validated() -> None:
    s = Settings(rate_limit_per_s={"door": 1.5})
    assert s.rate_limit_per_s["door"] == 1.5 and s.rate_limit_per_s["admin"] == 50.0
    with pytest.raises(ValueError, match="rates must be"):
        Settings(rate_limit_per_s={"door": -1})
    with pytest.raises(ValueError, match="bursts must be"):
        Settings(rate_limit_burst={"auditor": 0})
    with pytest.raises(ValueError):
        Settings(rate_limit_per_s={"robot": 1})


# --- streaks on real SQL ---------------------------------------------------------------------------


def _event(s: Any, door: int, reason: str, at: datetime, decision: str = "denied") -> int:
    event = q.record_event(
        s,
        door_id=door,
        decision=decision,
        reason=reason,
        frames=3,
        frames_with_face=3,
        latency_ms=10.0,
        model_version="m",
        request_id=uuid.uuid4().hex,
        created_at=at,
    )
    s.commit()
    return event.id


def test_streak_rules_on_real_sql(engine: Engine, tmp_path: Path) -> None:
    sessions = store_db.make_session_factory(engine)
    alerts = AlertService(sessions, Settings(data_dir=tmp_path, alert_streak=3, alert_streak_window_s=60))
    assert not alerts.publisher.enabled
    with sessions() as s:
        door, other = q.create_door(s, "A").id, q.create_door(s, "B").id
        s.commit()
    t0 = datetime.now(UTC) - timedelta(minutes=30)

    def judge(door_id: int) -> Any:
        with sessions() as s:
            alert = alerts._judge(s, door_id)
            s.commit()
            return alert

    with sessions() as s:
        ids = [_event(s, door, "unknown_person", t0), _event(s, door, "spoof", t0 + timedelta(seconds=5))]
        assert judge(door) is None  # two in a row: not yet
        _event(s, other, "spoof", t0 + timedelta(seconds=6))  # another door does not count
        ids.append(_event(s, door, "unknown_person", t0 + timedelta(seconds=10)))
    alert = judge(door)
    assert alert is not None and alert.kind == STREAK_KIND and alert.door_id == door
    assert alert.details["event_ids"] == ids and alert.details["reasons"] == {"unknown_person": 2, "spoof": 1}
    with sessions() as s:
        _event(s, door, "spoof", t0 + timedelta(seconds=11))
    assert judge(door) is None  # the same streak: one alert per 3 bursts
    with sessions() as s:
        _event(s, door, "spoof", t0 + timedelta(seconds=12))
        _event(s, door, "spoof", t0 + timedelta(seconds=13))  # streak of 6, the last 3 are new
    assert judge(door) is not None
    with sessions() as s:  # a grant or another denial breaks the streak
        _event(s, door, "match", t0 + timedelta(seconds=20), decision="granted")
        _event(s, door, "spoof", t0 + timedelta(seconds=21))
        _event(s, door, "spoof", t0 + timedelta(seconds=22))
    assert judge(door) is None
    with sessions() as s:  # three in a row, but over more than the 60 s window
        _event(s, other, "spoof", t0 + timedelta(seconds=100))
        _event(s, other, "unknown_person", t0 + timedelta(seconds=200))
    assert judge(other) is None
    with sessions() as s:
        assert len(security.list_alerts(s, door_id=door)) == 2 and not security.list_alerts(s, door_id=other)


def test_publishing_never_blocks_and_drops_when_full(tmp_path: Path) -> None:
    # A broker that refuses connections and a webhook that never answers.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    settings = Settings(
        data_dir=tmp_path,
        mqtt_url=f"mqtt://127.0.0.1:{dead_port}",
        mqtt_publish_events=True,
        alert_webhook_url=f"http://127.0.0.1:{silent.getsockname()[1]}/hook",
        publish_queue_max=5,
    )
    publisher = Publisher(settings)
    started = time.perf_counter()
    results = [publisher.submit("alert", {"n": i}) for i in range(200)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    assert results.count(False) >= 190 and publisher.dropped == results.count(False)
    publisher.close(timeout_s=1.0)
    silent.close()


# --- a real service --------------------------------------------------------------------------------


def _mqtt_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


class _Webhook(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


class _Subscriber:
    def __init__(self, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.ready.wait(10)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("abuse")
    prefix = f"fgtest-{uuid.uuid4().hex[:8]}"
    webhook = _Webhook()
    mqtt = _mqtt_up()
    env = {
        "FACEGATE_ALERT_STREAK": "3",
        "FACEGATE_ALERT_WEBHOOK_URL": webhook.url,
        "FACEGATE_RATE_LIMIT_PER_S": '{"auditor": 1}',
        "FACEGATE_RATE_LIMIT_BURST": '{"auditor": 3}',
        "FACEGATE_MAX_IMAGE_BYTES": "200000",
        "FACEGATE_MAX_FRAMES": "5",
    }
    if mqtt:
        env |= {
            "FACEGATE_MQTT_URL": "mqtt://127.0.0.1:1883",
            "FACEGATE_MQTT_TOPIC_PREFIX": prefix,
            "FACEGATE_MQTT_PUBLISH_EVENTS": "true",
        }
    svc = ServiceProcess(folder, model_dir, **env)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
        yield {"svc": svc, "admin": c, "folder": folder, "webhook": webhook, "prefix": prefix, "mqtt": mqtt}
        c.close()
    webhook.shutdown()


@pytest.mark.slow
def test_rate_limit_answers_429_with_retry_after(service: dict[str, Any]) -> None:
    svc, admin = service["svc"], service["admin"]
    auditor = admin.post("/v1/keys", json={"role": "auditor", "name": "desk"}).json()["key"]
    other = admin.post("/v1/keys", json={"role": "auditor", "name": "desk 2"}).json()["key"]
    with httpx.Client(base_url=svc.url, headers=bearer(auditor), timeout=30) as c:
        codes = [c.get("/v1/events").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        r = c.get("/v1/events")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        wait = int(r.headers["Retry-After"])
        assert 1 <= wait <= 2
        # Another key of the same role, and the admin, are not held back by this one.
        assert httpx.get(f"{svc.url}/v1/events", headers=bearer(other), timeout=30).status_code == 200
        assert admin.get("/v1/keys").status_code == 200
        time.sleep(wait)
        assert c.get("/v1/events").status_code == 200
    schema = httpx.get(f"{svc.url}/openapi.json").json()
    documented = schema["paths"]["/v1/events"]["get"]["responses"]["429"]
    assert "rate_limited" in documented["description"] and "Retry-After" in documented["headers"]


@pytest.mark.slow
def test_an_expired_key_is_refused_with_key_expired(service: dict[str, Any]) -> None:
    svc, admin = service["svc"], service["admin"]
    created = admin.post("/v1/keys", json={"role": "auditor", "name": "temp", "expires_in_s": 3600}).json()
    assert created["expires_at"] is not None
    at = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(created["created_at"])
    assert at == timedelta(hours=1)
    assert httpx.get(f"{svc.url}/v1/alerts", headers=bearer(created["key"]), timeout=30).status_code == 200
    assert admin.post("/v1/keys", json={"role": "auditor", "name": "x", "expires_in_s": 5}).status_code == 422
    # Move its expiry into the past, as time would.
    db = sqlite3.connect(service["folder"] / "facegate.db")
    past = (datetime.now(UTC) - timedelta(seconds=1)).replace(tzinfo=None).isoformat(sep=" ")
    db.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", (past, created["id"]))
    db.commit()
    db.close()
    r = httpx.get(f"{svc.url}/v1/alerts", headers=bearer(created["key"]), timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_expired", r.text
    # The CLI sets expiries too, and refuses nonsense.
    made = svc.cli("keys", "create", "--role", "auditor", "--name", "cli", "--expires-in", "90d")
    assert made.returncode == 0 and "expires 20" in made.stdout, made.stdout + made.stderr
    bad = svc.cli("keys", "create", "--role", "auditor", "--name", "cli", "--expires-in", "5x")
    assert bad.returncode == 2 and "--expires-in" in bad.stderr


@pytest.mark.slow
def test_a_chunked_body_over_the_cap_is_refused_413(service: dict[str, Any]) -> None:
    svc = service["svc"]
    door = service["admin"].post("/v1/doors", json={"name": "Chunked"}).json()["id"]
    key = service["admin"].post("/v1/keys", json={"role": "door", "name": "c", "door_id": door}).json()["key"]
    boundary = "xyz"

    def body() -> Iterator[bytes]:  # no Content-Length: a chunked upload of 5 x 200 kB + 64 kB + more
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="frames"; filename="a.jpg"\r\n\r\n'
        yield head.encode()
        for _ in range(40):
            yield b"\0" * 65536

    headers = {**bearer(key), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = httpx.post(f"{svc.url}/v1/doors/{door}/frames", content=body(), headers=headers, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert "request_id" in r.json()["error"]


@pytest.mark.slow
def test_an_unknown_person_streak_raises_an_alert_stored_and_published(service: dict[str, Any]) -> None:
    from skimage import data

    svc, admin, webhook, prefix = service["svc"], service["admin"], service["webhook"], service["prefix"]
    door = admin.post("/v1/doors", json={"name": "Back door", "liveness_required": False}).json()["id"]
    key = admin.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]
    subscriber = _Subscriber([f"{prefix}/alerts", f"{prefix}/events"]) if service["mqtt"] else None
    face = np.ascontiguousarray(data.astronaut())  # nobody is enrolled: unknown_person
    files = [("frames", (f"f{i}.jpg", _jpeg(np.roll(face, i, axis=1)), "image/jpeg")) for i in range(3)]
    event_ids = []
    for n in range(4):
        r = httpx.post(f"{svc.url}/v1/doors/{door}/frames", files=files, headers=bearer(key), timeout=120)
        assert r.status_code == 200 and r.json()["reason"] == "unknown_person", r.text
        event_ids.append(r.json()["event_id"])
        alerts = admin.get("/v1/alerts", params={"door_id": door}).json()["items"]
        assert len(alerts) == (0 if n < 2 else 1), (n, alerts)
    alert = alerts[0]
    assert alert["kind"] == "burst_streak" and alert["details"]["event_ids"] == event_ids[:3]
    assert alert["details"]["reasons"] == {"unknown_person": 3}
    auditor = admin.post("/v1/keys", json={"role": "auditor", "name": "sec"}).json()["key"]
    seen = httpx.get(f"{svc.url}/v1/alerts", headers=bearer(auditor), timeout=30).json()["items"]
    assert alert["id"] in [a["id"] for a in seen]
    assert httpx.get(f"{svc.url}/v1/alerts", headers=bearer(key), timeout=30).status_code == 403

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(b.get("alert_id") == alert["id"] for b in webhook.bodies):
        time.sleep(0.1)
    hooked = [b for b in webhook.bodies if b.get("alert_id") == alert["id"]]
    assert len(hooked) == 1 and hooked[0]["details"]["event_ids"] == event_ids[:3]

    if subscriber is None:
        pytest.skip("no MQTT broker on 127.0.0.1:1883: the MQTT publish is untested")
    while time.monotonic() < deadline and len(subscriber.messages) < 5:
        time.sleep(0.1)
    subscriber.stop()
    alerts_seen = [p for t, p in subscriber.messages if t == f"{prefix}/alerts"]
    events_seen = [p for t, p in subscriber.messages if t == f"{prefix}/events"]
    assert [a["alert_id"] for a in alerts_seen] == [alert["id"]]
    assert sorted(e["event_id"] for e in events_seen) == event_ids
    for e in events_seen:  # no biometric data or scores leave the service
        assert set(e) == {"event_id", "door_id", "decision", "reason", "person", "mode", "created_at"}
        assert e["reason"] == "unknown_person" and e["person"] is None
