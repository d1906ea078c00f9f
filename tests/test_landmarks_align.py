"""The numpy 5-point landmark predictor and the face-chip alignment, against dlib (the oracle).

Both must equal dlib bit for bit: integer landmark points identical to ``shape.part(i)`` and
chips identical to ``dlib.get_face_chip`` (including dlib's pyramid path for large faces).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision.align import (
    ChipDetails,
    dlib_svd,
    extract_chip,
    extract_image_chip,
    face_chip_details,
    find_similarity_transform,
    pyramid_down2,
)
from app.vision.landmarks import LandmarkPredictor, _similarity_float32
from models.convert_shape_predictor import convert_shape_predictor, read_shape_predictor
from models.dlib_format import DlibFormatError
from tests.dlib_oracle import cnn_detections, lfw_sample

MODELS = Path(os.path.dirname(face_recognition_models.__file__)) / "models"
SP_DAT = MODELS / "shape_predictor_5_face_landmarks.dat"
MMOD_DAT = MODELS / "mmod_human_face_detector.dat"
SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"

Box = tuple[int, int, int, int]


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("shape_predictor") / "shape_predictor_5.npz"
    return out, convert_shape_predictor(SP_DAT, out)


@pytest.fixture(scope="module")
def predictor(converted: tuple[Path, dict[str, Any]]) -> LandmarkPredictor:
    return LandmarkPredictor.from_npz(converted[0])


@pytest.fixture(scope="module")
def dlib_predictor() -> Any:
    return dlib.shape_predictor(str(SP_DAT))


@pytest.fixture(scope="module")
def cnn_detector() -> Any:
    return partial(cnn_detections, MMOD_DAT)


@pytest.fixture(scope="module")
def astro() -> NDArray[np.uint8]:
    from skimage import data

    img: NDArray[np.uint8] = np.ascontiguousarray(data.astronaut())  # type: ignore[no-untyped-call]
    return img  # public-domain NASA photo, ships with scikit-image


@pytest.fixture(scope="module")
def astro_box(astro: NDArray[np.uint8], cnn_detector: Any) -> Box:
    dets = cnn_detector(astro, 0)
    assert len(dets) == 1
    r = dets[0].rect
    return (r.left(), r.top(), r.right(), r.bottom())


def dlib_shape(sp: Any, rgb: NDArray[np.uint8], box: Box) -> tuple[Any, NDArray[np.float64]]:
    shape = sp(rgb, dlib.rectangle(*box))
    return shape, np.array(
        [[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64
    )


def dlib_shape_from_points(points: NDArray[np.float64]) -> Any:
    return dlib.full_object_detection(
        dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in points]
    )


def read_rgb(path: Path) -> NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def assert_same_as_dlib(
    predictor: LandmarkPredictor, sp: Any, rgb: NDArray[np.uint8], box: Box
) -> NDArray[np.float64]:
    """Landmarks and chip both identical to dlib's for this box; returns the landmarks."""
    shape, expected = dlib_shape(sp, rgb, box)
    got = predictor.predict(rgb, box)
    np.testing.assert_array_equal(got, expected, err_msg=f"landmarks for box {box}")
    chip = extract_chip(rgb, got)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    np.testing.assert_array_equal(
        chip, dlib.get_face_chip(rgb, shape, size=150, padding=0.25), err_msg=f"box {box}"
    )
    return got


def shared_faces() -> Path:
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/faces is absent")
    return SHARED_FACES


# -- converter --------------------------------------------------------------------------


def test_converter_manifest_and_arrays(converted: tuple[Path, dict[str, Any]]) -> None:
    path, info = converted
    assert {k: v for k, v in info.items() if k != "part_order"} == {
        "num_parts": 5,
        "cascades": 15,
        "trees_per_cascade": 500,
        "tree_depth": 4,
        "feature_pixels": 800,
    }
    assert info["part_order"].startswith("dlib 5-point")
    with np.load(path) as z:
        shapes = {k: (z[k].shape, z[k].dtype) for k in z.files}
        assert np.all((z["initial_shape"] > 0) & (z["initial_shape"] < 1))  # normalized to the box
        assert z["split_idx1"].max() < 800 and z["anchor_idx"].max() < 5
    assert shapes == {
        "initial_shape": ((5, 2), np.float32),
        "split_idx1": ((15, 500, 15), np.int16),
        "split_idx2": ((15, 500, 15), np.int16),
        "split_thresh": ((15, 500, 15), np.float32),
        "leaf_values": ((15, 500, 16, 5, 2), np.float32),
        "anchor_idx": ((15, 800), np.int8),
        "deltas": ((15, 800, 2), np.float32),
    }


def test_converter_needs_the_whole_file_and_nothing_more() -> None:
    data = SP_DAT.read_bytes()
    read_shape_predictor(data)  # the real file parses to its last byte
    with pytest.raises(DlibFormatError, match="unread"):
        read_shape_predictor(data + b"\x01\x00")  # one extra (valid) integer
    with pytest.raises(DlibFormatError, match="past the end"):
        read_shape_predictor(data[:-1])
    with pytest.raises(DlibFormatError):
        read_shape_predictor(data[: len(data) // 2])


# -- landmarks ----------------------------------------------------------------------------


def test_landmarks_astronaut_detector_box(
    predictor: LandmarkPredictor, dlib_predictor: Any, astro: NDArray[np.uint8], astro_box: Box
) -> None:
    assert_same_as_dlib(predictor, dlib_predictor, astro, astro_box)


@pytest.mark.parametrize(
    "shift",
    [(0, 0, 0, 0), (7, -5, 7, -5), (-13, 9, 4, 21), (10, 10, -10, -10), (-40, -30, 40, 30), (3, 0, 0, 0)],
)
def test_landmarks_perturbed_boxes(
    predictor: LandmarkPredictor,
    dlib_predictor: Any,
    astro: NDArray[np.uint8],
    astro_box: Box,
    shift: Box,
) -> None:
    box = tuple(a + b for a, b in zip(astro_box, shift, strict=True))
    assert_same_as_dlib(predictor, dlib_predictor, astro, box)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "box",
    [
        (-60, -45, 120, 140),  # partly outside, top left
        (420, 400, 620, 600),  # partly outside, bottom right
        (-500, -500, -100, -100),  # entirely outside: every feature pixel reads 0
        (0, 0, 511, 511),  # the whole image
        (200, 100, 200, 100),  # a single pixel (zero width, as dlib counts it)
        (300, 200, 250, 150),  # inverted
    ],
)
def test_landmarks_odd_boxes(
    predictor: LandmarkPredictor, dlib_predictor: Any, astro: NDArray[np.uint8], box: Box
) -> None:
    _, expected = dlib_shape(dlib_predictor, astro, box)
    np.testing.assert_array_equal(predictor.predict(astro, box), expected)


def test_landmarks_many_random_boxes_gray_and_views(
    predictor: LandmarkPredictor, dlib_predictor: Any, astro: NDArray[np.uint8]
) -> None:
    rng = np.random.default_rng(7)
    boxes: list[Box] = []
    for _ in range(40):
        left, top = (int(v) for v in rng.integers(-80, 480, 2))
        w = int(rng.integers(30, 300))
        boxes.append((left, top, left + w, top + int(w * rng.uniform(0.8, 1.25))))
    gray: NDArray[np.uint8] = np.ascontiguousarray(cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    mirrored = astro[:, ::-1]  # a non-contiguous view
    for img in (astro, gray, mirrored):
        expected = [dlib_shape(dlib_predictor, np.ascontiguousarray(img), b)[1] for b in boxes]
        for got, want in zip(predictor.predict_many(img, boxes), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_predict_float_is_the_unrounded_shape(
    predictor: LandmarkPredictor, astro: NDArray[np.uint8], astro_box: Box
) -> None:
    exact = predictor.predict_float(astro, astro_box)
    points = predictor.predict(astro, astro_box)
    assert exact.shape == points.shape == (5, 2)
    np.testing.assert_array_equal(points, np.floor(exact + 0.5))
    assert np.all(np.abs(exact - points) <= 0.5)


def test_predict_rejects_bad_images(predictor: LandmarkPredictor) -> None:
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((10, 10, 3), dtype=np.float32), (0, 0, 5, 5))
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((10, 10, 4), dtype=np.uint8), (0, 0, 5, 5))


def test_cascade_similarity_closed_form_matches_dlibs_svd_in_float32(
    converted: tuple[Path, dict[str, Any]],
) -> None:
    """The per-cascade transform: closed form (fast path) == dlib's SVD route, after the float32 cast."""
    with np.load(converted[0]) as z:
        ref = z["initial_shape"].astype(np.float64)
    rng = np.random.default_rng(2)
    for _ in range(500):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.7, 1.4)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        cur = (ref @ rot.T + rng.uniform(-0.2, 0.2, 2) + rng.normal(0, 0.03, ref.shape)).astype(np.float32)
        cur64 = cur.astype(np.float64).tolist()
        (m00, m01), (m10, m11) = find_similarity_transform(ref.tolist(), cur64)[0]
        expected = tuple(float(np.float32(v)) for v in (m00, m01, m10, m11))
        assert _similarity_float32(ref.tolist(), cur64) == expected
    # A degenerate reference (sigma == 0) takes the exact route.
    (m00, m01), (m10, m11) = find_similarity_transform([[0.5, 0.5]] * 5, ref.tolist())[0]
    expected = tuple(float(np.float32(v)) for v in (m00, m01, m10, m11))
    assert _similarity_float32([[0.5, 0.5]] * 5, ref.tolist()) == expected


def test_dlib_svd_is_a_decomposition() -> None:
    rng = np.random.default_rng(4)
    for n in (2, 3):
        for _ in range(50):
            a = rng.normal(size=(n, n))
            u, q, v = dlib_svd(a.tolist())
            u_, v_ = np.array(u), np.array(v)
            np.testing.assert_allclose(u_ @ np.diag(q) @ v_.T, a, atol=1e-12)
            np.testing.assert_allclose(v_.T @ v_, np.eye(n), atol=1e-12)
            assert min(q) >= 0


# -- alignment ----------------------------------------------------------------------------


def test_chip_details_equal_dlib_exactly(
    predictor: LandmarkPredictor, dlib_predictor: Any, astro: NDArray[np.uint8], astro_box: Box
) -> None:
    shape, points = dlib_shape(dlib_predictor, astro, astro_box)
    ref = dlib.get_face_chip_details(shape, 150, 0.25)
    got = face_chip_details(points)
    assert got.rect == (ref.rect.left(), ref.rect.top(), ref.rect.right(), ref.rect.bottom())
    assert got.angle == ref.angle and (got.rows, got.cols) == (ref.rows, ref.cols) == (150, 150)


def test_chip_large_face_takes_dlibs_pyramid(
    predictor: LandmarkPredictor, dlib_predictor: Any, astro: NDArray[np.uint8], astro_box: Box
) -> None:
    big = np.ascontiguousarray(cv2.resize(astro, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR))
    box = tuple(3 * v for v in astro_box)
    points = assert_same_as_dlib(predictor, dlib_predictor, big, box)  # type: ignore[arg-type]
    rect = face_chip_details(points).rect
    # pyramid_down<2> is used once rect_down(rect) still holds more pixels than the chip
    assert (rect[2] - rect[0]) / 2 > 150


@pytest.mark.parametrize(("size", "padding"), [(150, 0.25), (200, 0.2), (151, 0.3), (80, 0.0), (224, 0.5)])
def test_chip_sizes_and_paddings(
    dlib_predictor: Any, astro: NDArray[np.uint8], astro_box: Box, size: int, padding: float
) -> None:
    shape, points = dlib_shape(dlib_predictor, astro, astro_box)
    want = dlib.get_face_chip(astro, shape, size=size, padding=padding)
    np.testing.assert_array_equal(extract_chip(astro, points, size, padding), want)


def test_chip_random_poses_scales_and_borders(astro: NDArray[np.uint8]) -> None:
    """Rotations of any angle, faces from 0.1x to 8x (pyramid depths 0-3), chips leaving the image."""
    base = np.array([(255, 104), (237, 105), (195, 101), (212, 103), (224, 135)], dtype=np.float64)
    rng = np.random.default_rng(3)
    gray: NDArray[np.uint8] = np.ascontiguousarray(cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    for i in range(120):
        angle = rng.uniform(-np.pi, np.pi)
        scale = float(np.exp(rng.uniform(np.log(0.1), np.log(8.0))))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        pts = np.round(
            (base - base.mean(axis=0)) @ rot.T + rng.uniform(-200, 700, 2) + rng.normal(0, 2, (5, 2))
        )
        img = gray if i % 4 == 0 else astro
        want = dlib.get_face_chip(img, dlib_shape_from_points(pts), size=150, padding=0.25)
        np.testing.assert_array_equal(extract_chip(img, pts), want, err_msg=f"case {i}: {pts.tolist()}")


def test_extract_image_chip_any_details_equal_dlib(astro: NDArray[np.uint8]) -> None:
    """Arbitrary rectangles, angles and chip sizes; unrotated exact-size rectangles take dlib's plain copy."""
    rng = np.random.default_rng(11)
    cases: list[tuple[tuple[float, float, float, float], float, int, int]] = []
    for i in range(150):
        left, top = rng.uniform(-200, 600, 2)
        w = rng.uniform(5, 900)
        h = w * rng.uniform(0.5, 2)
        angle = 0.0 if i % 5 == 0 else float(rng.uniform(-4, 4))
        cases.append(
            ((left, top, left + w, top + h), angle, int(rng.integers(1, 200)), int(rng.integers(1, 200)))
        )
    for left, top in [(10.5, 20.5), (-0.5, 3.0), (100.0, -40.0), (-0.5, -0.5), (400.25, 450.75)]:
        cases.append(((left, top, left + 99, top + 79), 0.0, 80, 100))  # rows == height, cols == width
    for rect, angle, rows, cols in cases:
        ref = dlib.chip_details(dlib.drectangle(*rect), dlib.chip_dims(rows, cols), angle)
        got = extract_image_chip(astro, ChipDetails(rect, angle, rows, cols))
        np.testing.assert_array_equal(got, dlib.extract_image_chip(astro, ref), err_msg=f"{rect} {angle}")


def test_pyramid_down2_equals_dlib() -> None:
    rng = np.random.default_rng(5)
    pyr = dlib.pyramid_down(2)
    for shape in [(9, 9, 3), (10, 11, 3), (57, 64, 3), (200, 131, 3), (64, 57), (8, 20, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(pyramid_down2(img), pyr(img))
    white = np.full((40, 40, 3), 255, dtype=np.uint8)  # the largest sums: no uint16 overflow
    np.testing.assert_array_equal(pyramid_down2(white), np.full((18, 18, 3), 255, dtype=np.uint8))


# -- real photos from ../shared/faces -------------------------------------------------------


@pytest.mark.shared
def test_example_photos_equal_dlib(predictor: LandmarkPredictor, dlib_predictor: Any) -> None:
    """Full-size photos (faces of 120-450 px, most through the pyramid) and a 1080p close-up.

    Boxes come from dlib's HOG detector: fast on multi-megapixel photos, and the box source
    does not matter for an equality test.
    """
    root = shared_faces() / "examples"
    files = sorted((root / "images").glob("*/*"))
    files.append(root / "derived_variants_of_obama_portrait" / "examples__obama-1080p.jpg")
    assert len(files) >= 10
    hog = dlib.get_frontal_face_detector()
    faces = 0
    for path in files:
        rgb = read_rgb(path)
        for r in hog(rgb, 0):
            box = (r.left(), r.top(), r.right(), r.bottom())
            assert_same_as_dlib(predictor, dlib_predictor, rgb, box)
            faces += 1
    assert faces >= len(files)


@pytest.mark.shared
@pytest.mark.slow
def test_lfw_faces_equal_dlib(predictor: LandmarkPredictor, dlib_predictor: Any, cnn_detector: Any) -> None:
    """20 LFW images (250x250) with dlib's CNN detector boxes at upsample 1, as a door camera sees them."""
    files = lfw_sample(shared_faces() / "lfw-dev" / "images")
    faces = 0
    for path in files:
        rgb = read_rgb(path)
        for det in cnn_detector(rgb, 1):
            r = det.rect
            assert_same_as_dlib(predictor, dlib_predictor, rgb, (r.left(), r.top(), r.right(), r.bottom()))
            faces += 1
    assert faces >= 18
