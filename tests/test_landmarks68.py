"""The operator's 68-point option: built on request, equal to dlib, blink recorded in liveness.

dlib's 68-point model was trained on iBUG 300-W, whose terms exclude commercial use: it is off
by default (FACEGATE_LIVENESS_LANDMARKS68) and built only on request.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import dlib
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.liveness import blink_cues
from app.vision.liveness_types import TrackedFace
from app.vision.manifest import MANIFEST_NAME, ModelArtifactError, load_manifest
from app.vision.pipeline import FacePipeline
from models.build import build_models
from models.source import source_dir
from tests.http_server import ServiceProcess, bearer


@pytest.fixture(scope="module")
def models68(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's artifacts plus the 68-point model, added without rebuilding the rest."""
    target = tmp_path_factory.mktemp("models68") / "models"
    shutil.copytree(model_dir, target)
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir() if p.name != MANIFEST_NAME}
    build_models(target, landmarks68=True)
    after = {p.name: p.stat().st_mtime_ns for p in target.iterdir() if p.name in stamps}
    assert after == stamps  # only the new artifact (and the manifest) were written
    return target


@pytest.fixture(scope="module")
def pipeline68(models68: Path, tmp_path_factory: pytest.TempPathFactory) -> FacePipeline:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data68"),
        model_dir=models68,
        onnx_providers=("CPUExecutionProvider",),
        onnx_intra_op_threads=2,
        liveness_landmarks68=True,
    )
    return FacePipeline.load(settings)


def test_the_68_point_model_is_an_optional_verified_artifact(models68: Path, model_dir: Path) -> None:
    data = json.loads((models68 / MANIFEST_NAME).read_text())
    entry = data["models"]["landmarks68"]
    assert entry["version"].startswith("dlib-sp68-v1:") and entry["num_parts"] == 68
    assert entry["source_file"] == "shape_predictor_68_face_landmarks.dat"
    assert "iBUG 300-W" in entry["part_order"]
    assert "landmarks68" not in json.loads((model_dir / MANIFEST_NAME).read_text())["models"]
    # A later plain build keeps it; a damaged one is caught like any other artifact.
    build_models(models68)
    assert "landmarks68" in load_manifest(models68).models


def test_the_option_without_the_artifact_names_the_command(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_dir=model_dir, liveness_landmarks68=True)
    with pytest.raises(ModelArtifactError, match="facegate models build --landmarks68"):
        FacePipeline.load(settings)


def test_68_points_equal_dlibs_on_detected_faces(
    pipeline68: FacePipeline, astronaut: NDArray[np.uint8]
) -> None:
    predictor = dlib.shape_predictor(str(source_dir() / "shape_predictor_68_face_landmarks.dat"))
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    for scale in (1.0, 0.6):
        image = np.ascontiguousarray(cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        (face,) = pipeline68.faces(image)
        assert face.landmarks68 is not None and face.landmarks68.shape == (68, 2)
        shape = predictor(np.ascontiguousarray(image[:, :, ::-1]), dlib.rectangle(*face.box))
        expected = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        np.testing.assert_array_equal(face.landmarks68, expected)


def _eyes(openness: float) -> NDArray[np.float64]:
    """68 points whose eyes have aspect ratio ``openness`` (the rest is irrelevant to the cue)."""
    pts = np.zeros((68, 2))
    for start, x0 in ((36, 0.0), (42, 60.0)):
        half = 15.0 * openness
        pts[start : start + 6] = [
            [x0, 0],
            [x0 + 10, -half],
            [x0 + 20, -half],
            [x0 + 30, 0],
            [x0 + 20, half],
            [x0 + 10, half],
        ]
    return pts


def test_blink_cues_need_68_points_in_every_frame() -> None:
    frame = np.zeros((8, 8, 3), dtype=np.uint8)

    def track(levels: list[float | None]) -> list[TrackedFace]:
        return [
            TrackedFace(0.1 * k, (0, 0, 9, 9), np.zeros((5, 2)), frame, None if v is None else _eyes(v))
            for k, v in enumerate(levels)
        ]

    cues = blink_cues(track([0.3, 0.3, 0.05, 0.3, 0.3]))
    assert cues["eye_aspect_ratio_open"] == pytest.approx(0.3)
    assert cues["blink_depth"] == pytest.approx(1 - 0.05 / 0.3)
    assert blink_cues(track([0.3, 0.3, 0.3, 0.3]))["blink_depth"] == 0.0
    assert blink_cues(track([0.3, None, 0.3])) == {}


@pytest.fixture(scope="module")
def service68(
    models68: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    svc = ServiceProcess(tmp_path_factory.mktemp("svc68"), models68, FACEGATE_LIVENESS_LANDMARKS68="true")
    assert svc.cli("db", "upgrade").returncode == 0
    admin = svc.cli("keys", "create", "--role", "admin", "--name", "ops").stdout.strip().splitlines()[-1]
    with svc:
        yield svc, admin


def test_the_service_records_the_blink_cue_when_enabled(
    service68: tuple[ServiceProcess, str], astronaut: NDArray[np.uint8]
) -> None:
    svc, admin = service68
    c = httpx.Client(base_url=svc.url, timeout=120, headers=bearer(admin))
    door = c.post("/v1/doors", json={"name": "Lab"}).json()["id"]
    door_key = c.post("/v1/keys", json={"role": "door", "name": "cam", "door_id": door}).json()["key"]
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    frames: list[Any] = []
    for dx in range(0, 25, 5):  # the camera drifts a little: five different frames
        shifted = np.ascontiguousarray(np.roll(bgr, dx, axis=1))
        frames.append(("frames", (f"f{dx}.jpg", cv2.imencode(".jpg", shifted)[1].tobytes(), "image/jpeg")))
    r = httpx.post(f"{svc.url}/v1/doors/{door}/frames", files=frames, headers=bearer(door_key), timeout=120)
    assert r.status_code == 200, r.text
    cues = r.json()["liveness"]["cues"]
    assert 0.0 <= cues["blink_depth"] <= 1.0 and cues["eye_aspect_ratio_open"] > 0.1


def test_a_read_only_model_folder_is_a_clear_error(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's model folder is read-only: turning the option on there must say what to do."""
    import models.build
    from app.cli import ensure_models

    def read_only(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(models.build, "build_models", read_only)
    settings = Settings(data_dir=tmp_path, model_dir=model_dir, liveness_landmarks68=True)
    with pytest.raises(ModelArtifactError, match=r"Permission denied.*facegate models build.*--landmarks68"):
        ensure_models(settings)
