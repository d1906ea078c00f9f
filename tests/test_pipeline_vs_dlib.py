"""The whole pipeline (detect, landmarks, align, encode) equals dlib's on real photos.

dlib's reference is cnn_face_detection_model_v1 + shape_predictor + compute_face_descriptor,
run with the same upsampling rule the service uses (once below 600 px on the longer side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.pipeline import FacePipeline
from tests.conftest import REPO, shared_faces
from tests.dlib_oracle import dlib_faces, iou, lfw_sample


def _load_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def assert_same_as_dlib(pipeline: FacePipeline, dlib_source: Path, rgb: NDArray[np.uint8]) -> int:
    upsample = pipeline.upsample_for(rgb.shape)
    ours = pipeline.faces_rgb(rgb)
    ref = dlib_faces(dlib_source, rgb, upsample)
    assert len(ours) == len(ref), f"{len(ours)} faces, dlib found {len(ref)}"
    for face, want in zip(ours, ref, strict=True):
        assert iou(face.box, want.box) >= 0.99, (face.box, want.box)
        assert abs(face.score - want.score) < 1e-3
        assert np.abs(face.landmarks - want.landmarks).max() <= 1.0
        assert np.linalg.norm(face.embedding - want.embedding) < 1e-3
    return len(ours)


def test_astronaut_equals_dlib(
    pipeline: FacePipeline, dlib_source: Path, astronaut: NDArray[np.uint8]
) -> None:
    assert assert_same_as_dlib(pipeline, dlib_source, astronaut) == 1


def test_astronaut_upscaled_large_face_equals_dlib(
    pipeline: FacePipeline, dlib_source: Path, astronaut: NDArray[np.uint8]
) -> None:
    # A close-up face ~500 px wide: the chip is cut through dlib's pyramid path.
    big = np.ascontiguousarray(cv2.resize(astronaut, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_LINEAR))
    assert assert_same_as_dlib(pipeline, dlib_source, big) == 1


def test_no_face_in_a_blank_image(pipeline: FacePipeline) -> None:
    assert pipeline.faces(np.full((480, 640, 3), 90, np.uint8)) == []


def test_upsampling_rule(pipeline: FacePipeline) -> None:
    assert pipeline.upsample_for((250, 250, 3)) == 1
    assert pipeline.upsample_for((480, 599, 3)) == 1
    assert pipeline.upsample_for((480, 640, 3)) == 0
    assert pipeline.upsample_for((1080, 1920, 3)) == 0


def _example_images() -> list[Path]:
    base = shared_faces() / "examples"
    return sorted(p for p in (base / "images").glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


@pytest.mark.shared
def test_example_photos_equal_dlib(pipeline: FacePipeline, dlib_source: Path) -> None:
    images = _example_images()
    assert len(images) >= 15
    found = 0
    for path in images:
        found += assert_same_as_dlib(pipeline, dlib_source, _load_rgb(path))
    assert found >= len(images)


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "min_faces"),
    [
        ("multi_face_scenes/examples__two_people.jpg", 2),
        ("multi_face_scenes/examples__knn_examples__test__obama_and_biden.jpg", 2),
        ("multi_face_scenes/examples__knn_examples__test__kit_with_rose.jpg", 2),
        ("multi_face_scenes/tests__test_images__32bit.png", 1),
        ("derived_variants_of_obama_portrait/examples__obama-1080p.jpg", 1),
        ("derived_variants_of_obama_portrait/examples__obama-240p.jpg", 1),
        ("derived_variants_of_obama_portrait/examples__obama_small.jpg", 1),
    ],
)
def test_scenes_and_sizes_equal_dlib(
    pipeline: FacePipeline, dlib_source: Path, name: str, min_faces: int
) -> None:
    rgb = _load_rgb(shared_faces() / "examples" / name)
    assert assert_same_as_dlib(pipeline, dlib_source, rgb) >= min_faces


@pytest.mark.shared
def test_lfw_images_equal_dlib(pipeline: FacePipeline, dlib_source: Path) -> None:
    images = lfw_sample(shared_faces() / "lfw-dev" / "images")
    assert len(images) == 20
    for path in images:
        assert_same_as_dlib(pipeline, dlib_source, _load_rgb(path))


def _embed(model_dir: Path, *files: Path, profile: str = "dlib") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEGATE_MODEL_DIR": str(model_dir), "FACEGATE_ONNX_INTRA_OP_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "embed", "--json", "--profile", profile, *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_embed_cli_prints_the_design_contract(
    model_dir: Path, dlib_source: Path, astronaut: NDArray[np.uint8], tmp_path: Path
) -> None:
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    proc = _embed(model_dir, photo, junk)
    assert proc.returncode == 1, proc.stderr  # one file failed
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2
    record = lines[0]
    assert set(record) == {"file", "faces"} and record["file"] == str(photo)
    [face] = record["faces"]
    assert set(face) == {"box", "score", "landmarks", "embedding"}
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    assert len(face["embedding"]) == 128
    [want] = dlib_faces(dlib_source, astronaut, upsample=1)  # 512 px < 600: upsampled once
    assert tuple(face["box"]) == want.box
    assert face["landmarks"] == want.landmarks.astype(int).tolist()
    assert np.linalg.norm(np.array(face["embedding"]) - want.embedding) < 1e-3
    assert lines[1] == {
        "file": str(junk),
        "error": {
            "code": "not_an_image",
            "message": "the file is not a readable JPEG, PNG, BMP, WebP or TIFF image",
        },
    }
    assert "notes.txt" in proc.stderr


def test_embed_cli_default_profile_is_the_services(
    model_dir: Path, settings: Settings, astronaut: NDArray[np.uint8], tmp_path: Path
) -> None:
    """Without --profile, embed gives what the service stores: the fusion's 256-d templates (a unit
    SFace vector scaled by sqrt(0.756), then dlib's scaled by sqrt(0.92)) and YuNet's points."""
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    env = {**os.environ, "FACEGATE_MODEL_DIR": str(model_dir), "FACEGATE_ONNX_INTRA_OP_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "embed", "--json", str(photo)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [face] = json.loads(proc.stdout)["faces"]
    assert set(face) == {"box", "score", "landmarks", "points", "embedding"}
    embedding = np.array(face["embedding"])
    assert embedding.shape == (256,) and abs(np.linalg.norm(embedding[:128]) ** 2 - 0.756) < 1e-5
    fusion = FacePipeline.load(settings, profile="fusion")
    [want] = fusion.faces(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    assert np.abs(embedding - want.embedding).max() < 1e-5
    assert face["points"] == [[float(x), float(y)] for x, y in want.points]  # type: ignore[union-attr]


def test_flip_average_mode_encodes_chip_and_mirror(
    settings: Settings, pipeline: FacePipeline, astronaut: NDArray[np.uint8]
) -> None:
    flipped = FacePipeline.load(settings, flip_average=True)
    try:
        [plain] = pipeline.faces_rgb(astronaut)
        [face] = flipped.faces_rgb(astronaut)
        assert face.box == plain.box
        mirror = pipeline.encoder.encode(np.ascontiguousarray(plain.chip[None, :, ::-1]))[0]
        np.testing.assert_allclose(face.embedding, (plain.embedding + mirror) / 2, atol=1e-6)
        assert 0 < np.linalg.norm(face.embedding - plain.embedding) < 0.2
        assert flipped.model_version == pipeline.model_version + "+flipavg"
    finally:
        flipped.close()
