"""FACEGATE_DETECT_MAX_SIDE: YuNet searches large frames on a reduced copy, then refines each face
at full resolution. The scale rule, and on real photos the same faces with nearly the same
encodings as YuNet on the whole frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.gallery.metric import from_squared_l2
from app.settings import Settings
from app.vision.imageio import decode_image
from app.vision.pipeline import Face, FacePipeline
from tests.conftest import shared_faces

# The refined detection is the whole frame's, up to the crop's zero padding far from the face: the
# encodings may differ by float noise only (measured: 0.0000 on both portraits; thresholds ~0.52).
MAX_DRIFT = 0.01


@pytest.fixture(scope="module")
def pipelines(settings: Settings) -> tuple[FacePipeline, FacePipeline]:
    fusion = settings.model_copy(update={"profile": "fusion", "detect_max_side": 640})
    whole = fusion.model_copy(update={"detect_max_side": 0})
    return FacePipeline.load(fusion), FacePipeline.load(whole)


def test_scale_fits_the_longer_side_but_keeps_the_smallest_face_findable(
    pipelines: tuple[FacePipeline, FacePipeline], settings: Settings
) -> None:
    reduced, whole = pipelines
    assert reduced.detect_scale_for((480, 640, 3)) == 1.0  # a door frame: untouched
    assert reduced.detect_scale_for((720, 1280, 3)) == 0.5
    assert reduced.detect_scale_for((480, 853, 3)) == 0.5  # whole factors only: 3/4 would not pay
    # 1080p would fit at 1/3, but a 40 px face (FACEGATE_RECOGNIZE_MIN_FACE_PX) must stay >= 20 px.
    assert reduced.detect_scale_for((1080, 1920, 3)) == 0.5
    assert whole.detect_scale_for((1080, 1920, 3)) == 1.0
    larger_faces = settings.model_copy(
        update={"profile": "fusion", "recognize_min_face_px": 80, "enrol_min_face_px": 80}
    )
    assert FacePipeline.load(larger_faces).detect_scale_for((1080, 1920, 3)) == pytest.approx(1 / 3)
    # An operator's own detect_scale stays the ceiling.
    halved = settings.model_copy(update={"profile": "fusion", "detect_scale": 0.4})
    assert FacePipeline.load(halved).detect_scale_for((720, 1280, 3)) == 0.4


def _pair(pipelines: tuple[FacePipeline, FacePipeline], bgr: NDArray[np.uint8]) -> tuple[Face, Face]:
    reduced, whole = pipelines
    [a] = reduced.faces(bgr)
    [b] = whole.faces(bgr)
    return a, b


def _distance(pipeline: FacePipeline, a: Face, b: Face) -> float:
    d2 = ((a.embedding.astype(np.float64) - b.embedding) ** 2).sum()
    return float(from_squared_l2(np.array([[d2]]), pipeline.profile.metric)[0, 0])


def test_upscaled_astronaut_gives_the_same_face(
    pipelines: tuple[FacePipeline, FacePipeline], astronaut: NDArray[np.uint8]
) -> None:
    big = cv2.resize(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR), (1280, 1280), interpolation=cv2.INTER_CUBIC)
    a, b = _pair(pipelines, np.ascontiguousarray(big))
    assert pipelines[0].detect_scale_for(big.shape) == 0.5
    _assert_same_face(pipelines[0], a, b)


def _assert_same_face(pipeline: FacePipeline, a: Face, b: Face) -> None:
    # The face sits away from the top-left corner, so the crop's offset must be added to x, y and
    # the landmarks and to nothing else (it was once added to the width and height too, which made
    # every refinement fail its overlap test and fall back to the coarse landmarks).
    assert a.box == b.box
    assert np.abs(np.asarray(a.points) - np.asarray(b.points)).max() < 0.5
    assert _distance(pipeline, a, b) < MAX_DRIFT


@pytest.mark.shared
@pytest.mark.parametrize("size", ["720p", "1080p"])
def test_real_portraits_give_the_same_face(pipelines: tuple[FacePipeline, FacePipeline], size: str) -> None:
    folder = shared_faces() / "examples" / "derived_variants_of_obama_portrait"
    bgr = decode_image((folder / f"examples__obama-{size}.jpg").read_bytes())
    a, b = _pair(pipelines, bgr)
    assert a.box[0] > 32 and pipelines[0].detect_scale_for(bgr.shape) == 0.5
    _assert_same_face(pipelines[0], a, b)
    # The same person at 480p (YuNet on the whole frame there) is still far under any τ.
    [small] = pipelines[0].faces(decode_image((folder / "examples__obama-480p.jpg").read_bytes()))
    assert _distance(pipelines[0], a, small) < 0.3


def test_scale_rule_needs_no_models() -> None:
    """The rule itself, without a manifest: the settings validate the field's range."""
    with pytest.raises(ValueError, match="detect_max_side"):
        Settings(detect_max_side=-1)
    assert Settings().detect_max_side == 640
