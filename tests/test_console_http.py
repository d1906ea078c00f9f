"""The web console (/console) through real HTTP, no browser: the session cookie's flags, CSRF and
Origin checks, roles, sign-out, expiry, revoked keys; and the session store on real SQLite and
PostgreSQL (PostgreSQL skips when unreachable)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.orm import Session

from app.store import console_sessions as cs
from app.store import db as store_db
from app.store import queries as q
from app.store.models import AccessEvent, ApiKey, AuditRecord, ConsoleSession, Door, utcnow
from tests.http_server import ServiceProcess, bearer

# --- the session store on SQLite and PostgreSQL ------------------------------------------------


def _key(s: Session, role: str = "admin") -> ApiKey:
    key, _ = q.create_api_key(s, role, f"{role}-key")
    return key


def test_session_store_keeps_only_the_token_hash_and_finds_live_sessions(engine: Engine) -> None:
    factory = store_db.make_session_factory(engine)
    idle = timedelta(minutes=30)
    with factory() as s:
        key = _key(s)
        created = cs.create_session(s, key, ttl=timedelta(hours=1))
        s.commit()
        token = created.token
        row = s.get(ConsoleSession, created.session.id)
        assert row is not None
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in row.token_hash
        assert len(row.csrf_token) >= 40 and row.csrf_token != token
    with factory() as s:
        found = cs.find_session(s, token, idle_timeout=idle)
        assert found is not None and found[1].id == key.id
        assert cs.find_session(s, token + "x", idle_timeout=idle) is None
        assert cs.find_session(s, "", idle_timeout=idle) is None
        assert cs.find_session(s, "a" * 500, idle_timeout=idle) is None


@pytest.mark.parametrize("ending", ["revoked", "expired", "idle", "key_revoked"])
def test_a_session_ends(engine: Engine, ending: str) -> None:
    factory = store_db.make_session_factory(engine)
    idle = timedelta(minutes=30)
    with factory() as s:
        key = _key(s, "auditor")
        created = cs.create_session(s, key, ttl=timedelta(hours=1))
        s.commit()
        assert cs.find_session(s, created.token, idle_timeout=idle) is not None
        past = utcnow() - timedelta(seconds=1)
        if ending == "revoked":
            cs.revoke_session(s, created.session.id)
        elif ending == "expired":
            s.execute(update(ConsoleSession).values(expires_at=past))
        elif ending == "idle":
            s.execute(update(ConsoleSession).values(last_seen_at=past - idle))
        else:
            q.revoke_api_key(s, key.id)
        s.commit()
    with factory() as s:
        assert cs.find_session(s, created.token, idle_timeout=idle) is None


def test_last_seen_is_refreshed_and_dead_rows_are_purged_at_the_next_sign_in(engine: Engine) -> None:
    factory = store_db.make_session_factory(engine)
    with factory() as s:
        key = _key(s)
        old = cs.create_session(s, key, ttl=timedelta(hours=1))
        stale = utcnow() - timedelta(minutes=5)
        s.execute(
            update(ConsoleSession).where(ConsoleSession.id == old.session.id).values(last_seen_at=stale)
        )
        s.commit()
        found = cs.find_session(s, old.token, idle_timeout=timedelta(minutes=30))
        assert found is not None and found[0].last_seen_at > stale
        s.commit()
        cs.revoke_key_sessions(s, key.id)
        s.commit()
        cs.create_session(s, key, ttl=timedelta(hours=1))
        s.commit()
        assert s.scalar(select(func.count()).select_from(ConsoleSession)) == 1


# --- the console through real HTTP -------------------------------------------------------------


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("console")
    svc = ServiceProcess(data_dir, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "console-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    with svc:
        api = httpx.Client(base_url=svc.url, timeout=60, headers=bearer(admin))
        door = api.post("/v1/doors", json={"name": "Lobby", "liveness_required": False}).json()
        keys = {
            role: api.post(
                "/v1/keys",
                json={"role": role, "name": f"{role}-1", "door_id": door["id"] if role == "door" else None},
            ).json()
            for role in ("auditor", "door", "verifier")
        }
        yield {
            "url": svc.url,
            "admin": admin,
            "api": api,
            "door": door,
            "keys": keys,
            "db": create_engine(f"sqlite:///{data_dir / 'facegate.db'}"),
        }
        api.close()


def _client(service: dict[str, Any], **headers: str) -> httpx.Client:
    return httpx.Client(base_url=service["url"], timeout=60, headers=headers)


def _sign_in(service: dict[str, Any], key: str, **headers: str) -> tuple[httpx.Client, str]:
    c = _client(service, **headers)
    r = c.post("/console/login", data={"key": key})
    assert r.status_code == 303, r.text
    page = c.get("/console/events")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return c, match.group(1)


def _doors(service: dict[str, Any]) -> set[str]:
    with Session(service["db"]) as s:
        return set(s.scalars(select(Door.name)))


def test_sign_in_sets_a_strict_http_only_cookie_and_stores_only_its_hash(service: dict[str, Any]) -> None:
    c = _client(service)
    r = c.post("/console/login", data={"key": service["admin"]})
    assert (r.status_code, r.headers["location"]) == (303, "/console/events")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fg_console=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/console", "samesite=strict"} <= flags
    assert "secure" not in flags  # plain http on loopback
    assert r.headers["cache-control"] == "no-store"
    token = c.cookies["fg_console"]
    with Session(service["db"]) as s:
        hashes = set(s.scalars(select(ConsoleSession.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in hashes and token not in hashes
    raw = b"".join(p.read_bytes() for p in Path(str(service["db"].url.database)).parent.glob("facegate.db*"))
    assert token.encode() not in raw and service["admin"].encode() not in raw


def test_the_cookie_is_secure_over_https(service: dict[str, Any]) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback: the request is https as a TLS proxy would say.
    c = _client(service, **{"X-Forwarded-Proto": "https"})
    r = c.post("/console/login", data={"key": service["admin"]})
    assert r.status_code == 303
    assert "secure" in {part.strip().lower() for part in r.headers["set-cookie"].split(";")}


@pytest.mark.parametrize("role", ["door", "verifier"])
def test_door_and_verifier_keys_cannot_sign_in(service: dict[str, Any], role: str) -> None:
    c = _client(service)
    r = c.post("/console/login", data={"key": service["keys"][role]["key"]})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert f"a {role} key cannot sign in" in r.text
    assert c.get("/console/events").status_code == 303


def test_unknown_keys_are_refused_without_echoing_them(service: dict[str, Any]) -> None:
    c = _client(service)
    r = c.post("/console/login", data={"key": "fg_not-a-real-key-123"})
    assert r.status_code == 401 and "fg_not-a-real-key-123" not in r.text and "set-cookie" not in r.headers


def test_pages_without_a_session_send_to_sign_in_and_json_gets_401(service: dict[str, Any]) -> None:
    c = _client(service)
    r = c.get("/console/people")
    assert (r.status_code, r.headers["location"]) == (303, "/console/login?next=%2Fconsole%2Fpeople")
    r = c.get("/console/api/events")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert c.get("/console/login").status_code == 200


def test_sign_in_never_redirects_off_the_console(service: dict[str, Any]) -> None:
    c = _client(service)
    for target in ("https://evil.example/", "//evil.example/console/", "/v1/keys"):
        r = c.post("/console/login", data={"key": service["admin"], "next": target})
        assert r.headers["location"] == "/console/events"
    r = c.post("/console/login", data={"key": service["admin"], "next": "/console/doors"})
    assert r.headers["location"] == "/console/doors"


def test_state_changes_need_the_csrf_token_and_a_same_site_origin(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["admin"])
    before = _doors(service)
    for data, headers in [
        ({"name": "No token"}, {}),
        ({"name": "Bad token", "csrf": "x" * 43}, {}),
        ({"name": "Cross site", "csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"name": "Null origin", "csrf": csrf}, {"Origin": "null"}),
    ]:
        r = c.post("/console/doors", data=data, headers=headers)
        assert r.status_code == 403, (data, r.text)
    assert _doors(service) == before
    # Another signed-in admin's token does not work with this cookie either.
    _, other_csrf = _sign_in(service, service["admin"])
    assert c.post("/console/doors", data={"name": "Foreign token", "csrf": other_csrf}).status_code == 403
    # The right token from the console's own origin does.
    r = c.post(
        "/console/doors",
        data={"name": "Side door", "csrf": csrf, "liveness_required": "false"},
        headers={"Origin": service["url"]},
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/console/doors/")
    assert _doors(service) == before | {"Side door"}
    # The token in a header (what fetch() sends) is accepted too.
    r = c.post("/console/doors", data={"name": "Back door"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 303


def test_sign_in_from_another_site_is_refused(service: dict[str, Any]) -> None:
    c = _client(service, Origin="https://evil.example")
    r = c.post("/console/login", data={"key": service["admin"]})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_admin_actions_from_the_console_are_audited_with_the_signed_in_key(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["admin"])
    with Session(service["db"]) as s:
        admin_id = s.scalar(select(ApiKey.id).where(ApiKey.name == "console-admin"))
        seq = s.scalar(select(func.max(AuditRecord.seq)))
    r = c.post("/console/doors", data={"csrf": csrf, "name": "Garage", "mode": "both"})
    door_id = int(r.headers["location"].rsplit("/", 1)[1])
    r = c.post(f"/console/doors/{door_id}", data={"csrf": csrf, "name": "Garage", "mode": "claim"})
    assert r.status_code == 303
    assert service["api"].get(f"/v1/doors/{door_id}").json()["mode"] == "claim"
    with Session(service["db"]) as s:
        records = list(s.scalars(select(AuditRecord).where(AuditRecord.seq > seq).order_by(AuditRecord.seq)))
    actions = [
        (r.action, r.actor_key_id, (r.target or {}).get("door_id")) for r in records if r.kind == "admin"
    ]
    assert ("door.create", admin_id, door_id) in actions and ("door.update", admin_id, door_id) in actions
    update_record = next(r for r in records if r.action == "door.update")
    assert update_record.target is not None and update_record.target["changed"] == ["mode"]


def test_refusals_show_the_api_reason(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["admin"])
    r = c.post("/console/doors", data={"csrf": csrf, "name": "Lobby"})  # taken
    assert r.status_code == 409 and "door_exists" in r.text
    r = c.post("/console/keys", data={"csrf": csrf, "name": "cam", "role": "door"})  # no door
    assert r.status_code == 422 and "door_id" in r.text
    r = c.post(
        "/console/people", data={"csrf": csrf, "name": "Nobody"}, files={"photo": ("x.jpg", b"not an image")}
    )
    assert r.status_code == 303
    page = c.get(r.headers["location"])
    assert "Photo refused" in page.text and "not_an_image" in page.text


def test_a_new_key_secret_is_shown_once(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["admin"])
    r = c.post("/console/keys", data={"csrf": csrf, "name": "desk", "role": "auditor"})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-secret">(fg_[^<]+)<', r.text)
    assert secret is not None
    assert secret.group(1) not in c.get("/console/keys").text
    # It is a real auditor key.
    assert httpx.get(f"{service['url']}/v1/events", headers=bearer(secret.group(1))).status_code == 200


def test_auditors_reach_security_pages_only(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["keys"]["auditor"]["key"])
    for path in ("/console/events", "/console/attempts", "/console/events.csv", "/console/api/events"):
        assert c.get(path).status_code == 200, path
    for path in ("/console/people", "/console/doors", "/console/keys", "/console/calibration"):
        r = c.get(path)
        assert r.status_code == 403 and "needs an admin key" in r.text, path
    before = _doors(service)
    assert c.post("/console/doors", data={"csrf": csrf, "name": "Auditor door"}).status_code == 403
    assert c.post("/console/keys", data={"csrf": csrf, "name": "x", "role": "admin"}).status_code == 403
    assert _doors(service) == before
    assert "/console/people" not in c.get("/console/events").text  # not in the menu either


def test_sign_out_revokes_the_session(service: dict[str, Any]) -> None:
    c, csrf = _sign_in(service, service["admin"])
    token = c.cookies["fg_console"]
    r = c.post("/console/logout", data={"csrf": csrf})
    assert r.status_code == 303 and 'fg_console=""' in r.headers["set-cookie"]
    # The old cookie, replayed, opens nothing.
    replay = _client(service)
    replay.cookies.set("fg_console", token, path="/console")
    assert replay.get("/console/events").status_code == 303
    with Session(service["db"]) as s:
        row = s.scalar(
            select(ConsoleSession).where(
                ConsoleSession.token_hash == hashlib.sha256(token.encode()).hexdigest()
            )
        )
    assert row is not None and row.revoked_at is not None
    # Both ends of the session are links of the audit chain, with the key and the session id only.
    with Session(service["db"]) as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.name == "console-admin"))
        records = list(
            s.scalars(
                select(AuditRecord).where(
                    AuditRecord.action.in_(["console.sign_in", "console.sign_out"]),
                    AuditRecord.target["session_id"].as_integer() == row.id,
                )
            )
        )
    assert sorted((r.action, r.actor_key_id) for r in records) == [
        ("console.sign_in", key_id),
        ("console.sign_out", key_id),
    ]
    assert all(token not in str(r.target) for r in records)


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
def test_an_expired_or_idle_session_sends_back_to_sign_in(service: dict[str, Any], column: str) -> None:
    c, _ = _sign_in(service, service["admin"])
    digest = hashlib.sha256(c.cookies["fg_console"].encode()).hexdigest()
    past = utcnow() - timedelta(hours=9)
    with Session(service["db"]) as s:
        s.execute(update(ConsoleSession).where(ConsoleSession.token_hash == digest).values({column: past}))
        s.commit()
    r = c.get("/console/events")
    assert (r.status_code, r.headers["location"]) == (303, "/console/login?next=%2Fconsole%2Fevents")


def test_revoking_a_key_ends_its_console_sessions(service: dict[str, Any]) -> None:
    key = service["api"].post("/v1/keys", json={"role": "auditor", "name": "temp"}).json()
    c, _ = _sign_in(service, key["key"])
    assert c.get("/console/events").status_code == 200
    assert service["api"].delete(f"/v1/keys/{key['id']}").status_code == 200
    assert c.get("/console/events").status_code == 303
    assert c.get("/console/api/events").status_code == 401


def test_console_routes_are_not_in_the_openapi_schema(service: dict[str, Any]) -> None:
    paths = httpx.get(f"{service['url']}/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    assert "reason" in {p["name"] for p in paths["/v1/events"]["get"]["parameters"]}


def test_pages_send_a_strict_content_security_policy(service: dict[str, Any]) -> None:
    r = _client(service).get("/console/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"


def test_attempts_count_denied_and_spoof_per_door_and_calibration_shows_tau(service: dict[str, Any]) -> None:
    ok, blank = cv2.imencode(".jpg", np.full((240, 320, 3), 100, np.uint8))
    assert ok
    door = service["door"]
    door_key = {"Authorization": f"Bearer {service['keys']['door']['key']}"}
    for _ in range(2):
        r = httpx.post(
            f"{service['url']}/v1/doors/{door['id']}/frames",
            files=[("frames", ("f.jpg", blank.tobytes(), "image/jpeg"))],
            headers=door_key,
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["reason"] == "no_face"
    c, _ = _sign_in(service, service["keys"]["auditor"]["key"])
    page = c.get("/console/attempts", params={"days": 1}).text
    row = re.search(rf'<tr data-door="{door["id"]}">(.*?)</tr>', page, flags=re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">(?:<a[^>]*>)?(\d+)', row.group(1))
    with Session(service["db"]) as s:
        denied = s.scalar(
            select(func.count())
            .select_from(AccessEvent)
            .where(AccessEvent.door_id == door["id"], AccessEvent.decision == "denied")
        )
        spoof = s.scalar(
            select(func.count())
            .select_from(AccessEvent)
            .where(AccessEvent.door_id == door["id"], AccessEvent.reason == "spoof")
        )
    assert denied is not None and denied >= 2
    assert cells[:2] == [str(denied), str(spoof)]
    assert "no_face" in row.group(1)
    # The filtered feed and its CSV hold exactly those events.
    with Session(service["db"]) as s:
        no_face = set(
            s.scalars(
                select(AccessEvent.id).where(
                    AccessEvent.door_id == door["id"], AccessEvent.reason == "no_face"
                )
            )
        )
    csv_text = c.get("/console/events.csv", params={"door_id": door["id"], "reason": "no_face"}).text
    assert {int(line.split(",", 1)[0]) for line in csv_text.strip().splitlines()[1:]} == no_face
    feed = c.get("/console/api/events", params={"door_id": door["id"], "reason": "no_face"}).json()["events"]
    assert {e["id"] for e in feed} == no_face and {e["reason"] for e in feed} == {"no_face"}
    admin, _ = _sign_in(service, service["admin"])
    calibration = admin.get("/console/calibration")
    assert calibration.status_code == 200 and "τ in force" in calibration.text


def test_auditors_see_enrolled_photos_of_people_in_the_log_only(service: dict[str, Any]) -> None:
    from skimage import data

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(data.astronaut()), cv2.COLOR_RGB2BGR))
    assert ok
    api = service["api"]
    person = api.post("/v1/people", json={"name": "Eileen Collins"}).json()
    face = api.post(
        f"/v1/people/{person['id']}/faces", files={"image": ("a.jpg", jpeg.tobytes(), "image/jpeg")}
    )
    assert face.status_code == 201, face.text
    url = f"/console/people/{person['id']}/faces/{face.json()['id']}/image"
    admin, _ = _sign_in(service, service["admin"])
    r = admin.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    auditor, _ = _sign_in(service, service["keys"]["auditor"]["key"])
    assert auditor.get(url).status_code == 403  # not in the access log yet
    r = httpx.post(
        f"{service['url']}/v1/doors/{service['door']['id']}/frames",
        files=[("frames", ("f.jpg", jpeg.tobytes(), "image/jpeg"))],
        headers=bearer(service["keys"]["door"]["key"]),
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["person"]["id"] == person["id"]
    assert auditor.get(url).status_code == 200
    detail = auditor.get(f"/console/events/{r.json()['event_id']}").text
    assert url in detail and "Eileen Collins" in detail


def test_a_lockdown_in_force_shows_on_the_security_page(service: dict[str, Any]) -> None:
    c, _ = _sign_in(service, service["keys"]["auditor"]["key"])
    assert 'id="lockdown"' not in c.get("/console/events").text
    api = service["api"]
    started = api.put("/v1/lockdown", json={"mode": "all", "note": "fire drill"})
    assert started.status_code in (200, 201), started.text
    try:
        page = c.get("/console/events").text
        assert 'id="lockdown"' in page and "every door denies everyone" in page and "fire drill" in page
    finally:
        assert api.delete("/v1/lockdown").status_code in (200, 204)
    assert 'id="lockdown"' not in c.get("/console/events").text
