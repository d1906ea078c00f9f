"""The door client: its trigger on synthetic frames, its config, backoff and cooldown, and a real run
on a video file against a real `facegate serve` and the local Mosquitto broker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from app.door.client import DoorClient
from app.door.config import ConfigError, DoorConfig, door_key, load_config
from app.door.trigger import SkinFinder, StillFaceTrigger, TriggerSettings
from tests.conftest import REPO, shared_faces
from tests.http_server import ServiceProcess, bearer

SKIN = (120, 160, 220)  # BGR of a light skin tone, inside the finder's YCrCb range
FPS = 10.0


def _frame(centre: tuple[int, int] | None, axes: tuple[int, int] = (60, 80), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 40, size=(360, 480, 3), dtype=np.uint8)  # dark sensor noise
    if centre is not None:
        cv2.ellipse(img, centre, axes, 0, 0, 360, SKIN, -1)
    return img


def _fires(frames: list[np.ndarray], **overrides: float) -> list[int]:
    settings = TriggerSettings(
        min_face_px=int(overrides.get("min_face_px", 80)),
        still_s=overrides.get("still_s", 0.6),
        still_diff=overrides.get("still_diff", 12.0),
        still_shift=overrides.get("still_shift", 0.15),
    )
    trigger = StillFaceTrigger(settings, SkinFinder())
    return [i for i, f in enumerate(frames) if trigger.update(f, i / FPS)]


def test_a_still_face_fires_after_still_s_and_not_before() -> None:
    frames = [_frame(None, seed=i) for i in range(5)] + [_frame((240, 180), seed=i) for i in range(15)]
    fired = _fires(frames)
    # Appears at frame 5 (t 0.5 s), still from frame 6 on: fires at t 1.1 s, 0.6 s after it appeared.
    assert fired and fired[0] == 11, fired
    assert _fires(frames, still_s=0.0)[0] == 6


def test_no_face_a_moving_face_or_a_small_face_never_fires() -> None:
    assert _fires([_frame(None, seed=i) for i in range(30)]) == []
    moving = [_frame((100 + 12 * i, 180), seed=i) for i in range(25)]  # 12 px/frame, box 121 px wide
    assert _fires(moving) == []
    assert _fires(moving, still_shift=0.5, still_diff=255) != []  # looser bounds: the same walk is still
    small = [_frame((240, 180), axes=(25, 30), seed=i) for i in range(30)]
    assert _fires(small) == []
    assert _fires(small, min_face_px=40) != []


def test_changing_content_inside_the_box_is_not_still() -> None:
    frames = []
    for i in range(30):
        img = _frame((240, 180), seed=i)
        if i % 2:  # a darker skin tone every other frame: grey levels jump by ~49 inside the face
            cv2.ellipse(img, (240, 180), (60, 80), 0, 0, 360, (80, 110, 170), -1)
        frames.append(img)
    assert _fires(frames) == []
    assert _fires(frames, still_diff=60.0) != []


def test_a_face_that_leaves_and_returns_starts_over() -> None:
    frames = [_frame((240, 180), seed=i) for i in range(5)]
    frames += [_frame(None, seed=i) for i in range(3)]
    frames += [_frame((240, 180), seed=i) for i in range(10)]
    assert _fires(frames)[0] == 8 + 6


def test_config_validation_errors(tmp_path: Path) -> None:
    assert DoorConfig().burst_frames == 8
    bad = {
        "burst_frames = 20": "burst_frames",
        "burst_fps = 0": "burst_fps",
        "min_face_px = 5": "min_face_px",
        "cooldown_s = -1": "cooldown_s",
        "colour = 'red'": "colour",
        "backoff_base_s = 10\nbackoff_max_s = 1": "backoff_max_s",
        "[[outputs]]\ntype = 'mqtt'\nport = 70000": "port",
        "[[outputs]]\ntype = 'command'\nargv = []": "argv",
        "[[outputs]]\ntype = 'webhook'\nurl = 'ftp://x'": "url",
        "[[outputs]]\ntype = 'carrier-pigeon'": "type",
        "burst_frames = ": "Invalid",
    }
    for text, word in bad.items():
        path = tmp_path / "door.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=word):
            load_config(path)
    with pytest.raises(ConfigError, match=r"door\.toml"):
        load_config(tmp_path / "missing" / "door.toml")
    good = tmp_path / "good.toml"
    good.write_text(
        "burst_frames = 10\ncooldown_s = 30\n[[outputs]]\ntype = 'mqtt'\n"
        "[[outputs]]\ntype = 'command'\nargv = ['relay', 'open']\n"
    )
    cfg = load_config(good)
    assert cfg.burst_frames == 10 and [o.type for o in cfg.outputs] == ["mqtt", "command"]


def test_door_key_comes_from_the_environment_or_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEGATE_DOOR_KEY", raising=False)
    with pytest.raises(ConfigError, match="FACEGATE_DOOR_KEY"):
        door_key(DoorConfig())
    (tmp_path / "key").write_text("fg_from_file\n")
    assert door_key(DoorConfig(key_file=tmp_path / "key")) == "fg_from_file"
    monkeypatch.setenv("FACEGATE_DOOR_KEY", "fg_from_env")
    assert door_key(DoorConfig(key_file=tmp_path / "key")) == "fg_from_env"


def _write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


class _Recorder:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def deliver(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)

    def close(self) -> None:
        pass


def test_backoff_on_network_errors_and_busy_then_cooldown_after_a_grant(tmp_path: Path) -> None:
    # 6 s of a still face: one burst, a grant, then the 10 s cooldown keeps the door quiet.
    video = _write_video(tmp_path / "still.avi", [_frame((240, 180), seed=i) for i in range(60)])
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) <= 2:
            return httpx.Response(503, json={"error": {"code": "busy"}})
        n = len(calls)
        return httpx.Response(
            200,
            json={
                "event_id": n,
                "decision": "granted",
                "reason": "match",
                "hint": None,
                "person": {"id": 3, "name": "Ada"},
                "distance": 0.2,
            },
        )

    sleeps: list[float] = []
    lines: list[str] = []
    cfg = DoorConfig(burst_frames=5, burst_fps=5, cooldown_s=10, backoff_base_s=0.5, backoff_max_s=0.8)
    client = DoorClient(
        "http://door.test",
        4,
        "fg_k",
        cfg,
        echo=lines.append,
        sleep=sleeps.append,
        transport=httpx.MockTransport(handler),
    )
    recorder = _Recorder()
    client.outputs.append(recorder)
    stats = client.run(str(video))
    client.close()
    assert sleeps == [0.5, 0.8]  # exponential, capped
    assert len(calls) == 3 and stats.bursts_sent == 3 and len(stats.answers) == 1
    assert calls[0].headers["Authorization"] == "Bearer fg_k" and calls[0].url.path == "/v1/doors/4/frames"
    body = calls[0].content
    assert body.count(b'name="frames"') == 5 and body.count(b'name="timestamps"') == 5
    assert b"0.800" in body  # 5 frames at 5 fps: 0.0 ... 0.8 s
    assert [p["decision"] for p in recorder.payloads] == ["granted"]
    assert "distance" not in recorder.payloads[0]
    assert any("granted Ada" in line for line in lines)


def test_a_denial_with_a_hint_is_shown_and_retried_after_retry_s(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "still.avi", [_frame((240, 180), seed=i) for i in range(60)])
    answers = iter(
        [
            {
                "event_id": 1,
                "decision": "denied",
                "reason": "liveness_undetermined",
                "hint": "turn_head",
                "person": None,
            },
            {
                "event_id": 2,
                "decision": "granted",
                "reason": "match",
                "hint": None,
                "person": {"id": 3, "name": "Ada"},
            },
        ]
    )
    lines: list[str] = []
    cfg = DoorConfig(burst_frames=5, burst_fps=5, retry_s=1.0, cooldown_s=100)
    client = DoorClient(
        "http://door.test",
        1,
        "k",
        cfg,
        echo=lines.append,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=next(answers))),
    )
    stats = client.run(str(video))
    client.close()
    assert [a["decision"] for a in stats.answers] == ["denied", "granted"]
    assert any("turn_head" in line and "turn your head" in line for line in lines)


def _mqtt_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=1):
            return True
    except OSError:
        return False


class _Subscriber:
    def __init__(self, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)

        def on_connect(client: mqtt.Client, *_: object) -> None:
            for topic in topics:
                client.subscribe(topic, qos=1)

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.ready.wait(10)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def door_service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    faces = shared_faces()
    folder = tmp_path_factory.mktemp("door-client")
    svc = ServiceProcess(folder, model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
        door = c.post("/v1/doors", json={"name": "Lobby", "liveness_required": False}).json()["id"]
        door_key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]
        auditor = c.post("/v1/keys", json={"role": "auditor", "name": "desk"}).json()["key"]
        pid = c.post("/v1/people", json={"name": "Barack Obama"}).json()["id"]
        photo = faces / "examples/images/obama/examples__knn_examples__train__obama__obama2.jpg"
        r = c.post(f"/v1/people/{pid}/faces", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 201, r.text
        yield {"svc": svc, "door": door, "key": door_key, "auditor": auditor, "person": pid, "faces": faces}


@pytest.mark.slow
@pytest.mark.shared
def test_door_client_on_a_video_file_against_the_real_service(
    door_service: dict[str, Any], tmp_path: Path
) -> None:
    svc, door = door_service["svc"], door_service["door"]
    # Another photo of the enrolled person, held up with 1-px jitter after 1 s of an empty room.
    photo = cv2.imread(
        str(door_service["faces"] / "examples/images/obama/examples__knn_examples__test__obama1.jpg")
    )
    assert photo is not None
    face = cv2.resize(photo, (640, 360), interpolation=cv2.INTER_AREA)
    empty = np.full_like(face, 30)
    frames = [empty] * 10 + [np.roll(face, (i % 3 - 1, i % 2), axis=(0, 1)) for i in range(40)]
    video = _write_video(tmp_path / "lobby.avi", frames)

    config = tmp_path / "door.toml"
    command_out = tmp_path / "relay.json"
    relay = "import os,sys; open(sys.argv[1], 'w').write(os.environ['FACEGATE_PAYLOAD'])"
    config.write_text(
        "min_face_px = 60\nburst_frames = 6\nburst_fps = 5\ncooldown_s = 30\n"
        "[[outputs]]\ntype = 'command'\n"
        f"argv = [{json.dumps(sys.executable)}, '-c', {json.dumps(relay)}, {json.dumps(str(command_out))}]\n"
        + ("[[outputs]]\ntype = 'mqtt'\n" if _mqtt_up() else "")
    )
    subscriber = _Subscriber([f"facegate/doors/{door}/unlock", "facegate/events"]) if _mqtt_up() else None
    env = {**os.environ, "FACEGATE_DOOR_KEY": door_service["key"]}
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "door",
            "--server",
            svc.url,
            "--door-id",
            str(door),
            "--source",
            str(video),
            "--config",
            str(config),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert door_service["key"] not in done.stdout + done.stderr
    assert f"door {door}: granted Barack Obama" in done.stdout, done.stdout
    assert "50 frames read, 1 bursts (6 frames) sent, 1 answers" in done.stdout, done.stdout
    assert time.monotonic() - started < 60

    events = httpx.get(f"{svc.url}/v1/events", headers=bearer(door_service["auditor"]), timeout=30).json()
    mine = [e for e in events["items"] if e["door_id"] == door]
    assert len(mine) == 1 and mine[0]["decision"] == "granted", mine
    assert mine[0]["person_id"] == door_service["person"] and mine[0]["frames"] == 6
    relayed = json.loads(command_out.read_text())
    assert relayed["decision"] == "granted" and relayed["event_id"] == mine[0]["id"]

    if subscriber is None:
        pytest.skip("no MQTT broker on 127.0.0.1:1883: the MQTT output is untested")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len({t for t, _ in subscriber.messages}) < 2:
        time.sleep(0.1)
    subscriber.stop()
    got = {t: p for t, p in subscriber.messages if p.get("event_id") == mine[0]["id"]}
    assert set(got) == {f"facegate/doors/{door}/unlock", "facegate/events"}, subscriber.messages
    assert got["facegate/events"]["person"] == {"id": door_service["person"], "name": "Barack Obama"}
