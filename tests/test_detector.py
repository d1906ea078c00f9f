"""The ONNX MMOD detector against dlib's own cnn_face_detection_model_v1 (the oracle)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from app.vision.detector import (
    Detection,
    FaceDetector,
    pyramid_up,
    pyramid_up_size,
    rect_down_2,
    resize_rgb_bilinear,
    tiled_pyramid_layout,
)
from models.convert_detector import convert_detector
from models.dlib_dnn import conv_params, read_dnn
from models.dlib_format import DlibFormatError
from tests.dlib_oracle import cnn_detections, lfw_sample

SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
SCORE_TOL = 1e-3


def _weights_dir() -> Path:
    import face_recognition_models

    return Path(os.path.dirname(face_recognition_models.__file__)) / "models"


DAT = _weights_dir() / "mmod_human_face_detector.dat"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("detector") / "mmod_human_face_detector.onnx"
    return path, convert_detector(DAT, path)


@pytest.fixture(scope="module")
def detector(converted: tuple[Path, dict[str, Any]]) -> Iterator[FaceDetector]:
    path, manifest = converted
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    face_detector = FaceDetector(session, manifest)
    yield face_detector
    face_detector.close()


@pytest.fixture(scope="module")
def dlib_detector() -> Any:
    return partial(cnn_detections, DAT)


@pytest.fixture(scope="module")
def astronaut() -> NDArray[np.uint8]:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())  # type: ignore[no-untyped-call]


def _read_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _assert_same_as_dlib(ours: list[Detection], dlib_dets: Any, what: str) -> None:
    theirs = [
        ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
        for d in dlib_dets
    ]
    assert len(ours) == len(theirs), f"{what}: {len(ours)} detections, dlib {len(theirs)}: {ours} vs {theirs}"
    for o, (box, score) in zip(ours, theirs, strict=True):
        assert o.box == box, f"{what}: box {o.box} vs dlib {box}"
        assert abs(o.score - score) < SCORE_TOL, f"{what}: score {o.score} vs dlib {score}"


# -- converter ---------------------------------------------------------------------------------


def test_dat_file_parses_to_last_byte_with_expected_layers() -> None:
    dnn = read_dnn(DAT)  # raises unless every byte is consumed
    convs = [layer for layer in dnn.layers if layer.tag == "con_4"]
    assert len(convs) == 7
    assert [layer.tag for layer in dnn.layers].count("bn_con2") == 6
    expected = [(16, 3, 5), (32, 16, 5), (32, 32, 5), (45, 32, 5), (45, 45, 5), (45, 45, 5), (1, 45, 9)]
    for layer, (out_c, in_c, k) in zip(convs, expected, strict=True):
        filters, biases = conv_params(layer)
        assert filters.shape == (out_c, in_c, k, k)
        assert biases.shape == (out_c,)
    assert dnn.loss["detector_windows"] == [{"width": 80, "height": 80, "label": ""}]


def test_converter_writes_valid_onnx_and_manifest(converted: tuple[Path, dict[str, Any]]) -> None:
    path, manifest = converted
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["scores"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims][:2] == [1, 3]
    assert dims[2].dim_param and dims[3].dim_param  # dynamic height and width

    assert manifest["input"]["name"] == "input"
    assert manifest["input"]["mean_rgb"] == pytest.approx([122.782, 117.001, 104.298], abs=1e-4)
    assert manifest["window"] == [80, 80]
    assert (manifest["output"]["stride"], manifest["output"]["offset"]) == (8, 14)
    assert manifest["nms_overlap"] == pytest.approx(0.33827613, abs=1e-7)
    assert manifest["min_input_size"] == 29
    assert manifest["pyramid"] == {
        "downsample": "5/6",
        "padding": 10,
        "outer_padding": 11,
        "min_level_height": 5,
    }


def test_cpu_friendly_graph_equals_dlibs_layer_layout(
    converted: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The default graph pads 45 -> 48 channels and splits the last conv; same function."""
    plain = tmp_path / "plain.onnx"
    assert convert_detector(DAT, plain, channel_block=1) == converted[1]
    rng = np.random.default_rng(1)
    x = cv2.GaussianBlur(rng.uniform(-1, 1, (200, 150, 3)).astype(np.float32), (0, 0), 2)
    feed = {"input": np.ascontiguousarray(x.transpose(2, 0, 1)[None])}
    outs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        for p in (plain, converted[0])
    ]
    assert outs[0].shape == outs[1].shape == (1, 1, 22, 16)
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=2e-5)


def test_converter_rejects_other_networks(tmp_path: Path) -> None:
    with pytest.raises(DlibFormatError):
        convert_detector(_weights_dir() / "dlib_face_recognition_resnet_model_v1.dat", tmp_path / "x.onnx")


# -- pieces against dlib -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 3), (5, 4), (9, 13), (31, 17), (250, 250), (37, 301), (480, 640)]
)
def test_pyramid_up_bit_exact(shape: tuple[int, int]) -> None:
    # dlib-bin's Python API has no pyramid_up; pyramid_up(img, pyramid_down<2>) is resize_image()
    # (bilinear) to rect_up(get_rect(img)), and both of those are exposed.
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    up = dlib.pyramid_down(2).rect_up(dlib.rectangle(0, 0, shape[1] - 1, shape[0] - 1))
    assert pyramid_up_size(*shape) == (up.bottom() + 1, up.right() + 1)
    np.testing.assert_array_equal(pyramid_up(img), dlib.resize_image(img, up.bottom() + 1, up.right() + 1))


def test_pyramid_up_bit_exact_on_a_photo_twice(astronaut: NDArray[np.uint8]) -> None:
    img = astronaut
    for _ in range(2):
        ref = dlib.resize_image(img, *pyramid_up_size(*img.shape[:2]))
        img = pyramid_up(img)
        np.testing.assert_array_equal(img, ref)


@pytest.mark.parametrize("out_shape", [(1, 1), (3, 5), (100, 77), (333, 401)])
def test_rgb_resize_bit_exact_any_size(astronaut: NDArray[np.uint8], out_shape: tuple[int, int]) -> None:
    img = np.ascontiguousarray(astronaut[100:300, 150:420])
    np.testing.assert_array_equal(resize_rgb_bilinear(img, *out_shape), dlib.resize_image(img, *out_shape))


def test_rect_down_matches_dlib() -> None:
    pyr = dlib.pyramid_down(2)
    for box in [(10, 20, 100, 200), (-7, -3, 5, 9), (301, 45, 402, 146)]:
        for levels in (1, 2, 3):
            r = pyr.rect_down(dlib.rectangle(*box), levels)
            assert rect_down_2(box, levels) == (r.left(), r.top(), r.right(), r.bottom())


def test_pyramid_levels_match_dlib_float_resize(detector: FaceDetector, astronaut: NDArray[np.uint8]) -> None:
    """Level 0 is exactly dlib's normalization; each next level is dlib's resize_image of it."""
    tensor, plan = detector.tiled_pyramid(astronaut)
    assert plan is not None
    assert tensor.shape[2:] == plan.shape
    mean = np.array(detector.config.mean_rgb, dtype=np.float32)
    l0, t0, r0, b0 = plan.rects[0]
    expected0 = (astronaut.astype(np.float32) - mean) / np.float32(256)
    np.testing.assert_array_equal(tensor[0, :, t0 : b0 + 1, l0 : r0 + 1], expected0.transpose(2, 0, 1))
    for prev, rect in zip(plan.rects, plan.rects[1:], strict=False):
        for c in range(3):
            src = np.ascontiguousarray(tensor[0, c, prev[1] : prev[3] + 1, prev[0] : prev[2] + 1])
            got = tensor[0, c, rect[1] : rect[3] + 1, rect[0] : rect[2] + 1]
            ref = dlib.resize_image(src, got.shape[0], got.shape[1])
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # Everything outside the level rectangles is zero padding.
    mask = np.ones(plan.shape, dtype=bool)
    for left, top, right, bottom in plan.rects:
        mask[top : bottom + 1, left : right + 1] = False
    assert not tensor[0][:, mask].any()


def test_tiled_layout_of_dlib_docs_example() -> None:
    rects, rows, cols = tiled_pyramid_layout(480, 640, pyramid_n=6, padding=10, outer_padding=11)
    assert cols == 640 + 22
    assert rects[0] == (11, 11, 650, 490)
    assert rects[1] == (11, 501, 543, 900)  # 400 x 533 under the original
    for left, top, right, bottom in rects:
        assert 0 <= left <= right < cols and 0 <= top <= bottom < rows
    # Levels never overlap one another.
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert max(a[0], b[0]) > min(a[2], b[2]) or max(a[1], b[1]) > min(a[3], b[3])


# -- whole detector against dlib ---------------------------------------------------------------


@pytest.mark.parametrize("upsample", [0, 1])
def test_astronaut_matches_dlib(
    detector: FaceDetector, dlib_detector: Any, astronaut: NDArray[np.uint8], upsample: int
) -> None:
    ours = detector.detect(astronaut, upsample)
    assert len(ours) == 1
    _assert_same_as_dlib(ours, dlib_detector(astronaut, upsample), f"astronaut upsample={upsample}")


def test_results_sorted_and_min_size(detector: FaceDetector, astronaut: NDArray[np.uint8]) -> None:
    # Two faces of different sizes: the photo and a half-size copy beside it.
    scene = np.zeros((512, 768, 3), dtype=np.uint8)
    scene[:, :512] = astronaut
    scene[:256, 512:] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    dets = detector.detect(scene, 1)
    assert len(dets) >= 2
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    widths = [d.box[2] - d.box[0] + 1 for d in dets]
    cut = min(widths) + 1
    kept = detector.detect(scene, 1, min_size=cut)
    assert kept == [d for d in dets if d.box[2] - d.box[0] + 1 >= cut]


@pytest.mark.parametrize("shape", [(10, 10, 3), (30, 30, 3), (79, 200, 3)])
def test_small_images_match_dlib(detector: FaceDetector, dlib_detector: Any, shape: tuple[int, ...]) -> None:
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for upsample in (0, 1):
        _assert_same_as_dlib(detector.detect(img, upsample), dlib_detector(img, upsample), f"{shape}")


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (4, 7, 3), (0, 5, 3)])
def test_images_too_small_for_the_network_have_no_faces(
    detector: FaceDetector, shape: tuple[int, ...]
) -> None:
    # dlib throws on these ("Filter windows must be small enough"), and under some heap layouts
    # crashes the whole test process instead, so the oracle is not asked.
    img = np.zeros(shape, dtype=np.uint8)
    assert detector.detect(img) == []


def test_concurrent_calls_match_sequential(detector: FaceDetector, astronaut: NDArray[np.uint8]) -> None:
    """Per-thread buffers: detect() from a thread pool gives what it gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    small = np.asarray(cv2.resize(astronaut, (300, 300)), dtype=np.uint8)
    images = [astronaut, np.ascontiguousarray(astronaut[:400, 50:]), small] * 2
    expected = [detector.detect(img) for img in images]
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(detector.detect, images)) == expected


def test_rejects_non_rgb(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match="RGB"):
        detector.detect(np.zeros((10, 10), dtype=np.uint8))


def _shared(sub: str) -> Path:
    path = SHARED_FACES / sub
    if not path.is_dir():
        pytest.skip("../shared/faces is absent")
    return path


def _example_images() -> list[str]:
    base = SHARED_FACES / "examples"
    files = [*sorted(base.glob("images/*/*")), *sorted(base.glob("multi_face_scenes/*"))]
    files.append(base / "derived_variants_of_obama_portrait" / "examples__obama-1080p.jpg")
    return [str(p.relative_to(base)) for p in files if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("name", _example_images() or ["<no ../shared/faces>"])
def test_shared_examples_match_dlib(detector: FaceDetector, dlib_detector: Any, name: str) -> None:
    img = _read_rgb(_shared("examples") / name)
    # dlib needs seconds per upsampled multi-megapixel photo; the smaller ones get both settings.
    for upsample in (0, 1) if img.shape[0] * img.shape[1] <= 450_000 else (0,):
        _assert_same_as_dlib(
            detector.detect(img, upsample), dlib_detector(img, upsample), f"{name} up={upsample}"
        )


@pytest.mark.shared
@pytest.mark.slow
def test_multi_face_scenes_find_several_faces(detector: FaceDetector) -> None:
    counts = [
        len(detector.detect(_read_rgb(p), 1)) for p in sorted(_shared("examples").glob("multi_face_scenes/*"))
    ]
    assert max(counts) >= 2


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_sample_matches_dlib(detector: FaceDetector, dlib_detector: Any) -> None:
    sample = lfw_sample(_shared("lfw-dev") / "images")
    found = 0
    for path in sample:
        img = _read_rgb(path)
        ours = detector.detect(img, 1)
        _assert_same_as_dlib(ours, dlib_detector(img, 1), path.name)
        found += bool(ours)
    assert found >= len(sample) * 3 // 4  # LFW crops are centred faces
