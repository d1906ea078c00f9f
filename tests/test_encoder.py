"""The ONNX encoder against dlib's compute_face_descriptor on the same chips."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dlib
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray

from app.vision.encoder import FaceEncoder
from app.vision.manifest import Manifest, ModelArtifactError
from app.vision.runtime import create_session
from models.convert_encoder import build_encoder_graph
from models.dlib_dnn import read_dnn

ENCODER_DAT = "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def encoder(model_dir: Path, manifest: Manifest) -> FaceEncoder:
    session = create_session(model_dir / manifest.entry("encoder").file, providers=("CPUExecutionProvider",))
    return FaceEncoder(session, manifest.details("encoder"), max_batch=4)


@pytest.fixture(scope="module")
def dlib_encoder(dlib_source: Path) -> Any:
    return dlib.face_recognition_model_v1(str(dlib_source / ENCODER_DAT))


def test_file_is_consumed_and_has_the_known_architecture(dlib_source: Path) -> None:
    dnn = read_dnn(dlib_source / ENCODER_DAT)  # raises unless every byte is read
    counts = Counter(dnn.tags())
    assert counts == {
        "con_4": 29,
        "affine_": 29,
        "relu_": 29,
        "add_prev_": 14,
        "avg_pool_2": 5,
        "max_pool_2": 1,
        "fc_2": 1,
    }
    assert dnn.loss["tag"] == "loss_metric_2"
    assert dnn.loss["distance_threshold"] == pytest.approx(0.6)
    model = build_encoder_graph(dnn)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["Conv"] == 29 and ops["Add"] == 14 and ops["MatMul"] == 1
    onnx.checker.check_model(model, full_check=True)


def test_manifest_entry_describes_the_graph(manifest: Manifest) -> None:
    d = manifest.details("encoder")
    assert (
        d["input"]["layout"] == "NHWC" and d["input"]["color"] == "RGB" and d["input"]["size"] == [150, 150]
    )
    assert d["output"]["size"] == 128
    assert d["default_tau"] == 0.6
    assert manifest.entry("encoder").version.startswith("dlib-resnet-v1:")


def _dlib_descriptor(dlib_encoder: Any, chip: NDArray[np.uint8]) -> NDArray[np.float64]:
    # A 150x150 chip given to compute_face_descriptor without a shape is encoded as is.
    return np.array(dlib_encoder.compute_face_descriptor(np.ascontiguousarray(chip)))


def test_equals_dlib_on_real_and_generated_chips(
    encoder: FaceEncoder, dlib_encoder: Any, astronaut: NDArray[np.uint8], dlib_source: Path
) -> None:
    det = dlib.cnn_face_detection_model_v1(str(dlib_source / "mmod_human_face_detector.dat"))(astronaut, 0)
    sp = dlib.shape_predictor(str(dlib_source / "shape_predictor_5_face_landmarks.dat"))
    face_chip = np.asarray(dlib.get_face_chip(astronaut, sp(astronaut, det[0].rect), size=150, padding=0.25))
    rng = np.random.default_rng(7)
    chips = np.stack(
        [
            face_chip,
            np.ascontiguousarray(face_chip[:, ::-1]),
            rng.integers(0, 256, (150, 150, 3), dtype=np.uint8),
            np.zeros((150, 150, 3), np.uint8),
            np.full((150, 150, 3), 255, np.uint8),
        ]
    )
    ours = encoder.encode(chips)
    assert ours.shape == (5, 128) and ours.dtype == np.float32
    for chip, emb in zip(chips, ours, strict=True):
        ref = _dlib_descriptor(dlib_encoder, chip)
        assert np.linalg.norm(ref - emb) < 1e-5


def test_batching_does_not_change_results(encoder: FaceEncoder) -> None:
    rng = np.random.default_rng(3)
    chips = rng.integers(0, 256, (9, 150, 150, 3), dtype=np.uint8)  # 9 > max_batch 4: three runs
    together = encoder.encode(chips)
    alone = np.concatenate([encoder.encode(chips[i : i + 1]) for i in range(9)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert encoder.encode(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_rejects_wrong_chip_shape(encoder: FaceEncoder) -> None:
    with pytest.raises(ValueError, match="uint8 chips"):
        encoder.encode(np.zeros((1, 160, 160, 3), np.uint8))


def test_refuses_a_session_that_disagrees_with_the_manifest(manifest: Manifest) -> None:
    fake_input = SimpleNamespace(name="input", type="tensor(float)", shape=["batch", 3, 150, 150])
    fake_output = SimpleNamespace(name="embedding", shape=["batch", 128])
    session = SimpleNamespace(get_inputs=lambda: [fake_input], get_outputs=lambda: [fake_output], run=None)
    with pytest.raises(ModelArtifactError, match="models build --force"):
        FaceEncoder(session, manifest.details("encoder"))  # type: ignore[arg-type]
