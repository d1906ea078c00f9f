"""Access rules end to end: `facegate serve` on loopback with real models, on SQLite and PostgreSQL
(skipped when unreachable). A recognised person outside their group is denied `not_authorized`,
outside their schedule `outside_schedule` (a holiday names itself), out of validity `expired` /
`not_yet_valid`; a door without grants still opens; every event records the rule that decided, and
the audit chain, policy changes included, still verifies. The CLI makes the same changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy import select

from app.access.schedule import parse_window
from app.services import access as rules
from app.store import access_queries as aq
from app.store import db as store_db
from app.store import queries as q
from app.store.models import AuditRecord, Person, UTCDateTime
from tests.http_server import ServiceProcess, bearer

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _jpeg(rgb: NDArray[np.uint8], quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut())  # type: ignore[no-untyped-call]
    frame = np.full((480, 640, 3), 60, np.uint8)  # a door frame: mirrored, darker, smaller
    frame[40:440, 120:520] = (cv2.resize(np.ascontiguousarray(astronaut[:, ::-1]), (400, 400)) * 0.8).astype(
        np.uint8
    )
    return {"enrol": _jpeg(astronaut), "door": _jpeg(frame, 80)}


@pytest.fixture
def service(model_dir: Path, tmp_path: Path, db_url: str) -> Iterator[dict[str, Any]]:
    svc = ServiceProcess(tmp_path, model_dir, None if db_url.startswith("sqlite") else db_url)
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
    upgraded = svc.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    created = svc.cli("keys", "create", "--role", "admin", "--name", "access-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    with svc, httpx.Client(base_url=svc.url, timeout=60) as c:
        yield {"svc": svc, "c": c, "admin": admin, "db_url": db_url}


class Site:
    def __init__(self, env: dict[str, Any]) -> None:
        self.c: httpx.Client = env["c"]
        self.admin = bearer(env["admin"])
        self.door_keys: dict[int, str] = {}

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        r = self.c.post(path, json=body, headers=self.admin)
        assert r.status_code == status, r.text
        return r.json()

    def door(self, name: str) -> int:
        door = self.post("/v1/doors", {"name": name, "liveness_required": False})
        key = self.post("/v1/keys", {"role": "door", "name": f"cam {name}", "door_id": door["id"]})
        self.door_keys[door["id"]] = key["key"]
        return int(door["id"])

    def frames(self, door_id: int, photo: bytes) -> dict[str, Any]:
        r = self.c.post(
            f"/v1/doors/{door_id}/frames",
            files=[("frames", ("f.jpg", photo, "image/jpeg"))],
            headers=bearer(self.door_keys[door_id]),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_authorization_end_to_end(service: dict[str, Any], photos: dict[str, bytes]) -> None:
    site, c, svc = Site(service), service["c"], service["svc"]
    lobby, lab, vault = site.door("Lobby"), site.door("Lab"), site.door("Vault")
    pid = site.post("/v1/people", {"name": "Eileen Collins"})["id"]
    r = c.post(
        f"/v1/people/{pid}/faces",
        files={"image": ("a.jpg", photos["enrol"], "image/jpeg")},
        headers=site.admin,
    )
    assert r.status_code == 201, r.text
    auditor = site.post("/v1/keys", {"role": "auditor", "name": "desk"})["key"]

    # A door without grants stays open to everyone enrolled, as before the upgrade.
    open_door = site.frames(lobby, photos["door"])
    assert (open_door["decision"], open_door["reason"], open_door["rule"]) == (
        "granted",
        "match",
        "open_door",
    )
    assert open_door["person"]["id"] == pid

    # The Lab's first grant (engineers only) closes it to her: recognised, not authorised.
    engineers = site.post("/v1/access/groups", {"name": "Engineers"})
    assert engineers["members"] == 0
    lab_grant = site.post("/v1/access/grants", {"group_id": engineers["id"], "door_id": lab})
    denied = site.frames(lab, photos["door"])
    assert (denied["decision"], denied["reason"], denied["rule"]) == ("denied", "not_authorized", "no_grant")
    assert denied["person"] is None  # the door learns nothing about whom it refused
    event = c.get(f"/v1/events/{denied['event_id']}", headers=bearer(auditor)).json()
    assert (event["person_id"], event["reason"], event["rule"]) == (pid, "not_authorized", "no_grant")
    assert c.put(f"/v1/access/groups/{engineers['id']}/members/{pid}", headers=site.admin).status_code == 204
    allowed = site.frames(lab, photos["door"])
    assert (allowed["decision"], allowed["rule"]) == ("granted", f"grant:{lab_grant['id']}")

    # The Vault: engineers, within a schedule that is closed today and tomorrow (site zone UTC).
    today = datetime.now(UTC).date()
    later_day = WEEKDAYS[(today.weekday() + 3) % 7]
    closed = site.post(
        "/v1/access/schedules",
        {"name": "Far day", "windows": [{"days": [later_day], "start": "00:00", "end": "24:00"}]},
    )
    always = site.post(
        "/v1/access/schedules",
        {"name": "Always", "windows": [{"days": list(WEEKDAYS), "start": "00:00", "end": "00:00"}]},
    )
    assert always["windows"][0]["end"] == "24:00" and always["applies_on_holidays"] is False
    vault_grant = site.post(
        "/v1/access/grants", {"group_id": engineers["id"], "door_id": vault, "schedule_id": closed["id"]}
    )
    outside = site.frames(vault, photos["door"])
    assert (outside["decision"], outside["reason"], outside["rule"]) == (
        "denied",
        "outside_schedule",
        f"schedule:{vault_grant['id']}",
    )
    r = c.patch(
        f"/v1/access/grants/{vault_grant['id']}", json={"schedule_id": always["id"]}, headers=site.admin
    )
    assert r.status_code == 200 and r.json()["schedule_id"] == always["id"]
    assert site.frames(vault, photos["door"])["rule"] == f"grant:{vault_grant['id']}"
    # Holidays today and tomorrow close the scheduled grant (not the unscheduled Lab grant) ...
    for day in (today, today + timedelta(days=1)):
        site.post("/v1/access/holidays", {"date": day.isoformat(), "name": f"Holiday {day}"})
    on_holiday = site.frames(vault, photos["door"])
    assert (on_holiday["reason"], on_holiday["rule"][:8]) == ("outside_schedule", "holiday:")
    assert site.frames(lab, photos["door"])["decision"] == "granted"
    # ... unless the schedule applies on holidays.
    body = {"name": "Always", "applies_on_holidays": True, "windows": always["windows"]}
    r = c.put(f"/v1/access/schedules/{always['id']}", json=body, headers=site.admin)
    assert r.status_code == 200 and r.json()["applies_on_holidays"] is True
    assert site.frames(vault, photos["door"])["decision"] == "granted"

    # Validity: expired, not yet valid (at every door, the open one too), then unbounded again.
    now = datetime.now(UTC)
    validity = f"/v1/access/people/{pid}/validity"
    past = {"valid_from": None, "valid_until": (now - timedelta(minutes=1)).isoformat()}
    r = c.put(validity, json=past, headers=site.admin)
    assert r.status_code == 200 and r.json()["group_ids"] == [engineers["id"]]
    shown = c.get(f"/v1/people/{pid}", headers=site.admin).json()
    assert shown["valid_from"] is None and shown["valid_until"] == r.json()["valid_until"]
    expired = site.frames(lobby, photos["door"])
    assert (expired["decision"], expired["reason"], expired["rule"]) == ("denied", "expired", "valid_until")
    future = {"valid_from": (now + timedelta(days=1)).isoformat(), "valid_until": None}
    assert c.put(validity, json=future, headers=site.admin).status_code == 200
    early = site.frames(lab, photos["door"])
    assert (early["reason"], early["rule"]) == ("not_yet_valid", "valid_from")
    assert (
        c.put(validity, json={"valid_from": None, "valid_until": None}, headers=site.admin).status_code == 200
    )
    assert site.frames(lobby, photos["door"])["decision"] == "granted"

    # Decisions that never reached the rules record none.
    stranger = site.frames(lab, _jpeg(np.full((480, 640, 3), 128, np.uint8)))
    assert (stranger["reason"], stranger["rule"]) == ("no_face", None)

    # Refusals are explicit; auditors read, never write.
    _error(c.post("/v1/access/groups", json={"name": "Engineers"}, headers=site.admin), 409, "group_exists")
    _error(
        c.post("/v1/access/grants", json={"group_id": engineers["id"], "door_id": lab}, headers=site.admin),
        409,
        "grant_exists",
    )
    _error(
        c.post("/v1/access/grants", json={"group_id": engineers["id"], "door_id": 999}, headers=site.admin),
        404,
        "door_not_found",
    )
    _error(c.delete(f"/v1/access/schedules/{always['id']}", headers=site.admin), 409, "schedule_in_use")
    _error(
        c.post("/v1/access/holidays", json={"date": today.isoformat(), "name": "Again"}, headers=site.admin),
        409,
        "holiday_exists",
    )
    _error(
        c.put(f"/v1/access/groups/{engineers['id']}/members/999", headers=site.admin), 404, "person_not_found"
    )
    _error(
        c.delete(f"/v1/access/groups/{engineers['id']}/members/999", headers=site.admin),
        404,
        "member_not_found",
    )
    _error(
        c.put(validity, json={"valid_from": "2026-12-24T18:00:00", "valid_until": None}, headers=site.admin),
        422,
        "invalid_validity",
    )
    _error(
        c.post(
            "/v1/access/schedules",
            json={"name": "Bad", "windows": [{"days": ["mon"], "start": "25:00", "end": "26:00"}]},
            headers=site.admin,
        ),
        422,
        "invalid_request",
    )
    _error(c.post("/v1/access/groups", json={"name": "Desk"}, headers=bearer(auditor)), 403, "forbidden")
    members = c.get(f"/v1/access/groups/{engineers['id']}/members", headers=bearer(auditor))
    assert members.status_code == 200 and members.json() == [{"id": pid, "name": "Eileen Collins"}]
    grants = c.get("/v1/access/grants", params={"door_id": vault}, headers=bearer(auditor)).json()
    assert [g["id"] for g in grants] == [vault_grant["id"]]
    assert len(c.get("/v1/access/holidays", params={"year": today.year}, headers=bearer(auditor)).json()) >= 1

    # Deleting the group deletes its grants: the Lab (no grant left) is open again.
    assert c.delete(f"/v1/access/groups/{engineers['id']}", headers=site.admin).status_code == 204
    assert site.frames(lab, photos["door"])["rule"] == "open_door"
    assert c.get("/v1/access/grants", headers=site.admin).json() == []

    # The CLI changes the same rules (recorded with no key) on the same database.
    def cli(*args: str) -> str:
        done = svc.cli("access", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return str(done.stdout)

    group_id = int(cli("groups", "create", "--name", "Night crew").split()[3])
    cli("groups", "add-member", "--group", str(group_id), "--person", str(pid))
    schedule_id = int(
        cli("schedules", "create", "--name", "Far night", "--window", f"{later_day} 22:00-06:00").split()[2]
    )
    cli("groups", "grant", "--group", str(group_id), "--door", str(lab), "--schedule", str(schedule_id))
    cli("holidays", "add", "--date", "2031-12-25", "--name", "Christmas 2031")
    cli("people", "validity", "--person", str(pid), "--until", "2099-01-01T00:00:00+00:00")
    assert site.frames(lab, photos["door"])["reason"] == "outside_schedule"
    refused = svc.cli("access", "groups", "grant", "--group", str(group_id), "--door", str(lab))
    assert refused.returncode == 1 and "grant_exists" in refused.stderr

    # Every policy change is an audit record; the chain, events with their rule included, verifies.
    verified = svc.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    engine = store_db.make_engine(service["db_url"])
    try:
        with store_db.make_session_factory(engine)() as s:
            actions = [
                (r.actor_key_id is None, r.action)
                for r in s.scalars(select(AuditRecord).order_by(AuditRecord.seq))
                if r.kind == "admin"
            ]
    finally:
        engine.dispose()
    mine = [
        a for _, a in actions if a and a.split(".")[0] in ("group", "grant", "schedule", "holiday", "person")
    ]
    for expected in (
        "group.create",
        "group.member_add",
        "grant.create",
        "grant.update",
        "schedule.create",
        "schedule.update",
        "holiday.create",
        "person.validity",
        "group.delete",
    ):
        assert expected in mine, (expected, mine)
    assert (True, "group.create") in actions and (False, "group.create") in actions  # CLI and API


def test_the_decision_reads_one_door_for_one_person_in_one_query(db_url: str) -> None:
    """app.store.access_queries.door_rights on both backends: every grant of the door, only the
    person's groups, the windows of their schedules only, and whether the day is a holiday."""
    store_db.upgrade(db_url)
    engine = store_db.make_engine(db_url)
    try:
        with store_db.make_session_factory(engine)() as s:
            door, other_door = q.create_door(s, "Lab").id, q.create_door(s, "Bay").id
            person, stranger = q.create_person(s, "Ada").id, q.create_person(s, "Bob").id
            mine, theirs, also = (rules.create_group(s, None, n).id for n in ("Mine", "Theirs", "Also"))
            rules.add_member(s, None, mine, person)
            rules.add_member(s, None, also, person)
            rules.add_member(s, None, theirs, stranger)
            office = rules.create_schedule(s, None, "Office", False, [parse_window("mon-fri 08:00-18:00")])
            night = rules.create_schedule(s, None, "Night", True, [parse_window("sat,sun 22:00-06:00")])
            g1 = rules.create_grant(s, None, mine, door, office.id)
            g2 = rules.create_grant(s, None, theirs, door, night.id)
            g3 = rules.create_grant(s, None, also, door, None)
            rules.create_grant(s, None, mine, other_door, night.id)
            rules.add_holiday(s, None, date(2026, 12, 25), "Christmas")
            s.commit()

            rights = aq.door_rights(s, person, door, date(2026, 12, 25))
            assert sorted(rights.door_grants) == sorted(
                [(g1.id, mine, office.id), (g2.id, theirs, night.id), (g3.id, also, None)]
            )
            assert rights.member_groups == {mine, also}
            # Only the person's scheduled grants bring their windows; the stranger's do not.
            assert [(r.id, r.applies_on_holidays, len(r.windows)) for r in rights.schedules] == [
                (office.id, False, 1)
            ]
            assert rights.holidays == {date(2026, 12, 25)}
            assert aq.door_rights(s, person, door, date(2026, 12, 24)).holidays == frozenset()
            nobody = aq.door_rights(s, 999, door, date(2026, 12, 24))
            assert (
                nobody.member_groups == frozenset()
                and nobody.schedules == ()
                and len(nobody.door_grants) == 3
            )
            empty = aq.door_rights(s, person, q.create_door(s, "Open").id, date(2026, 12, 24))
            assert empty.door_grants == () and empty.member_groups == frozenset()
    finally:
        engine.dispose()


def test_upgrading_to_0006_keeps_every_face_and_every_door_open(db_url: str) -> None:
    """Migration 0006 on an install with people, faces and doors: nothing is copied or lost (no
    table rebuild of ``people``, whose faces would cascade), nobody's validity is bounded, every door
    has no grant and so stays open; the downgrade keeps the faces too. (Core SQL only: the models
    have columns of later revisions.)"""
    then = datetime(2026, 1, 1, tzinfo=UTC)
    doors = sa.table(
        "doors", sa.column("id", sa.Integer), sa.column("name"), sa.column("created_at", UTCDateTime())
    )
    people = sa.table(
        "people",
        sa.column("id", sa.Integer),
        sa.column("name"),
        sa.column("created_at", UTCDateTime()),
        sa.column("valid_from", UTCDateTime()),
        sa.column("valid_until", UTCDateTime()),
    )
    faces = sa.table(
        "face_templates",
        sa.column("person_id", sa.Integer),
        sa.column("dim", sa.Integer),
        sa.column("embedding", sa.LargeBinary),
        sa.column("model_version"),
        sa.column("quality", sa.JSON),
        sa.column("image_sha256"),
        sa.column("created_at", UTCDateTime()),
    )
    count_faces = sa.select(sa.func.count()).select_from(faces)
    store_db.upgrade(db_url, "0005")
    engine = store_db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            door_id = conn.execute(
                sa.insert(doors).values(name="Old door", created_at=then).returning(doors.c.id)
            ).scalar_one()
            pid = conn.execute(
                sa.insert(people).values(name="Ada", created_at=then).returning(people.c.id)
            ).scalar_one()
            template = {
                "embedding": b"\0" * 4,
                "dim": 1,
                "model_version": "m",
                "quality": {},
                "image_sha256": "ab",
            }
            conn.execute(sa.insert(faces).values(person_id=pid, created_at=then, **template))
        store_db.upgrade(db_url, "0006")
        with store_db.make_session_factory(engine)() as s:
            row = s.execute(sa.select(people.c.valid_from, people.c.valid_until)).one()
            assert tuple(row) == (None, None)
            assert s.execute(count_faces).scalar() == 1
            person = Person(id=pid, name="Ada", valid_from=None, valid_until=None)
            decision = rules.authorize(s, person, door_id, datetime.now(UTC), ZoneInfo("UTC"))
            assert (decision.allowed, decision.rule) == (True, "open_door")
        store_db.downgrade(db_url, "0005")
        with engine.connect() as conn:
            assert conn.execute(count_faces).scalar() == 1
    finally:
        engine.dispose()
