"""Event snapshots: the subject's best face crop (and, per door, the whole frame) kept with each access
event, read back by auditor and admin keys only, purged by retention and with a deleted person's
granted events.

Three layers, each with real parts: the crop itself (real photos, the real pipeline), the store on
real SQLite and PostgreSQL (PostgreSQL skips when unreachable), and `facegate serve` through real
HTTP on both backends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from app.audit.log import verify
from app.gallery.index import FaceIndex
from app.services.recognition import Burst, DoorPolicy, recognise
from app.services.snapshots import purge_expired, retention_cutoff
from app.settings import Settings
from app.store import db as store_db
from app.store import queries as q
from app.store import snapshot_queries as sq
from app.store.models import AccessEvent, EventSnapshot, utcnow
from app.vision.snapshot import MAX_SIDE_PX, SnapshotError, best_view, crop_box, take_snapshot
from tests.conftest import new_pg_database
from tests.http_server import ServiceProcess, bearer

JPEG_MAGIC = b"\xff\xd8\xff"


def _jpeg(rgb: NDArray[np.uint8], quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _decode(data: bytes) -> NDArray[np.uint8]:
    assert data[:3] == JPEG_MAGIC
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.ascontiguousarray(image)


def _door_frame(astronaut: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The astronaut on a 640x480 door frame (as tests/test_service_http.py builds it), RGB."""
    frame = np.full((480, 640, 3), 60, np.uint8)
    small = cv2.resize(np.ascontiguousarray(astronaut[:, ::-1]), (400, 400))
    frame[40:440, 120:520] = (small * 0.8).astype(np.uint8)
    return frame


# --- the crop: which view, what margin -----------------------------------------------------------


@dataclass(frozen=True)
class _View:
    box: tuple[int, int, int, int]
    chip: NDArray[np.uint8]


def _u8(image: Any) -> NDArray[np.uint8]:
    return np.ascontiguousarray(image, dtype=np.uint8)


def _chip(rgb: NDArray[np.uint8], box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
    return _u8(cv2.resize(rgb[box[1] : box[3] + 1, box[0] : box[2] + 1], (150, 150)))


def test_best_view_is_the_sharpest_of_the_largest_faces(astronaut: NDArray[np.uint8]) -> None:
    box = (170, 40, 300, 180)  # the astronaut's face in skimage's photo
    sharp = _chip(astronaut, box)
    blurred = _u8(cv2.GaussianBlur(sharp, (0, 0), 3))
    far = (190, 60, 280, 150)  # 70% of the width: too small to compete, however sharp
    views = [_View(box, blurred), _View(box, sharp), _View(box, blurred)]
    assert best_view(views) == 1
    assert best_view([_View(box, blurred), _View(far, sharp)]) == 0
    with pytest.raises(ValueError):
        best_view([])


def test_crop_box_keeps_a_margin_and_stays_in_the_frame() -> None:
    assert crop_box((100, 100, 199, 199), (480, 640, 3)) == (60, 60, 239, 239)  # 0.4 x 100 px each side
    assert crop_box((0, 10, 99, 109), (480, 640, 3)) == (0, 0, 139, 149)  # clipped at the top-left
    assert crop_box((600, 440, 639, 479), (480, 640, 3)) == (584, 424, 639, 479)


def test_take_snapshot_crops_the_chosen_view_and_the_frame_only_when_asked(
    astronaut: NDArray[np.uint8],
) -> None:
    frame = _u8(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    box = (170, 40, 300, 180)
    view = _View(box, _chip(astronaut, box))
    assert take_snapshot([], []) is None
    snap = take_snapshot([frame], [view], quality=90)
    assert snap is not None and snap.frame_jpeg is None and (snap.view, snap.box) == (0, box)
    crop = _decode(snap.face_jpeg)
    left, top, right, bottom = crop_box(box, frame.shape)
    assert crop.shape[:2] == (bottom - top + 1, right - left + 1)  # under MAX_SIDE_PX: not scaled
    # The crop is that region of the frame (up to JPEG loss).
    region = frame[top : bottom + 1, left : right + 1].astype(np.float32)
    assert float(np.abs(crop.astype(np.float32) - region).mean()) < 4.0
    with_frame = take_snapshot([frame], [view], full_frame=True)
    assert with_frame is not None and with_frame.frame_jpeg is not None
    assert _decode(with_frame.frame_jpeg).shape == frame.shape
    # A big face is scaled down to MAX_SIDE_PX on its longer side.
    big = _u8(cv2.resize(frame, (2048, 2048)))
    scaled = take_snapshot([big], [_View((600, 300, 1300, 1000), view.chip)])
    assert scaled is not None and max(_decode(scaled.face_jpeg).shape[:2]) == MAX_SIDE_PX


# --- recognition: the burst's subject, its best frame ---------------------------------------------


@pytest.fixture(scope="module")
def gallery(pipeline: Any, astronaut: NDArray[np.uint8]) -> tuple[FaceIndex, NDArray[np.float32]]:
    """An index holding the astronaut (person 1), and her encoding."""
    faces = pipeline.faces(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert len(faces) == 1
    index = FaceIndex(pipeline.dim, metric=pipeline.metric, background_maintenance=False)
    index.add(np.array([1], np.int64), np.array([1], np.int64), faces[0].embedding[None, :])
    return index, faces[0].embedding


def _recognise(
    pipeline: Any, index: FaceIndex, settings: Settings, frames: list[bytes], full_frame: bool = False
) -> Any:
    policy = DoorPolicy(liveness_required=False, snapshot_full_frame=full_frame)
    burst = Burst(frames, policy, [i * 0.1 for i in range(len(frames))])
    return recognise(pipeline, index, settings, burst, tau=0.6)


def test_a_recognised_burst_keeps_a_crop_of_the_subjects_face(
    pipeline: Any,
    settings: Settings,
    gallery: tuple[FaceIndex, NDArray[np.float32]],
    astronaut: NDArray[np.uint8],
) -> None:
    index, enrolled = gallery
    door = _door_frame(astronaut)
    blurred = _u8(cv2.GaussianBlur(door, (0, 0), 2.5))
    result = _recognise(pipeline, index, settings, [_jpeg(blurred), _jpeg(door), _jpeg(blurred)])
    assert (result.reason, result.decision.person_id) == ("match", 1)
    snap = result.snapshot
    assert snap is not None and snap.frame_jpeg is None
    assert snap.view == 1  # the sharp frame of three at the same size
    assert "snapshot" in result.stage_ms
    # The crop holds the same face: the pipeline finds it there, and it is the enrolled person's.
    crop = _decode(snap.face_jpeg)
    assert max(crop.shape[:2]) <= MAX_SIDE_PX
    faces = pipeline.faces(crop)
    assert len(faces) == 1
    assert float(np.linalg.norm(faces[0].embedding - enrolled)) < 0.6
    assert faces[0].width >= 0.4 * crop.shape[1]  # the face, with a margin, not the whole scene

    framed = _recognise(pipeline, index, settings, [_jpeg(door)], full_frame=True).snapshot
    assert framed is not None and framed.frame_jpeg is not None
    assert _decode(framed.frame_jpeg).shape == (480, 640, 3)

    off = settings.model_copy(update={"snapshots": False})
    assert _recognise(pipeline, index, off, [_jpeg(door)], full_frame=True).snapshot is None
    blank = _jpeg(np.full((480, 640, 3), 128, np.uint8))
    nobody = _recognise(pipeline, index, settings, [blank, blank])
    assert (nobody.reason, nobody.snapshot) == ("no_face", None)


def test_a_failed_snapshot_leaves_the_decision_standing(
    pipeline: Any,
    settings: Settings,
    gallery: tuple[FaceIndex, NDArray[np.float32]],
    astronaut: NDArray[np.uint8],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.services import recognition

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise SnapshotError("the JPEG encoder failed")

    monkeypatch.setattr(recognition, "take_snapshot", broken)
    result = _recognise(pipeline, gallery[0], settings, [_jpeg(_door_frame(astronaut))])
    assert (result.reason, result.decision.person_id, result.snapshot) == ("match", 1, None)
    with pytest.raises(SnapshotError):
        crop_box((700, 10, 800, 110), (480, 640, 3))  # a box wholly outside the frame


def test_snapshot_settings_are_validated() -> None:
    assert Settings().snapshots is True and Settings().snapshot_retention_days == 30
    for bad in (
        {"snapshot_retention_days": 0},
        {"snapshot_retention_days": 4000},
        {"snapshot_jpeg_quality": 5},
    ):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


# --- the store, on SQLite and PostgreSQL ---------------------------------------------------------


def _event(session: Session, door_id: int, **overrides: Any) -> AccessEvent:
    fields: dict[str, Any] = {
        "door_id": door_id,
        "decision": "denied",
        "reason": "unknown_person",
        "frames": 3,
        "frames_with_face": 3,
        "latency_ms": 40.0,
        "model_version": "test-v1",
        "request_id": uuid.uuid4().hex,
    }
    fields.update(overrides)
    return q.record_event(session, **fields)


def _snap(session: Session, event: AccessEvent, frame: bool = False) -> None:
    sq.add_snapshot(
        session, event, JPEG_MAGIC + b"face%d" % event.id, JPEG_MAGIC + b"frame" if frame else None
    )


def test_store_flags_purge_and_person_deletion(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as s:
        door = q.create_door(s, "Lobby", snapshot_full_frame=True)
        assert door.snapshot_full_frame is True
        door_id = door.id
        ada = q.create_person(s, "Ada").id
        bob = q.create_person(s, "Bob").id
        events = {
            "old": _event(s, door_id, created_at=now - timedelta(days=31)),
            "kept": _event(s, door_id, created_at=now - timedelta(days=29)),
            "ada_granted": _event(s, door_id, decision="granted", reason="match", person_id=ada),
            "ada_spoof": _event(s, door_id, reason="spoof", person_id=ada),
            "bob_granted": _event(s, door_id, decision="granted", reason="match", person_id=bob),
            "no_snap": _event(s, door_id, reason="no_face"),
        }
        for name, event in events.items():
            if name != "no_snap":
                _snap(s, event, frame=name == "ada_granted")
        s.commit()
        e = {name: event.id for name, event in events.items()}

    with Session(engine) as s:
        flags = sq.snapshot_flags(s, e.values())
        assert flags[e["ada_granted"]] == (True, True) and flags[e["old"]] == (True, False)
        assert e["no_snap"] not in flags and sq.snapshot_flags(s, []) == {}
        assert sq.snapshot_image(s, e["ada_granted"], "frame") == JPEG_MAGIC + b"frame"
        assert sq.snapshot_image(s, e["old"], "frame") is None
        assert sq.snapshot_image(s, e["no_snap"], "face") is None
        no_snap = s.get(AccessEvent, e["no_snap"])
        assert no_snap is not None
        with pytest.raises(ValueError):
            sq.add_snapshot(s, no_snap, b"")

    # Retention: only the event older than 30 days loses its picture; every event row stays.
    assert purge_expired(store_db.make_session_factory(engine), 30, now=now) == 1
    with Session(engine) as s:
        assert sq.snapshot_image(s, e["old"], "face") is None
        assert sq.snapshot_image(s, e["kept"], "face") == JPEG_MAGIC + b"face%d" % e["kept"]
        assert s.scalar(select(func.count()).select_from(AccessEvent)) == 6
        with pytest.raises(ValueError):
            sq.purge_expired(s, now.replace(tzinfo=None))

    # Deleting Ada removes the pictures of the events that let her in, not of her spoofed attempt,
    # nor Bob's; the event rows stay, and the audit chain (which does not cover snapshots) verifies.
    with Session(engine) as s:
        assert q.delete_person(s, ada) == []
        s.commit()
    with Session(engine) as s:
        remaining = set(s.scalars(select(EventSnapshot.event_id)))
        assert remaining == {e["kept"], e["ada_spoof"], e["bob_granted"]}
        granted = s.get(AccessEvent, e["ada_granted"])
        assert granted is not None and granted.person_id == ada
        result = verify(s)
        assert result.ok, result.problem

    with Session(engine) as s:
        changed = q.update_door(s, door_id, snapshot_full_frame=False)
        assert changed is not None and changed.snapshot_full_frame is False
        renamed = q.update_door(s, door_id, name="Hall")
        assert renamed is not None and renamed.snapshot_full_frame is False


def test_retention_cutoff() -> None:
    now = utcnow()
    assert retention_cutoff(30, now) == now - timedelta(days=30)
    with pytest.raises(ValueError):
        retention_cutoff(0, now)


# --- the service through real HTTP, on SQLite and PostgreSQL --------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str | None]:
    """None (the service's SQLite file) or a new PostgreSQL database, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    with new_pg_database("facegate_snap") as url:
        yield url


@pytest.fixture(scope="module")
def service(
    database: str | None, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("snapshots")
    # The service purges every 0.3 s (30-day retention); the CLI is run with 10 days.
    svc = ServiceProcess(data_dir, model_dir, database, FACEGATE_SNAPSHOT_PURGE_INTERVAL_S="0.3")
    assert svc.cli("db", "upgrade").returncode == 0
    created = svc.cli("keys", "create", "--role", "admin", "--name", "snap-admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    url = database or f"sqlite:///{(data_dir / 'facegate.db').as_posix()}"
    engine = store_db.make_engine(url)
    with svc, httpx.Client(base_url=svc.url, timeout=120) as c:
        yield {"svc": svc, "c": c, "admin": admin, "engine": engine}
    engine.dispose()


def _key(s: dict[str, Any], role: str, door_id: int | None = None) -> str:
    body = {"role": role, "name": f"{role}-{uuid.uuid4().hex[:6]}", "door_id": door_id}
    r = s["c"].post("/v1/keys", json=body, headers=bearer(s["admin"]))
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _post(s: dict[str, Any], door_id: int, key: str, frame: bytes) -> dict[str, Any]:
    files = [("frames", ("f0.jpg", frame, "image/jpeg"))]
    r = s["c"].post(f"/v1/doors/{door_id}/frames", files=files, headers=bearer(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _snapshot(s: dict[str, Any], event_id: int, key: str, kind: str | None = None) -> httpx.Response:
    params = {"kind": kind} if kind is not None else None
    return s["c"].get(f"/v1/events/{event_id}/snapshot", params=params, headers=bearer(key))  # type: ignore[no-any-return]


def _error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json()["error"]["code"])


def _age(s: dict[str, Any], event_id: int, days: int) -> None:
    with Session(s["engine"]) as session:
        session.execute(
            update(EventSnapshot)
            .where(EventSnapshot.event_id == event_id)
            .values(created_at=utcnow() - timedelta(days=days))
        )
        session.commit()


def test_snapshots_through_the_service(
    service: dict[str, Any], astronaut: NDArray[np.uint8], pipeline: Any
) -> None:
    from skimage import data

    s, c, admin = service, service["c"], service["admin"]
    auth = bearer(admin)
    # Doors: the default (face crop only), one created with the whole frame, one switched to it.
    plain = c.post("/v1/doors", json={"name": "Plain", "liveness_required": False}, headers=auth).json()
    assert plain["snapshot_full_frame"] is False
    full = c.post(
        "/v1/doors",
        json={"name": "Full", "liveness_required": False, "snapshot_full_frame": True},
        headers=auth,
    ).json()
    assert full["snapshot_full_frame"] is True
    guarded = c.post("/v1/doors", json={"name": "Guarded"}, headers=auth).json()
    r = c.patch(f"/v1/doors/{guarded['id']}", json={"snapshot_full_frame": True}, headers=auth)
    assert r.status_code == 200 and r.json()["snapshot_full_frame"] is True
    assert c.get(f"/v1/doors/{guarded['id']}", headers=auth).json()["snapshot_full_frame"] is True
    r = c.patch(f"/v1/doors/{guarded['id']}", json={"snapshot_full_frame": "yes"}, headers=auth)
    assert _error(r) == (422, "invalid_request")
    plain_key, full_key, guarded_key = (_key(s, "door", d["id"]) for d in (plain, full, guarded))
    auditor, verifier = _key(s, "auditor"), _key(s, "verifier")

    ada = c.post("/v1/people", json={"name": "Eileen"}, headers=auth).json()["id"]
    r = c.post(
        f"/v1/people/{ada}/faces", files={"image": ("a.jpg", _jpeg(astronaut), "image/jpeg")}, headers=auth
    )
    assert r.status_code == 201, r.text
    door_frame = _jpeg(_door_frame(astronaut), 80)
    stranger = _jpeg(_u8(np.dstack([data.camera()] * 3)))  # type: ignore[no-untyped-call]

    granted = _post(s, plain["id"], plain_key, door_frame)
    assert (granted["decision"], granted["person"]["id"]) == ("granted", ada)
    granted_full = _post(s, full["id"], full_key, door_frame)
    assert granted_full["decision"] == "granted"
    attempt = _post(s, guarded["id"], guarded_key, door_frame)  # a still: liveness undetermined
    assert (attempt["decision"], attempt["reason"]) == ("denied", "liveness_undetermined")
    other = _post(s, plain["id"], plain_key, stranger)
    assert (other["decision"], other["reason"]) == ("denied", "unknown_person")
    blank = _post(s, plain["id"], plain_key, _jpeg(np.full((480, 640, 3), 128, np.uint8)))
    assert blank["reason"] == "no_face"

    # The face crop: a JPEG holding Eileen's face, readable by auditor and admin keys.
    r = _snapshot(s, granted["event_id"], auditor)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "no-store" in r.headers["cache-control"]
    crop = _decode(r.content)
    faces = pipeline.faces(crop)
    assert len(faces) == 1 and faces[0].width >= 0.4 * crop.shape[1]
    assert _snapshot(s, granted["event_id"], admin, "face").content == r.content
    # The whole frame only where the door asks for it.
    assert _error(_snapshot(s, granted["event_id"], auditor, "frame")) == (404, "snapshot_not_found")
    r = _snapshot(s, granted_full["event_id"], auditor, "frame")
    assert r.status_code == 200 and _decode(r.content).shape == (480, 640, 3)
    assert _snapshot(s, attempt["event_id"], auditor, "frame").status_code == 200

    # Door and verifier keys may not see faces; no key at all is 401.
    for key in (plain_key, verifier):
        assert _error(_snapshot(s, granted["event_id"], key)) == (403, "forbidden")
    assert c.get(f"/v1/events/{granted['event_id']}/snapshot").status_code == 401
    # No picture: no face in the burst, no such event, an unknown kind.
    assert _error(_snapshot(s, blank["event_id"], auditor)) == (404, "snapshot_not_found")
    assert _error(_snapshot(s, 10**9, auditor)) == (404, "event_not_found")
    assert _error(_snapshot(s, granted["event_id"], auditor, "body")) == (422, "invalid_request")

    # The access log says which events have pictures.
    event = c.get(f"/v1/events/{granted_full['event_id']}", headers=bearer(auditor)).json()
    assert (event["has_snapshot"], event["has_frame"]) == (True, True)
    page = c.get("/v1/events", params={"limit": 5}, headers=bearer(auditor)).json()["items"]
    flags = {e["id"]: (e["has_snapshot"], e["has_frame"]) for e in page}
    assert flags[granted["event_id"]] == (True, False) and flags[blank["event_id"]] == (False, False)
    csv_text = c.get("/v1/events", params={"format": "csv"}, headers=bearer(auditor)).text
    assert "has_snapshot" in csv_text.splitlines()[0]

    # Deleting Eileen removes the pictures of the events that let her in, not of the denied attempt
    # made with her face, nor the stranger's; every event row stays.
    assert c.delete(f"/v1/people/{ada}", headers=auth).status_code == 204
    for gone in (granted, granted_full):
        assert _error(_snapshot(s, gone["event_id"], auditor)) == (404, "snapshot_not_found")
        event = c.get(f"/v1/events/{gone['event_id']}", headers=bearer(auditor)).json()
        assert (event["person_id"], event["has_snapshot"], event["has_frame"]) == (ada, False, False)
    assert _snapshot(s, attempt["event_id"], auditor).status_code == 200
    assert _snapshot(s, other["event_id"], auditor).status_code == 200

    # Retention: the service's periodic purge removes a snapshot past 30 days by itself...
    _age(s, other["event_id"], 31)
    deadline = time.monotonic() + 20
    while _snapshot(s, other["event_id"], auditor).status_code == 200:
        assert time.monotonic() < deadline, "the service did not purge an expired snapshot"
        time.sleep(0.3)
    assert _error(_snapshot(s, other["event_id"], auditor)) == (404, "snapshot_not_found")
    # ...and `facegate events purge-snapshots` at once, with its own retention.
    _age(s, attempt["event_id"], 20)
    time.sleep(1.0)  # several periodic purges: 20 days is within the service's 30
    assert _snapshot(s, attempt["event_id"], auditor).status_code == 200
    purged = s["svc"].cli("events", "purge-snapshots", "--retention-days", "10")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("1 snapshots purged"), purged.stdout
    assert _error(_snapshot(s, attempt["event_id"], auditor)) == (404, "snapshot_not_found")
    assert c.get(f"/v1/events/{attempt['event_id']}", headers=bearer(auditor)).status_code == 200
    assert s["svc"].cli("events", "purge-snapshots", "--retention-days", "0").returncode != 0

    # The audit chain still verifies (snapshots are not in it), and no picture reached the log.
    verified = s["svc"].cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    log = s["svc"].log.read_bytes()
    assert JPEG_MAGIC not in log and b"/9j/" not in log
