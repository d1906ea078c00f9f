"""Reviewer labels (migration 0011) through the real service on SQLite and PostgreSQL (PostgreSQL
skips when unreachable): auditors and admins label events, door and verifier keys may not, every
label is an admin action in the audit chain, GET returns it with the event, and
`facegate labels export` writes them as JSON lines or CSV without biometric data."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, inspect, select
from typer.testing import CliRunner

from app.cli import cli
from app.settings import get_settings
from app.store import db as store_db
from app.store import labels as store_labels
from app.store import queries as q
from app.store.models import AuditRecord, EnrolmentPhoto, EventSnapshot
from tests.http_server import ServiceProcess, bearer


def _event(engine: Engine, door_id: int, **fields: Any) -> int:
    base: dict[str, Any] = {
        "door_id": door_id,
        "decision": "denied",
        "reason": "unknown_person",
        "frames": 5,
        "frames_with_face": 5,
        "latency_ms": 40.0,
        "model_version": "fusion-v1:test",
        "request_id": uuid.uuid4().hex,
        "best_distance": 0.8,
        "second_distance": 0.9,
        "tau": 0.55,
    }
    base.update(fields)
    with store_db.make_session_factory(engine)() as s:
        event = q.record_event(s, **base)
        s.commit()
        return event.id


@pytest.fixture
def site(db_url: str, tmp_path: Path, model_dir: Path) -> Iterator[dict[str, Any]]:
    """The running service with an admin, an auditor, a door and a verifier key, two people and
    three events (a grant of person A, a stranger denied, a grant of A that was really B)."""
    svc = ServiceProcess(tmp_path, model_dir, database_url=None if db_url.startswith("sqlite") else db_url)
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{(tmp_path / 'facegate.db').as_posix()}"
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "labels-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    admin_id = int(created.stdout.split(" key ")[1].split()[0])
    engine = store_db.make_engine(db_url)
    with svc, httpx.Client(base_url=svc.url, timeout=30) as c:
        a = bearer(admin)
        door = c.post("/v1/doors", json={"name": "Lobby"}, headers=a).json()["id"]
        keys = {
            role: c.post("/v1/keys", json={"role": role, "name": role, **extra}, headers=a).json()
            for role, extra in (("auditor", {}), ("door", {"door_id": door}), ("verifier", {}))
        }
        ada = c.post("/v1/people", json={"name": "Ada"}, headers=a).json()["id"]
        bob = c.post("/v1/people", json={"name": "Bob"}, headers=a).json()["id"]
        events = [
            _event(engine, door, decision="granted", reason="match", person_id=ada, best_distance=0.3),
            _event(engine, door),
            _event(engine, door, decision="granted", reason="match", person_id=ada, best_distance=0.5),
        ]
        yield {
            "svc": svc,
            "client": c,
            "engine": engine,
            "admin": admin,
            "admin_id": admin_id,
            "auditor": keys["auditor"]["key"],
            "auditor_id": keys["auditor"]["id"],
            "door": keys["door"]["key"],
            "verifier": keys["verifier"]["key"],
            "door_id": door,
            "ada": ada,
            "bob": bob,
            "events": events,
        }
    engine.dispose()


def test_reviewers_label_events_and_the_log_shows_it(site: dict[str, Any]) -> None:
    c: httpx.Client = site["client"]
    e_ok, e_stranger, e_wrong = site["events"]
    auditor, admin = bearer(site["auditor"]), bearer(site["admin"])

    assert c.get(f"/v1/events/{e_ok}", headers=auditor).json()["label"] is None
    r = c.put(f"/v1/events/{e_ok}/label", json={"label": "correct"}, headers=auditor)
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "correct" and r.json()["true_person_id"] is None
    assert r.json()["reviewer_key_id"] == site["auditor_id"]

    # An admin may label too; a stranger rightly denied.
    assert (
        c.put(f"/v1/events/{e_stranger}/label", json={"label": "stranger"}, headers=admin).status_code == 200
    )
    # The grant was really Bob: wrong_person names him; then the reviewer changes it to a spoof.
    body = {"label": "wrong_person", "true_person_id": site["bob"]}
    first = c.put(f"/v1/events/{e_wrong}/label", json=body, headers=auditor)
    assert first.status_code == 200 and first.json()["true_person_id"] == site["bob"]
    event = c.get(f"/v1/events/{e_wrong}", headers=auditor).json()
    assert event["label"]["label"] == "wrong_person" and event["label"]["true_person_id"] == site["bob"]
    again = c.put(f"/v1/events/{e_wrong}/label", json={"label": "spoof"}, headers=auditor).json()
    assert again["label"] == "spoof" and again["true_person_id"] is None
    assert again["created_at"] == first.json()["created_at"] and again["updated_at"] >= again["created_at"]
    assert c.get(f"/v1/events/{e_wrong}/label", headers=auditor).json()["label"] == "spoof"

    # The list carries the labels as well.
    page = c.get("/v1/events", headers=auditor).json()["items"]
    assert {e["id"]: (e["label"] or {}).get("label") for e in page} == {
        e_ok: "correct",
        e_stranger: "stranger",
        e_wrong: "spoof",
    }

    # Every label is an admin action in the chain, by the reviewer's key; the chain verifies.
    with store_db.make_session_factory(site["engine"])() as s:
        actions = s.scalars(select(AuditRecord).where(AuditRecord.action == "event.label")).all()
        targets = [a.target or {} for a in actions]
        assert [
            (a.actor_key_id, t["event_id"], t["label"]) for a, t in zip(actions, targets, strict=True)
        ] == [
            (site["auditor_id"], e_ok, "correct"),
            (site["admin_id"], e_stranger, "stranger"),
            (site["auditor_id"], e_wrong, "wrong_person"),
            (site["auditor_id"], e_wrong, "spoof"),
        ]
        assert targets[-1]["replaced"] is True and targets[0]["replaced"] is False
    verified = site["svc"].cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr

    # Export: JSON lines and CSV, one row per labelled event, ids only.
    svc: ServiceProcess = site["svc"]
    out = svc.log.parent / "labels.jsonl"
    done = svc.cli("labels", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["event_id"], r["label"], r["predicted_person_id"], r["true_person_id"]) for r in rows] == [
        (e_ok, "correct", site["ada"], site["ada"]),
        (e_stranger, "stranger", None, None),
        (e_wrong, "spoof", site["ada"], None),
    ]
    assert all(r["door_id"] == site["door_id"] for r in rows)
    assert set(rows[0]) == set(store_labels.LabelledEvent.columns())
    as_csv = svc.cli("labels", "export", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(int(r["event_id"]), r["decision"], r["label"]) for r in table] == [
        (e_ok, "granted", "correct"),
        (e_stranger, "denied", "stranger"),
        (e_wrong, "granted", "spoof"),
    ]
    assert table[1]["true_person_id"] == "" and table[0]["true_person_id"] == str(site["ada"])
    assert "3 labelled events exported" in as_csv.stderr


BAD_LABELS: list[tuple[dict[str, Any], int, str]] = [
    ({"label": "wrong_person"}, 422, "invalid_request"),
    ({"label": "correct", "true_person_id": 1}, 422, "invalid_request"),
    ({"label": "stranger", "true_person_id": 1}, 422, "invalid_request"),
    ({"label": "maybe"}, 422, "invalid_request"),
    ({"label": "correct", "extra": 1}, 422, "invalid_request"),
    ({"label": "wrong_person", "true_person_id": 999}, 422, "person_not_found"),
    ({"label": "wrong_person", "true_person_id": "2"}, 422, "invalid_request"),
    ({"label": "wrong_person", "true_person_id": 0}, 422, "invalid_request"),
]


def test_only_reviewers_may_label_and_bad_labels_are_refused(site: dict[str, Any]) -> None:
    """Door and verifier keys get 403, no key 401; bad bodies 422, unknown events 404; nothing
    refused is stored; an empty export is just the header."""
    c: httpx.Client = site["client"]
    event = site["events"][0]
    for role in ("door", "verifier"):
        r = c.put(f"/v1/events/{event}/label", json={"label": "correct"}, headers=bearer(site[role]))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (role, r.text)
        r = c.get(f"/v1/events/{event}/label", headers=bearer(site[role]))
        assert r.status_code == 403
    assert c.put(f"/v1/events/{event}/label", json={"label": "correct"}).status_code == 401

    wrong = site["events"][2]
    for body, status, code in BAD_LABELS:
        r = c.put(f"/v1/events/{wrong}/label", json=body, headers=bearer(site["auditor"]))
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)

    auditor = bearer(site["auditor"])
    r = c.put("/v1/events/987654/label", json={"label": "correct"}, headers=auditor)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "event_not_found")
    # Nothing was stored by the refused calls.
    for e in site["events"]:
        r = c.get(f"/v1/events/{e}/label", headers=auditor)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "label_not_found")
        assert c.get(f"/v1/events/{e}", headers=auditor).json()["label"] is None
    empty = site["svc"].cli("labels", "export", "--format", "csv")
    assert empty.returncode == 0 and empty.stdout.splitlines() == [
        ",".join(store_labels.LabelledEvent.columns())
    ]


def test_migration_0011_down_and_up(db_url: str) -> None:
    store_db.upgrade(db_url, "0011")
    engine = store_db.make_engine(db_url)
    try:
        assert "event_labels" in inspect(engine).get_table_names()
        store_db.downgrade(db_url, "0010")
        assert "event_labels" not in inspect(engine).get_table_names()
        store_db.upgrade(db_url, "0011")
        assert "event_labels" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_label_rules_and_true_person() -> None:
    for label, person in (("correct", None), ("stranger", None), ("spoof", None), ("wrong_person", 3)):
        store_labels.check_label(label, person)
    for label, person in (("wrong_person", None), ("correct", 3), ("spoof", 2), ("unsure", None)):
        with pytest.raises(ValueError):
            store_labels.check_label(label, person)
    assert store_labels.true_person("correct", 5, None) == 5
    assert store_labels.true_person("correct", None, None) is None
    assert store_labels.true_person("wrong_person", 5, 7) == 7
    assert store_labels.true_person("stranger", 5, None) is None
    assert store_labels.true_person("spoof", 5, None) is None


def test_site_training_faces_and_snapshot_export(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `facegate train triplet --site` reads: kept enrolment photos, and the face crops of
    events whose label names the person (correct with a person, wrong_person); never strangers,
    spoofs, unlabelled events or deleted people. `labels export --snapshots` writes the crops."""
    store_db.upgrade(db_url)
    engine = store_db.make_engine(db_url)
    try:
        with store_db.make_session_factory(engine)() as s:
            door = q.create_door(s, "Side door").id
            ada, bob, gone = (q.create_person(s, name).id for name in ("Ada", "Bob", "Gone"))
            for person, data in ((ada, b"ada-1"), (ada, b"ada-2"), (bob, b"bob-1")):
                s.add(
                    EnrolmentPhoto(
                        person_id=person, image=data, image_sha256=hashlib.sha256(data).hexdigest()
                    )
                )
            s.commit()
        granted = _event(engine, door, decision="granted", reason="match", person_id=ada)
        mistaken = _event(engine, door, decision="granted", reason="match", person_id=ada)
        stranger = _event(engine, door)
        spoof = _event(engine, door, decision="granted", reason="match", person_id=bob)
        unlabelled = _event(engine, door, decision="granted", reason="match", person_id=bob)
        no_snapshot = _event(engine, door, decision="granted", reason="match", person_id=bob)
        former = _event(engine, door, decision="granted", reason="match", person_id=gone)
        with store_db.make_session_factory(engine)() as s:
            for event in (granted, mistaken, stranger, spoof, unlabelled, former):
                s.add(EventSnapshot(event_id=event, face_jpeg=f"face-{event}".encode(), frame_jpeg=None))
            for event, label, named in (
                (granted, "correct", None),
                (mistaken, "wrong_person", bob),
                (stranger, "stranger", None),
                (spoof, "spoof", None),
                (no_snapshot, "correct", None),
                (former, "correct", None),
            ):
                store_labels.set_label(s, event, label, named, reviewer_key_id=None)
            s.commit()
            q.delete_person(s, gone)
            s.commit()
        with store_db.make_session_factory(engine)() as s:
            faces = [(f.person_id, f.source, f.jpeg) for f in store_labels.iter_training_faces(s)]
        assert faces == [
            (ada, "enrolment", b"ada-1"),
            (ada, "enrolment", b"ada-2"),
            (bob, "enrolment", b"bob-1"),
            (ada, "event", f"face-{granted}".encode()),
            (bob, "event", f"face-{mistaken}".encode()),
        ]

        monkeypatch.setenv("FACEGATE_DATABASE_URL", db_url)
        get_settings.cache_clear()
        try:
            folder = tmp_path / "crops"
            result = CliRunner().invoke(
                cli, ["labels", "export", "--out", str(tmp_path / "l.jsonl"), "--snapshots", str(folder)]
            )
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        # Every labelled event that still has its snapshot (a deleted person's granted events may
        # lose theirs with them: the snapshot policy decides), none for the one without.
        with store_db.make_session_factory(engine)() as s:
            kept = {
                e for e in (granted, mistaken, stranger, spoof, former) if store_labels.event_snapshot(s, e)
            }
        assert {granted, mistaken, stranger, spoof} <= kept
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{e}.jpg" for e in kept)
        assert f"{len(kept)} face crops written" in result.output
        assert (folder / f"{granted}.jpg").read_bytes() == f"face-{granted}".encode()
        assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 6
    finally:
        engine.dispose()
