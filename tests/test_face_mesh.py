"""MediaPipe's face mesh: our ONNX conversion equals the TFLite interpreter, and the ROI and
back-projection put the 468 points on the face in image pixels.

The mediapipe wheel is fetched with pip into var/cache/wheels (once; re-checked by sha256); the
tests skip when no package index is reachable. The reference interpreter is ai-edge-litert.
"""

from __future__ import annotations

import csv
import hashlib
import math
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision.face_mesh import FaceMesh, MeshRoi, roi_from_box, roi_from_mesh
from app.vision.manifest import ModelArtifactError
from app.vision.runtime import create_session
from models.convert_face_mesh import (
    FACE_LANDMARK_MEMBER,
    MEDIAPIPE_WHEEL,
    MEDIAPIPE_WHEEL_SHA256,
    WheelDownloadError,
    convert_face_mesh,
    fetch_mediapipe_wheel,
    read_face_landmark_tflite,
    read_tflite,
)
from tests.conftest import REPO, SHARED_FACES

WHEEL_CACHE = REPO / "var" / "cache" / "wheels"
# Measured: max 2.0e-4 crop pixels and 1.7e-5 in the logit over 14 crops (float32 summation order).
POINT_TOL_PX = 2e-3
LOGIT_TOL = 1e-3

Face = tuple[tuple[int, int, int, int], NDArray[np.float64]]


@pytest.fixture(scope="session")
def mediapipe_wheel() -> Path:
    try:
        return fetch_mediapipe_wheel(WHEEL_CACHE)
    except WheelDownloadError as exc:
        pytest.skip(f"cannot fetch the mediapipe wheel from the package index: {exc}")


@pytest.fixture(scope="session")
def tflite_bytes(mediapipe_wheel: Path) -> bytes:
    return read_face_landmark_tflite(mediapipe_wheel)


@pytest.fixture(scope="session")
def mesh_onnx(tflite_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    dst = tmp_path_factory.mktemp("face_mesh") / "face_mesh.onnx"
    return dst, convert_face_mesh(tflite_bytes, dst)


@pytest.fixture(scope="session")
def mesh(mesh_onnx: tuple[Path, dict[str, Any]]) -> FaceMesh:
    path, details = mesh_onnx
    session = create_session(path, providers=("CPUExecutionProvider",), intra_op_threads=2)
    return FaceMesh(session, details)


@pytest.fixture(scope="session")
def interpreter(tflite_bytes: bytes) -> Any:
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (dev extra) is absent")
    it = litert.Interpreter(model_content=tflite_bytes)
    it.allocate_tensors()
    return it


def tflite_run(it: Any, patch: NDArray[np.uint8]) -> tuple[NDArray[np.float32], float]:
    """MediaPipe's own feed: RGB in [0, 1]."""
    it.set_tensor(it.get_input_details()[0]["index"], (patch.astype(np.float32) / 255.0)[None])
    it.invoke()
    outs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    return outs["conv2d_21"].reshape(468, 3), float(outs["conv2d_31"].ravel()[0])


@pytest.fixture(scope="session")
def dlib_face_finder(dlib_source: Path) -> Any:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_source / "shape_predictor_5_face_landmarks.dat"))

    def find(rgb: NDArray[np.uint8]) -> Face | None:
        rects = detector(rgb, 1)
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width())
        shape = predictor(rgb, r)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
        return (r.left(), r.top(), r.right(), r.bottom()), pts

    return find


def eyes_of(points5: NDArray[np.float64]) -> NDArray[np.float64]:
    """dlib's 5 points: 0-1 the eye on the image's right, 2-3 the one on its left."""
    return np.array([points5[2:4].mean(axis=0), points5[0:2].mean(axis=0)])


def real_photos(astronaut: NDArray[np.uint8]) -> list[tuple[str, NDArray[np.uint8]]]:
    photos = [("astronaut", astronaut)]
    labels = SHARED_FACES / "examples" / "labels.csv"
    if labels.is_file():
        seen: set[str] = set()
        with labels.open() as fh:
            for row in csv.DictReader(fh):
                if row["identity"] in seen:
                    continue
                seen.add(row["identity"])
                bgr = cv2.imread(str(SHARED_FACES / "examples" / row["file"]), cv2.IMREAD_COLOR)
                if bgr is not None:
                    photos.append((row["file"], np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
    return photos


def test_reader_sees_what_the_interpreter_sees(tflite_bytes: bytes, interpreter: Any) -> None:
    graph = read_tflite(tflite_bytes)
    details = sorted(interpreter.get_tensor_details(), key=lambda d: d["index"])
    assert [t.name for t in graph.tensors] == [d["name"] for d in details]
    assert [t.shape for t in graph.tensors] == [tuple(int(v) for v in d["shape"]) for d in details]
    assert [np.dtype(t.dtype) for t in graph.tensors] == [np.dtype(d["dtype"]) for d in details]
    assert {op.name for op in graph.operators} == {
        "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD",
    }  # fmt: skip


def test_onnx_equals_tflite_on_real_crops(
    mesh: FaceMesh,
    mesh_onnx: tuple[Path, dict[str, Any]],
    interpreter: Any,
    astronaut: NDArray[np.uint8],
    dlib_face_finder: Any,
) -> None:
    session = create_session(mesh_onnx[0], providers=("CPUExecutionProvider",))
    compared = 0
    worst_px, worst_logit = 0.0, 0.0
    for name, rgb in real_photos(astronaut):
        face = dlib_face_finder(rgb)
        if face is None:
            continue
        box, pts5 = face
        for eyes in (None, eyes_of(pts5)):
            patch, _ = mesh.crop(rgb, box, eyes)
            ref_points, ref_logit = tflite_run(interpreter, patch)
            points, logit = session.run(["landmarks", "face_logit"], {"image": patch[None]})
            assert ref_logit > 0.0, f"{name}: the reference itself sees no face in the crop"
            worst_px = max(worst_px, float(np.abs(points[0] - ref_points).max()))
            worst_logit = max(worst_logit, abs(float(logit[0]) - ref_logit))
            compared += 1
    assert compared >= 2
    assert worst_px <= POINT_TOL_PX, f"max landmark difference {worst_px:.2e} crop pixels"
    assert worst_logit <= LOGIT_TOL, f"max face-flag logit difference {worst_logit:.2e}"


def test_noise_patch_equals_tflite(mesh_onnx: tuple[Path, dict[str, Any]], interpreter: Any) -> None:
    """Off the face too (no face: a negative logit), and the graph's sigmoid is the presence score."""
    session = create_session(mesh_onnx[0], providers=("CPUExecutionProvider",))
    patch = np.random.default_rng(0).integers(0, 256, size=(192, 192, 3), dtype=np.uint8)
    points, logit, score = session.run(["landmarks", "face_logit", "face_score"], {"image": patch[None]})
    ref_points, ref_logit = tflite_run(interpreter, patch)
    assert ref_logit < 0.0
    assert abs(float(logit[0]) - ref_logit) <= LOGIT_TOL
    assert float(score[0]) == pytest.approx(1.0 / (1.0 + math.exp(-ref_logit)), abs=1e-5)
    assert np.abs(points[0] - ref_points).max() <= POINT_TOL_PX


def test_batch_equals_single(mesh: FaceMesh, astronaut: NDArray[np.uint8], dlib_face_finder: Any) -> None:
    box, _ = dlib_face_finder(astronaut)
    frames = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), astronaut]
    boxes = [box, (511 - box[2], box[1], 511 - box[0], box[3]), box]
    batch, scores = mesh.predict_batch(frames, boxes)
    for i, (frame, b) in enumerate(zip(frames, boxes, strict=True)):
        single, score = mesh.predict(frame, b)
        assert np.abs(batch[i] - single).max() < 1e-3
        assert scores[i] == pytest.approx(score, abs=1e-5)


def test_mesh_lands_on_the_face(mesh: FaceMesh, astronaut: NDArray[np.uint8], dlib_face_finder: Any) -> None:
    box, pts5 = dlib_face_finder(astronaut)
    width = box[2] - box[0] + 1
    points, score = mesh.predict(astronaut, box, eyes_of(pts5))
    assert score > 0.9
    # MediaPipe's 33 and 263 are the outer eye corners: dlib's points 2 and 0.
    assert np.linalg.norm(points[33, :2] - pts5[2]) < 0.05 * width
    assert np.linalg.norm(points[263, :2] - pts5[0]) < 0.05 * width
    # Points run from the image's left eye to its right one, z is face-sized, not flat.
    assert points[33, 0] < points[263, 0]
    assert 0.2 * width < np.ptp(points[:, 2]) < 1.5 * width


def test_rotation_and_scale_follow_the_image(
    mesh: FaceMesh, astronaut: NDArray[np.uint8], dlib_face_finder: Any
) -> None:
    """Turning the photo by 30 degrees (eyes given) or doubling it moves the points with it; z
    scales like x."""
    box, pts5 = dlib_face_finder(astronaut)
    eyes = eyes_of(pts5)
    points, _ = mesh.predict(astronaut, box, eyes)
    h, w = astronaut.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
    turned = np.ascontiguousarray(cv2.warpAffine(astronaut, rot, (w, h)), dtype=np.uint8)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) @ rot[:, :2].T + rot[:, 2]
    half = (box[2] - box[0]) / 2
    turned_box = (
        round(centre[0] - half),
        round(centre[1] - half),
        round(centre[0] + half),
        round(centre[1] + half),
    )
    turned_points, score = mesh.predict(turned, turned_box, eyes @ rot[:, :2].T + rot[:, 2])
    expected = points[:, :2] @ rot[:, :2].T + rot[:, 2]
    assert score > 0.9
    assert np.median(np.linalg.norm(turned_points[:, :2] - expected, axis=1)) < 0.5
    assert np.abs(turned_points[:, 2] - points[:, 2]).max() < 0.02 * (box[2] - box[0])

    big = np.ascontiguousarray(
        cv2.resize(astronaut, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
    )
    big_box = (2 * box[0], 2 * box[1], 2 * box[2] + 1, 2 * box[3] + 1)
    big_points, _ = mesh.predict(big, big_box, 2 * eyes + 0.5)
    z_ratio = np.ptp(big_points[:, 2]) / np.ptp(points[:, 2])
    x_ratio = np.ptp(big_points[:, 0]) / np.ptp(points[:, 0])
    assert z_ratio == pytest.approx(2.0, rel=0.03)
    assert x_ratio == pytest.approx(2.0, rel=0.03)


def test_roi_follows_mediapipe_rule(mesh: FaceMesh, astronaut: NDArray[np.uint8]) -> None:
    box = (100, 50, 179, 149)  # 80 wide, 100 tall: the long side decides
    roi = roi_from_box(box, np.array([[120.0, 90.0], [160.0, 130.0]]))
    assert (roi.cx, roi.cy, roi.side) == (139.5, 99.5, 150.0)
    assert roi.angle == pytest.approx(math.pi / 4)
    patch, affine = mesh.crop(astronaut, box, np.array([[120.0, 90.0], [160.0, 130.0]]))
    # The ROI centre lands in the middle of the patch, the eye direction along its x axis.
    assert affine @ np.array([roi.cx, roi.cy, 1.0]) == pytest.approx([95.5, 95.5])
    d = affine[:, :2] @ np.array([40.0, 40.0])
    assert d[1] == pytest.approx(0.0, abs=1e-9) and d[0] > 0
    assert patch.shape == (192, 192, 3)
    # Tracking ROI: the box of the points, angle from 33 to 263.
    points = np.zeros((468, 3))
    points[:, 0] = np.linspace(10, 110, 468)
    points[:, 1] = np.linspace(20, 80, 468)
    points[33, :2], points[263, :2] = (40, 50), (80, 50)
    track_roi = roi_from_mesh(points)
    assert track_roi == MeshRoi(60.0, 50.0, 150.0, 0.0)


def test_track_follows_the_face(mesh: FaceMesh, astronaut: NDArray[np.uint8], dlib_face_finder: Any) -> None:
    box, pts5 = dlib_face_finder(astronaut)
    shifted = [np.ascontiguousarray(np.roll(astronaut, (0, s), axis=(0, 1))) for s in (0, 6, 12)]
    points, scores = mesh.track(shifted, box, eyes_of(pts5))
    assert points.shape == (3, 468, 3) and (scores > 0.9).all()
    moved = np.median(points[2, :, 0] - points[0, :, 0])
    assert moved == pytest.approx(12.0, abs=1.0)


def test_session_must_match_details(mesh_onnx: tuple[Path, dict[str, Any]]) -> None:
    path, details = mesh_onnx
    session = create_session(path, providers=("CPUExecutionProvider",))
    wrong = {**details, "input": {**details["input"], "name": "input_1"}}
    with pytest.raises(ModelArtifactError):
        FaceMesh(session, wrong)


def test_truncated_wheel_is_refused(mediapipe_wheel: Path, tmp_path: Path) -> None:
    cut = tmp_path / MEDIAPIPE_WHEEL
    cut.write_bytes(mediapipe_wheel.read_bytes()[: 1 << 20])
    with pytest.raises(ModelArtifactError, match="sha256"):
        read_face_landmark_tflite(cut)
    # Even when told to expect the truncated file's checksum, the zip is unreadable.
    with pytest.raises(ModelArtifactError, match="cannot read"):
        read_face_landmark_tflite(cut, wheel_sha256=hashlib.sha256(cut.read_bytes()).hexdigest())


def test_wrong_tflite_is_refused(tflite_bytes: bytes, tmp_path: Path) -> None:
    fake = tmp_path / MEDIAPIPE_WHEEL
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(FACE_LANDMARK_MEMBER, tflite_bytes[:-1000])
    with pytest.raises(ModelArtifactError, match="sha256"):
        read_face_landmark_tflite(fake, wheel_sha256=hashlib.sha256(fake.read_bytes()).hexdigest())
    with pytest.raises(ModelArtifactError, match="sha256"):
        convert_face_mesh(tflite_bytes[:-1000], tmp_path / "mesh.onnx")
    assert not (tmp_path / "mesh.onnx").exists()


@pytest.mark.slow
def test_fetch_replaces_a_corrupt_copy_and_checks_the_download(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / MEDIAPIPE_WHEEL).write_bytes(b"not a wheel")
    try:
        wheel = fetch_mediapipe_wheel(cache)
    except WheelDownloadError as exc:
        pytest.skip(f"cannot fetch the mediapipe wheel from the package index: {exc}")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == MEDIAPIPE_WHEEL_SHA256
    with pytest.raises(ModelArtifactError, match="pip download") as info:
        fetch_mediapipe_wheel(cache, expected_sha256="0" * 64)
    assert not isinstance(info.value, WheelDownloadError)
