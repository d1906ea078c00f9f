"""Badge swipes at the door client (`facegate door --claim-from stdin|FILE`): unit tests of the
swipe feed, the claim riding with the burst, and a real claim-mode door on a real service."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from app.door.claims import ClaimFeed, ClaimSourceError, FileClaims, open_claims
from app.door.client import DoorClient
from app.door.config import DoorConfig
from tests.conftest import REPO, shared_faces
from tests.http_server import ServiceProcess, bearer
from tests.test_door_client import _frame, _write_video


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_swipe_is_used_once_in_order_and_stale_swipes_are_dropped() -> None:
    clock = _Clock()
    feed = ClaimFeed(ttl_s=10, clock=clock)
    feed.push("B-1\n")
    feed.push("   \n")  # a blank line is no swipe
    clock.now += 4
    feed.push(" B-2 ")
    assert feed.take() == "B-1" and feed.take() == "B-2" and feed.take() is None
    feed.push("B-3")
    clock.now += 10.5  # B-3 is older than the TTL: it must not ride with the next person
    feed.push("B-4")
    assert feed.take() == "B-4" and feed.take() is None
    feed.push("x" * 500)
    assert feed.take() == "x" * 200  # the service's limit for a claim


def test_stdin_swipes_are_read_in_the_background() -> None:
    feed = ClaimFeed(ttl_s=10)
    feed.follow(io.StringIO("B-7\nB-8\n")).join(5)
    assert [feed.take(), feed.take(), feed.take()] == ["B-7", "B-8", None]


def test_a_file_reader_sees_appended_lines_and_waits_for_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "reader.log"
    path.write_text("B-1\n")
    feed = FileClaims(path, ttl_s=10)
    assert feed.take() == "B-1" and feed.take() is None
    with path.open("a") as fh:
        fh.write("B-2\nB-3")  # B-3 is still being written
    assert feed.take() == "B-2" and feed.take() is None
    with path.open("a") as fh:
        fh.write("\n")
    assert feed.take() == "B-3"
    assert isinstance(open_claims(f"file:{path}", 5), FileClaims)
    with pytest.raises(ClaimSourceError, match="'stdin' or an existing file"):
        open_claims(str(tmp_path / "missing"), 5)


def test_the_next_burst_carries_the_swipe(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "still.avi", [_frame((240, 180), seed=i) for i in range(60)])
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(
            200,
            json={
                "event_id": len(bodies),
                "decision": "denied",
                "reason": "not_claimed_person",
                "hint": None,
            },
        )

    feed = ClaimFeed(ttl_s=60)
    feed.push("B-1042")
    cfg = DoorConfig(burst_frames=5, burst_fps=5, retry_s=1)
    client = DoorClient(
        "http://door.test",
        4,
        "fg_k",
        cfg,
        echo=lambda _: None,
        transport=httpx.MockTransport(handler),
        claims=feed,
    )
    client.run(str(video))
    client.close()
    assert len(bodies) >= 2
    assert b'name="claim"\r\n\r\nB-1042' in bodies[0]
    assert all(b'name="claim"' not in body for body in bodies[1:])  # one swipe, one burst


@pytest.fixture(scope="module")
def claim_door(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    faces = shared_faces()
    folder = tmp_path_factory.mktemp("door-claims")
    svc = ServiceProcess(folder, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
        door = c.post("/v1/doors", json={"name": "Badge door", "liveness_required": False, "mode": "claim"})
        assert door.status_code == 201, door.text
        door_id = door.json()["id"]
        key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door_id}).json()["key"]
        auditor = c.post("/v1/keys", json={"role": "auditor", "name": "desk"}).json()["key"]
        pid = c.post("/v1/people", json={"name": "Barack Obama", "external_id": "B-44"}).json()["id"]
        photo = faces / "examples/images/obama/examples__knn_examples__train__obama__obama2.jpg"
        r = c.post(f"/v1/people/{pid}/faces", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 201, r.text
        yield {"svc": svc, "door": door_id, "key": key, "auditor": auditor, "person": pid, "faces": faces}


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize(("swipe", "expected"), [("B-44", "granted Barack Obama"), ("B-99", "unknown_claim")])
def test_claim_from_a_badge_reader_file_at_a_real_claim_door(
    claim_door: dict[str, Any], tmp_path: Path, swipe: str, expected: str
) -> None:
    photo = cv2.imread(
        str(claim_door["faces"] / "examples/images/obama/examples__knn_examples__test__obama1.jpg")
    )
    assert photo is not None
    face = cv2.resize(photo, (640, 360), interpolation=cv2.INTER_AREA)
    frames = [np.full_like(face, 30)] * 10 + [
        np.roll(face, (i % 3 - 1, i % 2), axis=(0, 1)) for i in range(30)
    ]
    video = _write_video(tmp_path / "door.avi", frames)
    config = tmp_path / "door.toml"
    config.write_text("min_face_px = 60\nburst_frames = 6\nburst_fps = 5\nretry_s = 60\n")
    reader = tmp_path / "reader.log"
    reader.write_text(f"{swipe}\n")
    svc, door = claim_door["svc"], claim_door["door"]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "app.cli", "door", "--server", svc.url, "--door-id", str(door)),
            *("--source", str(video), "--config", str(config), "--claim-from", str(reader)),
        ],
        env={**os.environ, "FACEGATE_DOOR_KEY": claim_door["key"]},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout, done.stdout
    event_id = int(done.stdout.split("(event ")[1].split(")")[0])
    event = httpx.get(f"{svc.url}/v1/events/{event_id}", headers=bearer(claim_door["auditor"]), timeout=30)
    assert event.status_code == 200, event.text
    assert event.json()["mode"] == "claim" and event.json()["claim"] == swipe
