"""Shared fixtures: real model artifacts (built once, cached under var/), dlib oracle, data paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO.parent / "shared" / "faces"
# Built artifacts are cached between runs; `models build` is idempotent and re-verifies them.
TEST_MODEL_DIR = Path(os.environ.get("FACEGATE_TEST_MODEL_DIR", REPO / "var" / "test-models"))


def shared_faces() -> Path:
    """../shared/faces, or skip the calling test when this checkout has no shared data beside it."""
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/faces is absent")
    return SHARED_FACES


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from models.build import build_models

    build_models(TEST_MODEL_DIR)
    return TEST_MODEL_DIR


@pytest.fixture(scope="session")
def manifest(model_dir: Path) -> Manifest:
    from app.vision.manifest import load_manifest

    return load_manifest(model_dir)


@pytest.fixture(scope="session")
def settings(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        model_dir=model_dir,
        onnx_providers=("CPUExecutionProvider",),
        onnx_intra_op_threads=2,
        profile="dlib",  # the equivalence tests compare with dlib itself
        encode_flip_average=False,  # the dlib-equivalence tests need dlib's plain encodings
    )


@pytest.fixture(scope="session")
def pipeline(settings: Settings):  # type: ignore[no-untyped-def]
    from app.vision.pipeline import FacePipeline

    return FacePipeline.load(settings)


@pytest.fixture(scope="session")
def dlib_source() -> Path:
    from models.source import source_dir

    return source_dir()


@pytest.fixture(scope="session")
def astronaut() -> NDArray[np.uint8]:
    """skimage's astronaut (Eileen Collins, NASA, public domain): a real face that ships on PyPI."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
