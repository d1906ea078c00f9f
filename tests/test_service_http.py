"""The service through real HTTP: `facegate serve` on loopback, real models, real SQLite.

Photos: skimage's astronaut (enrolled) and cameraman (never enrolled) ship with scikit-image,
so these run without ../shared; the test on many real identities needs ../shared/faces.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.http_server import ServiceProcess, bearer

# (attack type, renderer seed): bursts in which the sheet visibly turns, so geometry can judge.
PRINT_ATTACKS = [("print_flat", 1), ("print_bent", 2)]


def jpeg(rgb: NDArray[np.uint8], quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    from skimage import data

    astronaut = np.ascontiguousarray(data.astronaut())
    camera = np.ascontiguousarray(np.dstack([data.camera()] * 3))
    # A door frame of the astronaut: mirrored, darker, re-compressed, on a 640x480 canvas.
    frame = np.full((480, 640, 3), 60, np.uint8)
    small = cv2.resize(np.ascontiguousarray(astronaut[:, ::-1]), (400, 400))
    frame[40:440, 120:520] = (small * 0.8).astype(np.uint8)
    return {
        "astronaut": jpeg(astronaut),
        "astronaut_frame": jpeg(frame, 80),
        "astronaut_mirror": jpeg(np.ascontiguousarray(astronaut[:, ::-1]), 85),
        "camera": jpeg(camera),
        "blank": jpeg(np.full((480, 640, 3), 128, np.uint8)),
        "blurred": jpeg(cv2.GaussianBlur(astronaut, (0, 0), 4)),
        "two_faces": jpeg(np.hstack([astronaut, astronaut])),
    }


@pytest.fixture(scope="module")
def service(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    data_dir = tmp_path_factory.mktemp("service")
    svc = ServiceProcess(data_dir, model_dir)
    upgrade = svc.cli("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    created = svc.cli("keys", "create", "--role", "admin", "--name", "test-admin")
    assert created.returncode == 0, created.stderr
    admin_key = created.stdout.strip().splitlines()[-1]
    assert admin_key.startswith("fg_")
    with svc:
        yield svc, admin_key


@pytest.fixture(scope="module")
def setup(service: tuple[ServiceProcess, str]) -> dict[str, Any]:
    svc, admin = service
    c = httpx.Client(base_url=svc.url, timeout=60)
    # Still photos can never pass liveness: the identity tests use a door that does not require it.
    door = c.post(
        "/v1/doors", json={"name": "Main entrance", "liveness_required": False}, headers=bearer(admin)
    ).json()
    other = c.post("/v1/doors", json={"name": "Loading bay"}, headers=bearer(admin)).json()
    door_key = c.post(
        "/v1/keys", json={"role": "door", "name": "cam-1", "door_id": door["id"]}, headers=bearer(admin)
    ).json()["key"]
    guarded_key = c.post(
        "/v1/keys", json={"role": "door", "name": "cam-2", "door_id": other["id"]}, headers=bearer(admin)
    ).json()["key"]
    auditor_key = c.post(
        "/v1/keys", json={"role": "auditor", "name": "security"}, headers=bearer(admin)
    ).json()["key"]
    return {
        "c": c,
        "admin": admin,
        "door": door,
        "other_door": other,
        "door_key": door_key,
        "guarded_key": guarded_key,
        "auditor": auditor_key,
    }


def post_frames(
    s: dict[str, Any],
    *frames: bytes,
    door_id: int | None = None,
    key: str | None = None,
    timestamps: list[str] | None = None,
) -> httpx.Response:
    door = s["door"]["id"] if door_id is None else door_id
    files = [("frames", (f"f{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    data = {"timestamps": timestamps} if timestamps is not None else None
    return s["c"].post(
        f"/v1/doors/{door}/frames", files=files, data=data, headers=bearer(key or s["door_key"])
    )


def enrol(s: dict[str, Any], person_id: int, photo: bytes, force: bool = False) -> httpx.Response:
    return s["c"].post(
        f"/v1/people/{person_id}/faces",
        params={"force": "true"} if force else None,
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        headers=bearer(s["admin"]),
    )


def new_person(s: dict[str, Any], name: str, external_id: str | None = None) -> int:
    r = s["c"].post("/v1/people", json={"name": name, "external_id": external_id}, headers=bearer(s["admin"]))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_health_ready_metrics(service: tuple[ServiceProcess, str]) -> None:
    svc, _ = service
    assert httpx.get(f"{svc.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{svc.url}/readyz").json()
    assert ready["status"] == "ready"
    assert set(ready["checks"]) == {"models", "index", "database", "calibration", "liveness"}
    assert ready["checks"]["liveness"]["ok"] is True and 0.0 < ready["checks"]["liveness"]["threshold"] < 1.0
    metrics = httpx.get(f"{svc.url}/metrics").text
    assert "facegate_gallery_templates" in metrics


def test_not_ready_while_liveness_is_uncalibrated(model_dir: Path, tmp_path: Path) -> None:
    """Models whose manifest carries no liveness fusion (fitted on other artifacts: what a build on
    another CPU once gave) would make every burst "undetermined": /readyz says so with a 503."""
    models = tmp_path / "models"
    models.mkdir()
    for artifact in model_dir.iterdir():
        if artifact.name != "manifest.json":
            (models / artifact.name).symlink_to(artifact.resolve())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    del manifest["models"]["liveness"]["fusion"]
    (models / "manifest.json").write_text(json.dumps(manifest))
    svc = ServiceProcess(tmp_path / "data", models)
    (tmp_path / "data").mkdir()
    assert svc.cli("db", "upgrade").returncode == 0
    try:
        svc.start(ready=False)
        ready = httpx.get(f"{svc.url}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        checks = ready.json()["checks"]
        assert checks["liveness"] == {"ok": False, "pad": False, "error": "liveness_uncalibrated"}
        assert checks["database"]["ok"] and checks["models"]["ok"]
    finally:
        svc.stop()


def test_authentication_and_roles(setup: dict[str, Any]) -> None:
    c = setup["c"]
    r = c.get("/v1/people")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert c.get("/v1/people", headers=bearer("fg_wrong")).status_code == 401
    r = c.get("/v1/people", headers=bearer(setup["auditor"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert c.get("/v1/events", headers=bearer(setup["admin"])).status_code == 403
    assert c.get("/v1/events", headers=bearer(setup["door_key"])).status_code == 403
    r = post_frames(setup, b"x", door_id=setup["other_door"]["id"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_door"
    assert post_frames(setup, b"x", key=setup["auditor"]).status_code == 403
    # A door key cannot be made without a door, nor for a door that does not exist.
    r = c.post("/v1/keys", json={"role": "door", "name": "x"}, headers=bearer(setup["admin"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = c.post("/v1/keys", json={"role": "door", "name": "x", "door_id": 999}, headers=bearer(setup["admin"]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "door_not_found"
    r = c.post("/v1/keys", json={"role": "root", "name": "x"}, headers=bearer(setup["admin"]))
    assert r.status_code == 422
    # Listing keys never shows secrets.
    listed = c.get("/v1/keys", headers=bearer(setup["admin"])).text
    assert setup["door_key"] not in listed and setup["admin"] not in listed


def test_enrol_refusals_are_explicit(setup: dict[str, Any], photos: dict[str, bytes]) -> None:
    pid = new_person(setup, "Refusals")
    cases = {
        "blank": (422, "no_face"),
        "two_faces": (422, "multiple_faces"),
        "blurred": (422, "low_quality"),
        "camera": (422, "face_too_small"),  # the cameraman's face is ~69 px wide
    }
    for name, (status, code) in cases.items():
        r = enrol(setup, pid, photos[name])
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)
        assert r.json()["error"]["message"]
    r = enrol(setup, pid, b"definitely not an image")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "not_an_image")
    r = enrol(setup, pid, photos["astronaut"][: len(photos["astronaut"]) // 2])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "not_an_image")
    r = enrol(setup, 99999, photos["astronaut"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "person_not_found")
    assert setup["c"].get(f"/v1/people/{pid}", headers=bearer(setup["admin"])).json()["faces"] == 0


def test_enrol_recognise_review_delete(setup: dict[str, Any], photos: dict[str, bytes]) -> None:
    c, admin = setup["c"], setup["admin"]
    pid = new_person(setup, "Eileen Collins", "E-1001")
    r = enrol(setup, pid, photos["astronaut"])
    assert r.status_code == 201, r.text
    face = r.json()
    assert face["person_id"] == pid and face["quality"]["face_width_px"] >= 80
    # The same face for somebody else is refused, naming the person, unless forced.
    twin = new_person(setup, "Impostor")
    r = enrol(setup, twin, photos["astronaut_mirror"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "duplicate_identity"
    assert "Eileen Collins" in r.json()["error"]["message"]
    assert r.json()["error"]["details"]["person_id"] == pid
    c.delete(f"/v1/people/{twin}", headers=bearer(admin))

    r = post_frames(setup, photos["astronaut_frame"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "granted" and body["reason"] == "match"
    assert body["person"] == {"id": pid, "name": "Eileen Collins"}
    assert body["distance"] < 0.6 and body["frames"] == 1 and body["frames_with_face"] == 1
    # Liveness is still judged and recorded on a door that does not require it.
    assert body["liveness"]["required"] is False and body["liveness"]["track_frames"] == 1
    assert body["liveness"]["outcome"] == "undetermined" and body["hint"] is None

    # Several frames: the stranger wins no majority; no face at all is its own reason.
    r = post_frames(setup, photos["camera"], photos["camera"], photos["astronaut_frame"])
    assert (r.json()["decision"], r.json()["reason"]) == ("denied", "unknown_person")
    assert r.json()["person"] is None
    r = post_frames(setup, photos["blank"], photos["blank"])
    assert (r.json()["decision"], r.json()["reason"], r.json()["frames_with_face"]) == (
        "denied",
        "no_face",
        0,
    )

    # The auditor sees every decision, newest first, with cursor pagination and CSV.
    events = c.get("/v1/events", params={"limit": 2}, headers=bearer(setup["auditor"])).json()
    assert [e["reason"] for e in events["items"]] == ["no_face", "unknown_person"]
    rest = c.get(
        "/v1/events", params={"limit": 2, "cursor": events["next_cursor"]}, headers=bearer(setup["auditor"])
    ).json()
    assert rest["items"][0]["reason"] == "match" and rest["items"][0]["person_id"] == pid
    granted = c.get("/v1/events", params={"decision": "granted"}, headers=bearer(setup["auditor"])).json()
    assert {e["person_id"] for e in granted["items"]} == {pid}
    one = c.get(f"/v1/events/{body['event_id']}", headers=bearer(setup["auditor"])).json()
    assert one["request_id"] == body["request_id"] and one["door_id"] == setup["door"]["id"]
    exported = c.get("/v1/events", params={"format": "csv"}, headers=bearer(setup["auditor"]))
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) >= 3 and {"id", "decision", "reason", "person_id", "best_distance"} <= set(rows[0])
    r = c.get("/v1/events", params={"cursor": "garbage"}, headers=bearer(setup["auditor"]))
    assert r.status_code == 422

    # Deleting the person removes them from recognition at once; old events keep the bare id.
    assert c.delete(f"/v1/people/{pid}", headers=bearer(admin)).status_code == 204
    r = post_frames(setup, photos["astronaut_frame"])
    assert (r.json()["decision"], r.json()["reason"]) == ("denied", "unknown_person")
    assert (
        c.get(f"/v1/events/{body['event_id']}", headers=bearer(setup["auditor"])).json()["person_id"] == pid
    )
    assert c.get(f"/v1/people/{pid}", headers=bearer(admin)).status_code == 404


def test_door_liveness_policy(setup: dict[str, Any], photos: dict[str, bytes]) -> None:
    c, admin = setup["c"], setup["admin"]
    guarded = setup["other_door"]
    assert (guarded["liveness_required"], guarded["liveness_undetermined"]) == (True, "deny")
    pid = new_person(setup, "Guarded Collins")
    assert enrol(setup, pid, photos["astronaut"], force=True).status_code == 201
    try:
        # One still frame cannot show a head turning: denied, and the client is told what to ask for.
        r = post_frames(setup, photos["astronaut_frame"], door_id=guarded["id"], key=setup["guarded_key"])
        body = r.json()
        assert (body["decision"], body["reason"], body["hint"]) == (
            "denied",
            "liveness_undetermined",
            "turn_head",
        )
        assert body["liveness"]["outcome"] == "undetermined" and body["liveness"]["required"] is True
        assert body["person"] is None
        event = c.get(f"/v1/events/{body['event_id']}", headers=bearer(setup["auditor"])).json()
        assert event["reason"] == "liveness_undetermined" and event["person_id"] == pid
        assert event["liveness"]["outcome"] == "undetermined" and "cues" in event["liveness"]

        # The door's policy may open for an undetermined burst instead.
        r = c.patch(
            f"/v1/doors/{guarded['id']}", json={"liveness_undetermined": "grant"}, headers=bearer(admin)
        )
        assert r.status_code == 200 and r.json()["liveness_undetermined"] == "grant"
        r = post_frames(setup, photos["astronaut_frame"], door_id=guarded["id"], key=setup["guarded_key"])
        assert (r.json()["decision"], r.json()["reason"]) == ("granted", "match")
    finally:
        c.patch(f"/v1/doors/{guarded['id']}", json={"liveness_undetermined": "deny"}, headers=bearer(admin))
        c.delete(f"/v1/people/{pid}", headers=bearer(admin))

    r = c.patch(f"/v1/doors/{guarded['id']}", json={"liveness_undetermined": "maybe"}, headers=bearer(admin))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    r = c.patch("/v1/doors/999999", json={"liveness_required": False}, headers=bearer(admin))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "door_not_found")
    r = c.patch(f"/v1/doors/{guarded['id']}", json={"name": setup["door"]["name"]}, headers=bearer(admin))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "door_exists")
    r = c.patch(
        f"/v1/doors/{guarded['id']}", json={"liveness_required": False}, headers=bearer(setup["auditor"])
    )
    assert r.status_code == 403
    assert c.get(f"/v1/doors/{guarded['id']}", headers=bearer(admin)).json()["liveness_required"] is True


def test_a_moving_print_of_an_enrolled_face_is_denied_as_spoof(
    setup: dict[str, Any], photos: dict[str, bytes], pipeline: Any
) -> None:
    """The astronaut's enrolment photo, printed and moved in front of the camera (rendered)."""
    from app.evaluation.liveness_render import Photo, render_attack

    c, admin = setup["c"], setup["admin"]
    bgr = cv2.imdecode(np.frombuffer(photos["astronaut"], np.uint8), cv2.IMREAD_COLOR)
    (face,) = pipeline.faces(bgr)
    pid = new_person(setup, "Printed Collins")
    assert enrol(setup, pid, photos["astronaut"], force=True).status_code == 201
    try:
        for attack, seed in PRINT_ATTACKS:
            burst = render_attack(Photo(bgr, face.box, "astronaut"), attack, seed)
            r = post_frames(
                setup,
                *burst.jpegs,
                door_id=setup["other_door"]["id"],
                key=setup["guarded_key"],
                timestamps=[f"{t:.4f}" for t in burst.timestamps],
            )
            body = r.json()
            assert (body["decision"], body["reason"], body["person"]) == ("denied", "spoof", None), (
                attack,
                body,
            )
            assert body["liveness"]["outcome"] == "spoof" and body["liveness"]["drivers"]
            # The audit trail names whom the print impersonated.
            event = c.get(f"/v1/events/{body['event_id']}", headers=bearer(setup["auditor"])).json()
            assert (event["reason"], event["person_id"]) == ("spoof", pid)
    finally:
        c.delete(f"/v1/people/{pid}", headers=bearer(admin))


def test_bad_timestamps_are_refused_before_inference(setup: dict[str, Any], photos: dict[str, bytes]) -> None:
    two = (photos["blank"], photos["blank"])
    for stamps, message in [
        (["0.0"], "1 timestamps for 2 frames"),
        (["0.5", "0.2"], "increase strictly"),
        (["0", "60"], "at most 10 s"),
        (["0", "inf"], "finite"),
    ]:
        r = post_frames(setup, *two, timestamps=stamps)
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_timestamps"), r.text
        assert message in r.json()["error"]["message"]
    r = post_frames(setup, *two, timestamps=["0", "soon"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    r = post_frames(setup, *two, timestamps=["1700000000.10", "1700000000.35"])
    assert r.status_code == 200 and r.json()["reason"] == "no_face"


def test_bad_frames_are_clear_errors(setup: dict[str, Any], photos: dict[str, bytes]) -> None:
    r = post_frames(setup, b"GIF89a garbage")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "not_an_image")
    r = post_frames(setup, *([photos["blank"]] * 16))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "too_many_frames")
    r = post_frames(setup, photos["blank"], door_id=123456)
    assert r.status_code == 403  # a door key is only ever good for its own door
    r = setup["c"].post(f"/v1/doors/{setup['door']['id']}/frames", headers=bearer(setup["door_key"]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    huge = b"\xff\xd8" + b"\x00" * (10 * 1024 * 1024 + 10) + b"\xff\xd9"
    r = post_frames(setup, huge)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "image_too_large")
    r = setup["c"].get("/v1/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_persistence_across_restart(
    setup: dict[str, Any], service: tuple[ServiceProcess, str], photos: dict[str, bytes]
) -> None:
    svc, _ = service
    pid = new_person(setup, "Persisted")
    assert enrol(setup, pid, photos["astronaut"]).status_code == 201
    svc.stop()
    svc.start()
    r = post_frames(setup, photos["astronaut_frame"])
    assert r.json()["decision"] == "granted" and r.json()["person"]["id"] == pid
    setup["c"].delete(f"/v1/people/{pid}", headers=bearer(setup["admin"]))


def test_concurrent_enrolments_deletes_and_recognitions_stay_consistent(
    setup: dict[str, Any], service: tuple[ServiceProcess, str], photos: dict[str, bytes]
) -> None:
    import threading

    svc, _ = service
    errors: list[str] = []
    created: list[int] = []
    lock = threading.Lock()

    def enrol_some(tag: str) -> None:
        for i in range(4):
            pid = new_person(setup, f"Load {tag}{i}")
            with lock:
                created.append(pid)
            r = enrol(setup, pid, photos["astronaut"], force=True)
            if r.status_code != 201:
                errors.append(r.text)

    def delete_some() -> None:
        for _ in range(4):
            with lock:
                victim = created.pop(0) if created else None
            if victim is not None:
                r = setup["c"].delete(f"/v1/people/{victim}", headers=bearer(setup["admin"]))
                if r.status_code not in (204, 404):
                    errors.append(r.text)

    def recognise_some() -> None:
        for _ in range(4):
            r = post_frames(setup, photos["astronaut_frame"])
            if r.status_code != 200 or r.json()["reason"] not in {"match", "ambiguous", "unknown_person"}:
                errors.append(r.text)

    threads = [threading.Thread(target=f, args=a) for f, a in ((enrol_some, ("a",)), (enrol_some, ("b",)))]
    threads += [threading.Thread(target=delete_some), threading.Thread(target=recognise_some)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    people = setup["c"].get("/v1/people", params={"limit": 1000}, headers=bearer(setup["admin"])).json()
    in_sql = sum(p["faces"] for p in people)
    in_index = httpx.get(f"{svc.url}/readyz").json()["checks"]["index"]["templates"]
    assert in_index == in_sql
    for p in people:
        setup["c"].delete(f"/v1/people/{p['id']}", headers=bearer(setup["admin"]))
    assert httpx.get(f"{svc.url}/readyz").json()["checks"]["index"]["templates"] == 0


def test_serve_refuses_a_database_that_is_not_migrated(model_dir: Path, tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path, model_dir)
    with pytest.raises(RuntimeError, match="server exited with 2") as info:
        svc.start()
    assert "run `facegate db upgrade`" in str(info.value)
