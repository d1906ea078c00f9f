"""Site lockdown: the pure rule (app/access/lockdown.py), and through the real service over HTTP on
SQLite and PostgreSQL: 'all' and 'all_but' groups, every event during a lockdown names it, the
API's roles and errors, the CLI, and the audit chain records every start and lift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.access.lockdown import LockdownRule, lockdown_denies, validate_lockdown
from tests.http_server import bearer
from tests.test_pin import PIN, Site, photos, start_site


def test_the_rule() -> None:
    everyone = LockdownRule(1, "all", frozenset())
    security = LockdownRule(2, "all_but", frozenset({7, 9}))
    assert not lockdown_denies(None, {1})
    assert lockdown_denies(everyone, set()) and lockdown_denies(everyone, {7})
    assert lockdown_denies(security, set()) and lockdown_denies(security, {1, 2})
    assert not lockdown_denies(security, {9}) and not lockdown_denies(security, {1, 7})
    assert validate_lockdown("all", []) == "all" and validate_lockdown("all_but", [3]) == "all_but"
    for mode, groups in (("all", [3]), ("all_but", []), ("some", [])):
        with pytest.raises(ValueError):
            validate_lockdown(mode, groups)


@pytest.mark.slow
def test_lockdown_through_the_service(model_dir: Path, tmp_path: Path, db_url: str) -> None:
    p = photos()
    svc, admin = start_site(model_dir, tmp_path, db_url)
    with svc:
        site = Site(svc, admin, db_url)
        c = site.c
        pid = site.person("Eileen", p["astronaut"])
        guards = c.post("/v1/access/groups", json={"name": "Security"}).json()["id"]
        cleaners = c.post("/v1/access/groups", json={"name": "Cleaners"}).json()["id"]
        assert c.put(f"/v1/access/groups/{guards}/members/{pid}").status_code == 204
        assert c.get("/v1/lockdown").json() == {"active": False, "lockdown": None, "history": []}
        r = site.frames(p["astronaut_frame"]).json()
        assert (r["decision"], r["lockdown_id"]) == ("granted", None)

        # Roles: admins start and lift it, auditors may look, doors may not.
        assert c.put("/v1/lockdown", json={"mode": "all"}, headers=bearer(site.auditor)).status_code == 403
        assert c.get("/v1/lockdown", headers=bearer(site.door_key)).status_code == 403
        assert c.delete("/v1/lockdown", headers=bearer(site.auditor)).status_code == 403
        assert c.delete("/v1/lockdown").json()["error"]["code"] == "not_in_lockdown"
        # Mode and groups must agree; groups must exist.
        for body in ({"mode": "all", "allowed_group_ids": [guards]}, {"mode": "all_but"}, {"mode": "none"}):
            r = c.put("/v1/lockdown", json=body)
            assert r.status_code == 422, (body, r.text)
        r = c.put("/v1/lockdown", json={"mode": "all_but", "allowed_group_ids": [guards, 999999]})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "group_not_found")

        # 'all': nobody, not even the security group; strangers' events name the lockdown too.
        r = c.put("/v1/lockdown", json={"mode": "all", "note": "fire alarm"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert (first["active"], first["mode"], first["note"]) == (True, "all", "fire alarm")
        seen = c.get("/v1/lockdown", headers=bearer(site.auditor)).json()
        assert seen["active"] and seen["lockdown"]["id"] == first["id"]
        r = site.frames(p["astronaut_frame"]).json()
        assert (r["decision"], r["reason"], r["rule"], r["lockdown_id"]) == (
            "denied",
            "lockdown",
            f"lockdown:{first['id']}",
            first["id"],
        )
        r = site.frames(p["camera"]).json()
        assert (r["reason"], r["lockdown_id"]) == ("unknown_person", first["id"])

        # 'all_but' another group: still denied; 'all_but' hers: let in, and the event says when.
        second = c.put("/v1/lockdown", json={"mode": "all_but", "allowed_group_ids": [cleaners]}).json()
        assert second["id"] != first["id"]
        assert site.decide(p["astronaut_frame"])[:2] == ("denied", "lockdown")
        third = c.put(
            "/v1/lockdown", json={"mode": "all_but", "allowed_group_ids": [cleaners, guards]}
        ).json()
        r = site.frames(p["astronaut_frame"]).json()
        assert (r["decision"], r["reason"], r["lockdown_id"]) == ("granted", "match", third["id"])
        # Lockdown comes before the PIN: a PIN door still asks her for one under 'all_but'.
        c.patch(f"/v1/doors/{site.door}", json={"pin_required": True})
        c.put(f"/v1/people/{pid}/pin", json={"pin": PIN})
        assert site.decide(p["astronaut_frame"])[1] == "pin_required"
        assert site.decide(p["astronaut_frame"], pin=PIN)[1] == "match"
        c.put("/v1/lockdown", json={"mode": "all"})
        assert site.decide(p["astronaut_frame"], pin="000000") == ("denied", "lockdown", None)
        c.patch(f"/v1/doors/{site.door}", json={"pin_required": False})

        # Lift: doors answer by their ordinary rules; the history keeps every lockdown.
        r = c.delete("/v1/lockdown")
        assert r.status_code == 200 and r.json()["active"] is False and r.json()["lifted_at"] is not None
        r = site.frames(p["astronaut_frame"]).json()
        assert (r["decision"], r["lockdown_id"]) == ("granted", None)
        status = c.get("/v1/lockdown").json()
        assert not status["active"] and len(status["history"]) == 4
        assert all(not x["active"] for x in status["history"])

        # The CLI, on the same database, takes effect at once on the running service.
        on = svc.cli("lockdown", "on", "--group", str(guards), "--note", "drill")
        assert on.returncode == 0, on.stderr
        cli_lockdown = json.loads(on.stdout.strip().splitlines()[-1])
        assert (cli_lockdown["mode"], cli_lockdown["allowed_group_ids"]) == ("all_but", [guards])
        assert c.get("/v1/lockdown").json()["lockdown"]["started_by_key_id"] is None
        assert site.decide(p["astronaut_frame"])[:2] == ("granted", "match")
        assert svc.cli("lockdown", "on", "--group", "999999").returncode == 2
        status_cli = json.loads(svc.cli("lockdown", "status").stdout)
        assert status_cli["active"] and status_cli["lockdown"]["id"] == cli_lockdown["id"]
        assert svc.cli("lockdown", "off").returncode == 0
        assert svc.cli("lockdown", "off").returncode == 1  # none in force
        assert json.loads(svc.cli("lockdown", "status").stdout) == {"active": False, "lockdown": None}
        events = c.get("/v1/events", params={"limit": 200}, headers=bearer(site.auditor)).json()["items"]
    denied = [e for e in events if e["reason"] == "lockdown"]
    assert len(denied) == 3 and all(e["lockdown_id"] and e["rule"].startswith("lockdown:") for e in denied)

    # The audit chain: every start and lift, by whom, in order; it verifies.
    records = [
        (r.actor_key_id, r.action, r.target) for r in site.audit() if (r.action or "").startswith("lockdown")
    ]
    admin_id = records[0][0]
    assert admin_id is not None
    assert [(who, action) for who, action, _ in records] == [
        (admin_id, "lockdown.start"),
        (admin_id, "lockdown.lift"),
        (admin_id, "lockdown.start"),
        (admin_id, "lockdown.lift"),
        (admin_id, "lockdown.start"),
        (admin_id, "lockdown.lift"),
        (admin_id, "lockdown.start"),
        (admin_id, "lockdown.lift"),
        (None, "lockdown.start"),
        (None, "lockdown.lift"),
    ]
    assert records[0][2] == {
        "lockdown_id": first["id"],
        "mode": "all",
        "allowed_group_ids": [],
        "note": "fire alarm",
    }
    assert records[1][2] == {"lockdown_id": first["id"], "replaced": True}
    site.verify_chain()
