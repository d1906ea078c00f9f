"""Enrol real people through HTTP with one photo each; other photos of them open the door,
people never enrolled do not. Needs ../shared/faces (skipped without it)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import shared_faces
from tests.http_server import ServiceProcess, bearer

pytestmark = pytest.mark.shared


def _identities() -> tuple[dict[str, list[Path]], list[Path]]:
    """Enrolled identities (name -> [enrol photo, probe photos...]) and strangers' photos."""
    faces = shared_faces()
    people: dict[str, list[Path]] = defaultdict(list)
    with (faces / "examples" / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            people[row["identity"]].append(faces / "examples" / row["file"])
    lfw: dict[str, list[Path]] = defaultdict(list)
    with (faces / "lfw-dev" / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["known_label_error"] == "0":
                lfw[row["identity"]].append(faces / "lfw-dev" / row["file"])
    several = sorted(name for name, files in lfw.items() if len(files) >= 3)
    for name in several[::40][:12]:
        people[f"lfw:{name}"] = sorted(lfw[name])[:3]
    singles = sorted(name for name, files in lfw.items() if len(files) == 1)
    strangers = [lfw[name][0] for name in singles[::50][:12]]
    return dict(people), strangers


def _fresh_service(folder: Path, model_dir: Path, **env: str) -> Iterator[tuple[ServiceProcess, str]]:
    """A running server on a new, migrated database, and its first admin key."""
    svc = ServiceProcess(folder, model_dir, **env)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        yield svc, admin


@pytest.fixture(scope="module", params=["fusion", "sface"])
def service(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    """The default profile, and SFace alone."""
    folder = tmp_path_factory.mktemp(f"realfaces-{request.param}")
    yield from _fresh_service(folder, model_dir, FACEGATE_PROFILE=request.param)


def test_enrolled_people_are_recognised_and_strangers_are_not(service: tuple[ServiceProcess, str]) -> None:
    svc, admin = service
    people, strangers = _identities()
    assert len(people) >= 15 and len(strangers) >= 10
    c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
    door = c.post("/v1/doors", json={"name": "HQ", "liveness_required": False}).json()["id"]
    door_key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]

    ids: dict[str, int] = {}
    look_alikes = []
    for name, files in people.items():
        pid = c.post("/v1/people", json={"name": name}).json()["id"]
        r = c.post(
            f"/v1/people/{pid}/faces", files={"image": (files[0].name, files[0].read_bytes(), "image/jpeg")}
        )
        if r.status_code == 422 and r.json()["error"]["code"] == "duplicate_identity":
            # A real look-alike below τ: refusing it is the point of the check. Leave them out.
            details = r.json()["error"]["details"]
            assert details["person_id"] in ids.values() and details["distance"] < details["tau"]
            look_alikes.append((name, details["person_name"], details["distance"]))
            continue
        assert r.status_code == 201, (name, r.text)
        ids[name] = pid
    assert len(look_alikes) <= 2, look_alikes
    people = {name: files for name, files in people.items() if name in ids}

    def decide(photo: Path) -> dict[str, object]:
        r = httpx.post(
            f"{svc.url}/v1/doors/{door}/frames",
            files=[("frames", (photo.name, photo.read_bytes(), "image/jpeg"))],
            headers=bearer(door_key),
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    right, wrong, missed = 0, [], []
    for name, files in people.items():
        for probe in files[1:]:
            body = decide(probe)
            person = body["person"]
            if body["decision"] == "granted":
                if isinstance(person, dict) and person["id"] == ids[name]:
                    right += 1
                else:
                    wrong.append((probe.name, person))
            else:
                missed.append((probe.name, body["reason"], body["distance"]))
    assert right >= 0.9 * (right + len(wrong) + len(missed)), (wrong, missed)
    strangers_in = [
        (p.name, b["person"], b["distance"]) for p in strangers if (b := decide(p))["decision"] == "granted"
    ]
    # Either YuNet profile at the τ the service calibrates for this K: nobody is taken for
    # somebody else and no stranger gets in (dlib's fixed τ 0.6 let 2 of these through).
    assert wrong == [] and strangers_in == [], (wrong, strangers_in)
    body = decide(strangers[0])
    ready = httpx.get(f"{svc.url}/readyz", timeout=30).json()
    assert body["tau"] == pytest.approx(ready["checks"]["calibration"]["tau"])


@pytest.fixture
def empty_service(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    """Its own server: the module's gallery already holds the performer."""
    yield from _fresh_service(tmp_path_factory.mktemp("performer"), model_dir)


def test_a_live_performer_on_real_video_is_never_denied_as_a_spoof(
    empty_service: tuple[ServiceProcess, str],
) -> None:
    """Bursts of a real live person (the clip's performer, enrolled from another photo of him)
    at a door that requires liveness: recognised, and never accused of being a picture."""
    import cv2

    svc, admin = empty_service
    faces = shared_faces()
    video = faces / "videos" / "face_recognition_short_hamilton_clip.mp4"
    photo = faces / "examples" / "images" / "lin_manuel_miranda" / "examples__lin-manuel-miranda.png"
    if not video.is_file() or not photo.is_file():
        pytest.skip("the real clip or its performer's photo is absent")
    c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
    door = c.post("/v1/doors", json={"name": "Stage door"}).json()
    assert door["liveness_required"] is True
    door_key = c.post("/v1/keys", json={"role": "door", "name": "stage-cam", "door_id": door["id"]}).json()[
        "key"
    ]
    auditor = c.post("/v1/keys", json={"role": "auditor", "name": "security"}).json()["key"]
    pid = c.post("/v1/people", json={"name": "Performer"}).json()["id"]
    r = c.post(f"/v1/people/{pid}/faces", files={"image": (photo.name, photo.read_bytes(), "image/png")})
    assert r.status_code == 201, r.text

    # The performer facing the camera (frames 90-210, after the close-up and before the audience),
    # every 2nd frame as a door client at 15 fps would send, 10 frames a burst.
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    index = 0
    while index < 210:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= 90 and index % 2 == 0:
            frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        index += 1
    capture.release()
    bursts = [frames[i : i + 10] for i in range(0, len(frames) - 9, 10)]
    assert len(bursts) >= 5

    reasons = []
    for burst in bursts:
        r = httpx.post(
            f"{svc.url}/v1/doors/{door['id']}/frames",
            files=[("frames", (f"f{k}.jpg", f, "image/jpeg")) for k, f in enumerate(burst)],
            data={"timestamps": [f"{2 * k / 29.97:.4f}" for k in range(len(burst))]},
            headers=bearer(door_key),
            timeout=120,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["reason"] != "spoof" and body["liveness"]["outcome"] != "spoof", body["liveness"]
        if body["reason"] == "liveness_undetermined":
            assert body["hint"] == "turn_head"
        event = c.get(f"/v1/events/{body['event_id']}", headers=bearer(auditor)).json()
        reasons.append((body["reason"], event["person_id"]))
    # He is recognised: the door opens or asks him to turn his head; it never takes him for a stranger.
    recognised = [r for r in reasons if r[0] in ("match", "liveness_undetermined") and r[1] == pid]
    assert len(recognised) >= len(reasons) - 1, reasons
