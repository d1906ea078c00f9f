"""Real captures through HTTP at a door that requires liveness, with the operator's PAD model imported:
a live NUAA run is let in as its person, a print of that person and a phone-screen replay are denied
``spoof``. Needs ../shared/faces/liveness and ../shared/models/silent_face (skipped without them)."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from app.vision.manifest import MANIFEST_NAME
from models.import_pad import import_pad
from tests.conftest import REPO, shared_faces
from tests.http_server import ServiceProcess, bearer

pytestmark = [pytest.mark.shared, pytest.mark.slow]

SILENT_FACE = REPO.parent / "shared" / "models" / "silent_face"
NUAA_FPS = 20.0  # PROVENANCE.md: NUAA picture numbers count frames of a 20 fps capture
PERSON = "nuaa-0003"
ENROL_RUN = "nuaa-0003-live-s01-p00-g01-r4"
LIVE_RUN = "nuaa-0003-live-s01-p00-g01-r1"
PRINT_RUN = "nuaa-0003-print-s01-p00-g01-r1"
REPLAY = "videos/zubaircrackscode_fake_phone_screen.webm"


def _runs() -> dict[str, list[tuple[int, Path]]]:
    folder = shared_faces() / "liveness"
    if not (folder / "manifest.csv").is_file():
        pytest.skip(f"{folder} is absent")
    runs: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    with (folder / "manifest.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["frame_index"]:
                runs[row["sequence"]].append((int(row["frame_index"]), folder / row["path"]))
    return {name: sorted(frames) for name, frames in runs.items()}


@pytest.fixture(scope="module")
def pad_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test models with the operator's MiniFASNet pair imported, in a folder of their own."""
    if not SILENT_FACE.is_dir():
        pytest.skip(f"{SILENT_FACE} is absent")
    folder = tmp_path_factory.mktemp("pad-models")
    for path in model_dir.iterdir():
        if path.is_file() and path.name != MANIFEST_NAME:
            (folder / path.name).hardlink_to(path)  # read-only artifacts: no copy needed
    shutil.copyfile(model_dir / MANIFEST_NAME, folder / MANIFEST_NAME)
    import_pad([SILENT_FACE], folder)
    return folder


@pytest.fixture(scope="module")
def door(pad_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    svc = ServiceProcess(tmp_path_factory.mktemp("liveness-door"), pad_model_dir)
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
        door = c.post("/v1/doors", json={"name": "Lab"}).json()
        assert door["liveness_required"] is True and door["liveness_undetermined"] == "deny"
        spec = {"role": "door", "name": "lab-cam", "door_id": door["id"]}
        key = c.post("/v1/keys", json=spec).json()["key"]
        pid = c.post("/v1/people", json={"name": PERSON}).json()["id"]
        enrol = _runs()[ENROL_RUN][7][1]
        r = c.post(f"/v1/people/{pid}/faces", files={"image": (enrol.name, enrol.read_bytes(), "image/jpeg")})
        assert r.status_code == 201, r.text
        yield {"svc": svc, "door": door["id"], "key": key, "person": pid}


def _post(door: dict[str, Any], jpegs: list[bytes], times: list[float]) -> dict[str, Any]:
    r = httpx.post(
        f"{door['svc'].url}/v1/doors/{door['door']}/frames",
        files=[("frames", (f"f{k}.jpg", f, "image/jpeg")) for k, f in enumerate(jpegs)],
        data={"timestamps": [f"{t - times[0]:.4f}" for t in times]},
        headers=bearer(door["key"]),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _nuaa_burst(run: str, start: int, length: int = 8) -> tuple[list[bytes], list[float]]:
    frames = _runs()[run][start : start + length]
    return [p.read_bytes() for _, p in frames], [n / NUAA_FPS for n, _ in frames]


def test_a_live_nuaa_run_is_let_in_as_its_person(door: dict[str, Any]) -> None:
    for start in (0, 7):
        body = _post(door, *_nuaa_burst(LIVE_RUN, start))
        assert (body["decision"], body["reason"]) == ("granted", "match"), body
        assert body["person"]["id"] == door["person"]
        liveness = body["liveness"]
        assert liveness["outcome"] == "live" and liveness["required"] is True
        assert liveness["cues"]["pad_p_real"] > 0.5  # the PAD model took part


def test_a_print_of_that_person_is_denied_as_a_spoof(door: dict[str, Any]) -> None:
    for start in (0, 7):
        body = _post(door, *_nuaa_burst(PRINT_RUN, start))
        assert (body["decision"], body["reason"], body["person"]) == ("denied", "spoof", None), body
        assert body["liveness"]["outcome"] == "spoof" and "pad_logit" in body["liveness"]["drivers"]


def test_a_phone_screen_replay_is_denied_as_a_spoof(door: dict[str, Any]) -> None:
    """The replay after its presenter left the view (PROVENANCE.md: his own face shows for ~2 s)."""
    video = shared_faces() / "liveness" / REPLAY
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    capture = cv2.VideoCapture(str(video))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    step = max(1, round(fps / 5.0))  # a door camera's ~5 fps
    jpegs: list[bytes] = []
    times: list[float] = []
    index = 0
    while len(jpegs) < 8:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0 and index / fps >= 2.4:
            jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
            times.append(index / fps)
        index += 1
    capture.release()
    assert len(jpegs) == 8
    body = _post(door, jpegs, times)
    assert (body["decision"], body["reason"]) == ("denied", "spoof"), body
    assert body["liveness"]["outcome"] == "spoof" and body["liveness"]["cues"]["pad_p_real"] < 0.1
