"""`facegate models import-pad`: accept the operator's MiniFASNet ONNX pair as the PAD model.

No package registry carries these files, so the operator supplies them. Only the two known
files are accepted (by sha256, whatever they are called), copied into the model folder under
their upstream names, and recorded as one manifest entry ``pad``. The rest of manifest.json is
left as it is: only ``models.pad`` is written, so this works whatever else the manifest holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from app.vision.manifest import MANIFEST_NAME, Manifest, ModelArtifactError, load_manifest, sha256_file
from app.vision.pad import DEFAULT_BOX_SCALE, MANIFEST_KEY

log = logging.getLogger(__name__)

SOURCE = (
    "operator-supplied: Minivision Silent-Face-Anti-Spoofing MiniFASNet weights "
    "(github.com/minivision-ai/Silent-Face-Anti-Spoofing@b6d5f04a), converted to ONNX by yakhyo "
    "(github.com/yakhyo/face-anti-spoofing, tag weights = c175efef)"
)
VERSION_PREFIX = "minifasnet-v2+v1se"
PAD_ENTRY = MANIFEST_KEY  # the manifest's models key: "pad"


@dataclass(frozen=True)
class KnownPadFile:
    sha256: str
    scale: float  # crop scale around the face box
    model: str  # upstream network name
    original: str  # path in yakhyo/face-anti-spoofing@c175efef
    size: int  # bytes


# File name here (upstream naming: <scale>_<h>x<w>_<model>) -> what the file must be.
KNOWN_PAD_MODELS: dict[str, KnownPadFile] = {
    "2.7_80x80_MiniFASNetV2.onnx": KnownPadFile(
        "4eed38f0bde33c9b805942a5f25e42ce1161e2bda545254be622be957727794e",
        2.7,
        "MiniFASNetV2",
        "weights/MiniFASNetV2.onnx",
        1_743_561,
    ),
    "4_0_0_80x80_MiniFASNetV1SE.onnx": KnownPadFile(
        "d819a69bac6b9ade2a0f4d9b60b618e1260f7bf3ba1fddff6c5d82131cb1083f",
        4.0,
        "MiniFASNetV1SE",
        "weights/MiniFASNetV1SE.onnx",
        1_742_315,
    ),
}
PRIMARY = "2.7_80x80_MiniFASNetV2.onnx"  # the entry's `file`, the one load_manifest verifies
# Apache-2.0 notices that travel with the weights when they sit beside them: name there ->
# (name in the model folder, sha256).
KNOWN_NOTICES: dict[str, tuple[str, str]] = {
    "LICENSE": (
        "minifasnet-LICENSE.yakhyo.txt",
        "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
    ),
    "LICENSE.upstream-minivision.txt": (
        "minifasnet-LICENSE.minivision.txt",
        "daf94bf1dc9cc5700fe5af2c7c0cbd1836e70d509ed78fd0bebef7432edee6fb",
    ),
}
INPUT = {"name": "input", "shape": [1, 3, 80, 80], "layout": "NCHW", "channels": "BGR", "values": "raw 0-255"}
OUTPUT = {"name": "output", "shape": [1, 3], "values": "logits (softmax applied at run time)"}


class PadImportError(RuntimeError):
    """A file offered as the PAD model is not one of the known MiniFASNet files."""


def _expected() -> str:
    return "; ".join(f"{name} sha256 {k.sha256}" for name, k in KNOWN_PAD_MODELS.items())


def _graph_io(
    model: onnx.ModelProto,
) -> tuple[list[tuple[str, list[int | str]]], list[tuple[str, list[int | str]]]]:
    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return [(v.name, dims(v)) for v in model.graph.input], [(v.name, dims(v)) for v in model.graph.output]


def identify(path: Path) -> str:
    """The known file name that ``path``'s bytes are; PadImportError for anything else."""
    if not path.is_file():
        raise PadImportError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError) as exc:
        raise PadImportError(
            f"{path}: not a valid ONNX model ({len(data)} bytes; truncated or another format): {exc}"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    name = next((n for n, known in KNOWN_PAD_MODELS.items() if known.sha256 == digest), None)
    if name is None:
        raise PadImportError(
            f"{path}: sha256 {digest} is not a known MiniFASNet PAD model; expected one of: {_expected()}"
        )
    inputs, outputs = _graph_io(model)
    if inputs != [(INPUT["name"], INPUT["shape"])] or outputs != [(OUTPUT["name"], OUTPUT["shape"])]:
        raise PadImportError(
            f"{path}: graph input/output {inputs} -> {outputs} differ from {INPUT} -> {OUTPUT}"
        )
    return name


def _copy_atomic(src: Path, model_dir: Path, name: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=model_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(src.read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, model_dir / name)
    finally:
        tmp.unlink(missing_ok=True)


def _read_raw(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelArtifactError(f"{path}: no model manifest; run `facegate models build` before import-pad")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelArtifactError(f"{path}: unreadable manifest; run `facegate models build --force`") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ModelArtifactError(f"{path}: manifest has no models; run `facegate models build --force`")
    return raw


def _write_raw(model_dir: Path, raw: dict[str, Any]) -> None:
    tmp = model_dir / f".{MANIFEST_NAME}.pad.tmp"
    tmp.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, model_dir / MANIFEST_NAME)


def _expand(files: Sequence[Path]) -> list[Path]:
    """Folders stand for the .onnx files in them (the operator's model folder)."""
    out: list[Path] = []
    for path in files:
        out.extend(sorted(path.glob("*.onnx")) if path.is_dir() else [path])
    return out


def pad_entry(notices: Sequence[str]) -> dict[str, Any]:
    """The manifest entry for the pair (files copied under their known names)."""
    files = []
    for name, known in KNOWN_PAD_MODELS.items():
        files.append(
            {
                "file": name,
                "sha256": known.sha256,
                "scale": known.scale,
                "model": known.model,
                "original": known.original,
                "input": INPUT,
                "output": OUTPUT,
            }
        )
    combined = hashlib.sha256("".join(k.sha256 for k in KNOWN_PAD_MODELS.values()).encode()).hexdigest()
    return {
        "file": PRIMARY,
        "sha256": KNOWN_PAD_MODELS[PRIMARY].sha256,
        "kind": "onnx",
        "version": f"{VERSION_PREFIX}:{combined[:12]}",
        "files": files,
        "real_index": 1,
        "crop": "upstream CropImage._get_new_box: box scaled, shifted inside the image, never padded; "
        "cv2.resize bilinear",
        # Our box -> upstream's RetinaFace-like box, per manifest detector (app/vision/pad.py).
        "box_scale": {name: list(pair) for name, pair in DEFAULT_BOX_SCALE.items()},
        "fusion": "mean",
        "source": SOURCE,
        "licence": "Apache-2.0",
        "notices": list(notices),
    }


def import_pad(files: Sequence[Path], model_dir: Path) -> Manifest:
    """Check, copy and record the MiniFASNet pair; the verified manifest."""
    found: dict[str, Path] = {}
    for path in _expand(files):
        found.setdefault(identify(path), path)
    missing = [name for name in KNOWN_PAD_MODELS if name not in found]
    if missing:
        raise PadImportError(
            f"the PAD model is the pair of MiniFASNet files; missing {missing} (expected: {_expected()})"
        )
    raw = _read_raw(model_dir)
    for name, src in found.items():
        _copy_atomic(src, model_dir, name)
        log.info("imported %s as %s", src, model_dir / name)
    notices = []
    for src_dir in sorted({p.parent for p in found.values()}):
        for notice, (target, digest) in KNOWN_NOTICES.items():
            path = src_dir / notice
            if path.is_file() and sha256_file(path) == digest and target not in notices:
                _copy_atomic(path, model_dir, target)
                notices.append(target)
    raw["models"][PAD_ENTRY] = pad_entry(notices)
    _write_raw(model_dir, raw)
    return load_manifest(model_dir)


def existing_pad_entry(model_dir: Path) -> dict[str, Any] | None:
    """The ``pad`` entry of the manifest in ``model_dir`` when all its files still verify.

    ``facegate models build`` rewrites the manifest; it keeps this entry so a rebuild does not
    silently drop the operator's import.
    """
    path = model_dir / MANIFEST_NAME
    try:
        entry = json.loads(path.read_text())["models"][PAD_ENTRY]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None
    if not isinstance(entry, dict):
        return None
    specs = [entry, *entry.get("files", [])]
    for spec in specs:
        file = model_dir / str(spec.get("file"))
        if not file.is_file() or sha256_file(file) != spec.get("sha256"):
            log.warning("dropping the PAD model entry: %s is missing or changed; import it again", file)
            return None
    return entry
