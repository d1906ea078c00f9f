"""FacePipeline: a decoded BGR image in, every face out (box, score, landmarks, chip, embedding).

Built once at start-up from the verified manifest: sessions created by the runtime wrapper and
warmed up, so the first door frame is as fast as the thousandth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.settings import Settings
from app.vision.align import extract_chip
from app.vision.detector import Detection, FaceDetector
from app.vision.encoder import FaceEncoder
from app.vision.landmarks import LandmarkPredictor
from app.vision.liveness import LivenessModel
from app.vision.manifest import Manifest, ModelArtifactError, load_manifest
from app.vision.runtime import create_session

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Face:
    box: Box  # left, top, right, bottom; inclusive (dlib's rectangle)
    score: float  # detector confidence
    landmarks: NDArray[np.float64]  # (5, 2) x, y in dlib's 5-point order
    chip: NDArray[np.uint8]  # aligned RGB chip
    embedding: NDArray[np.float32]  # (128,)
    landmarks68: NDArray[np.float64] | None = None  # (68, 2) when FACEGATE_LIVENESS_LANDMARKS68 is on

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1


def encoding_version(encoder_version: str, flip_average: bool) -> str:
    """The version stored with every encoding: averaged encodings live in a slightly different
    space from plain ones, so the two must never be compared."""
    return encoder_version + ("+flipavg" if flip_average else "")


class StageTimer:
    """Accumulates milliseconds per stage; cheap enough to leave on in production."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class FacePipeline:
    def __init__(
        self,
        detector: FaceDetector,
        landmarks: LandmarkPredictor,
        encoder: FaceEncoder,
        *,
        upsample_below_px: int = 600,
        min_face_px: int = 0,
        chip_padding: float = 0.25,
        flip_average: bool = False,
        model_version: str = "",
        liveness: LivenessModel,
        landmarks68: LandmarkPredictor | None = None,
    ) -> None:
        self.detector = detector
        self.liveness = liveness
        self.landmarks = landmarks
        self.landmarks68 = landmarks68  # for the blink cue only; alignment uses the 5 points
        self.encoder = encoder
        self.upsample_below_px = upsample_below_px
        self.min_face_px = min_face_px
        self.chip_padding = chip_padding
        self.flip_average = flip_average
        self.model_version = encoding_version(model_version, flip_average)

    @classmethod
    def from_manifest(
        cls, model_dir: Path, manifest: Manifest, settings: Settings, *, flip_average: bool | None = None
    ) -> FacePipeline:
        def session(name: str):  # type: ignore[no-untyped-def]
            return create_session(
                model_dir / manifest.entry(name).file,
                providers=settings.onnx_providers,
                intra_op_threads=settings.onnx_intra_op_threads,
                inter_op_threads=settings.onnx_inter_op_threads,
            )

        encoder_details = manifest.details("encoder")
        landmarks68 = None
        if settings.liveness_landmarks68:
            if "landmarks68" not in manifest.models:
                raise ModelArtifactError(
                    "FACEGATE_LIVENESS_LANDMARKS68 is on but the 68-point model is not built; "
                    "run `facegate models build --landmarks68`"
                )
            log.warning(
                "68-point landmarks enabled for the blink cue: dlib's model was trained on iBUG 300-W, "
                "whose terms exclude commercial use"
            )
            landmarks68 = LandmarkPredictor.from_npz(model_dir / manifest.entry("landmarks68").file)
        pipeline = cls(
            FaceDetector(session("detector"), manifest.details("detector")),
            LandmarkPredictor.from_npz(model_dir / manifest.entry("landmarks").file),
            FaceEncoder(session("encoder"), encoder_details, max_batch=settings.encoder_max_batch),
            upsample_below_px=settings.detect_upsample_below_px,
            min_face_px=settings.detect_min_face_px,
            chip_padding=float(encoder_details["chip"]["padding"]),
            flip_average=settings.encode_flip_average if flip_average is None else flip_average,
            model_version=manifest.entry("encoder").version,
            liveness=LivenessModel.from_manifest(
                model_dir,
                manifest,
                providers=settings.onnx_providers,
                intra_op_threads=settings.onnx_intra_op_threads,
            ),
            landmarks68=landmarks68,
        )
        pipeline.warm_up()
        return pipeline

    @classmethod
    def load(cls, settings: Settings, *, flip_average: bool | None = None) -> FacePipeline:
        """Verify the manifest and artifacts in the model directory, then build the pipeline.

        ``flip_average`` overrides the setting (``embed`` needs dlib's plain encodings).
        """
        model_dir = settings.models_path
        return cls.from_manifest(model_dir, load_manifest(model_dir), settings, flip_average=flip_average)

    def warm_up(self) -> None:
        blank = np.zeros((120, 160, 3), dtype=np.uint8)
        self.detector.detect(blank)
        self.encoder.warm_up()

    def close(self) -> None:
        self.detector.close()

    def upsample_for(self, shape: tuple[int, ...]) -> int:
        """dlib's pyramid_up once for small photos (so ~40 px faces are found), never for big frames."""
        return 1 if max(shape[0], shape[1]) < self.upsample_below_px else 0

    def detect(self, rgb: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Detection]:
        timer = timer or StageTimer()
        with timer.stage("detect"):
            return self.detector.detect(rgb, upsample=self.upsample_for(rgb.shape), min_size=self.min_face_px)

    def faces_rgb(self, rgb: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Face]:
        timer = timer or StageTimer()
        detections = self.detect(rgb, timer)
        if not detections:
            return []
        with timer.stage("landmarks"):
            points = [self.landmarks.predict(rgb, d.box) for d in detections]
        with timer.stage("align"):
            chips = np.stack(
                [extract_chip(rgb, p, size=self.encoder.chip_size, padding=self.chip_padding) for p in points]
            )
        with timer.stage("encode"):
            embeddings = self.encode(chips)
        points68: list[NDArray[np.float64] | None] = [None] * len(detections)
        if self.landmarks68 is not None:
            with timer.stage("landmarks68"):
                points68 = [self.landmarks68.predict(rgb, d.box) for d in detections]
        return [
            Face(d.box, d.score, p, c, e, p68)
            for d, p, c, e, p68 in zip(detections, points, chips, embeddings, points68, strict=True)
        ]

    def encode(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Encode aligned chips; with flip averaging, one batch holds the chips and their mirrors."""
        if not self.flip_average:
            return self.encoder.encode(chips)
        both = self.encoder.encode(np.concatenate([chips, chips[:, :, ::-1]]))
        n = len(chips)
        return ((both[:n] + both[n:]) * 0.5).astype(np.float32)

    def faces(self, bgr: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Face]:
        """Every face in an OpenCV (BGR) image, best detection first."""
        timer = timer or StageTimer()
        with timer.stage("convert"):
            rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        return self.faces_rgb(rgb, timer)
