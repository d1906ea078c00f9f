"""FacePipeline: a decoded BGR image in, every face out (box, score, landmarks, chip, embedding).

One pipeline runs one profile (``app.vision.profiles``): its detector, alignment points, chips and
encoders. Built once at start-up from the verified manifest: sessions created by the runtime
wrapper and warmed up, so the first door frame is as fast as the thousandth. Embeddings come out
ready for the profile's metric (unit length for cosine; the fusion's scaled two-part vector), so
everything downstream compares them as stored.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from app.gallery.metric import unit_rows
from app.settings import Settings
from app.vision.align import extract_chip
from app.vision.align_sface import sface_chip
from app.vision.detector import Detection, FaceDetector
from app.vision.encoder import FaceEncoder
from app.vision.landmarks import LandmarkPredictor
from app.vision.liveness import LivenessModel
from app.vision.manifest import Manifest, ModelArtifactError, load_manifest
from app.vision.profiles import FUSION_DLIB_SQUARED_L2, FUSION_SFACE_COSINE, ProfileSpec, profile_spec
from app.vision.runtime import create_session
from app.vision.yunet import RELIABLE_FACE_PX, YuNetDetector

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Face:
    box: Box  # left, top, right, bottom; inclusive (dlib's rectangle)
    score: float  # detector confidence
    landmarks: NDArray[np.float64]  # (5, 2) x, y in dlib's 5-point order (liveness geometry, dlib chip)
    chip: NDArray[np.uint8]  # aligned RGB chip
    embedding: NDArray[np.float32]  # (dim,) in the profile's metric space: 128 (sface, dlib), 256 (fusion)
    landmarks68: NDArray[np.float64] | None = None  # (68, 2) when FACEGATE_LIVENESS_LANDMARKS68 is on
    points: NDArray[np.float64] | None = None  # the profile's alignment points (YuNet's 5 for sface, fusion)

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1


def encoding_version(encoder_version: str, flip_average: bool) -> str:
    """The version stored with every encoding: averaged encodings live in a slightly different
    space from plain ones, so the two must never be compared. The encoder's version names the
    profile too (``dlib-resnet-v1:...``, ``sface-2021dec:...``)."""
    return encoder_version + ("+flipavg" if flip_average else "")


def profile_encoding_version(manifest: Manifest, profile: str, flip_average: bool) -> str:
    """The template version a profile writes, read from the manifest without loading any model."""
    return encoding_version(_encoder_version(manifest, profile_spec(profile)), flip_average)


def _encoder_version(manifest: Manifest, spec: ProfileSpec) -> str:
    """The encoder's version; the fusion's names both artifacts (and its own recipe, v1)."""
    if spec.dlib_encoder is None:
        return manifest.entry(spec.encoder).version
    parts = [manifest.entry(name).sha256[:12] for name in spec.encoders]
    return f"{spec.name}-v1:" + "+".join(parts)


@dataclass(frozen=True)
class _Located:
    """One image's faces before encoding."""

    detections: list[Detection]
    points: list[NDArray[np.float64]]  # dlib's five
    align_points: list[NDArray[np.float64]]
    chips: list[NDArray[np.uint8]]  # the (first) encoder's
    dlib_chips: list[NDArray[np.uint8]]  # the fusion's second encoder's; else empty
    points68: list[NDArray[np.float64] | None]


def _run_encoder(encoder: FaceEncoder, chips: NDArray[np.uint8], flip_average: bool) -> NDArray[np.float32]:
    """One encoder over chips; with flip averaging, chips and mirrors in one batch, averaged."""
    if not flip_average:
        return encoder.encode(chips)
    both = encoder.encode(np.concatenate([chips, chips[:, :, ::-1]]))
    n = len(chips)
    return ((both[:n] + both[n:]) * 0.5).astype(np.float32)


def _detector_points(detection: object, dlib_points: NDArray[np.float64]) -> NDArray[np.float64]:
    """A detection's own landmarks when its detector gives them (YuNet), else dlib's five."""
    own = getattr(detection, "landmarks", None)
    return dlib_points if own is None else np.asarray(own, dtype=np.float64)


def calibration_prior(
    encoder_details: dict[str, object], version: str, profile: str
) -> dict[str, object] | None:
    """The manifest's dev-data calibration for exactly this encoding (profile, flip averaging)."""
    calibrations = encoder_details.get("calibration")
    if not isinstance(calibrations, dict) or not isinstance(calibrations.get(profile), dict):
        return None
    suffix = "flipavg" if version.endswith("+flipavg") else "plain"
    chosen = calibrations[profile].get(suffix)
    return chosen if isinstance(chosen, dict) else None


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
        detector: FaceDetector | YuNetDetector,
        landmarks: LandmarkPredictor,
        encoder: FaceEncoder,
        *,
        dlib_encoder: FaceEncoder | None = None,
        profile: ProfileSpec | None = None,
        detect_scale: float = 1.0,
        detect_max_side: int = 0,
        smallest_face_px: int = RELIABLE_FACE_PX,
        upsample_below_px: int = 600,
        min_face_px: int = 0,
        chip_padding: float = 0.25,
        flip_average: bool = False,
        model_version: str = "",
        liveness: LivenessModel,
        landmarks68: LandmarkPredictor | None = None,
    ) -> None:
        self.profile = profile or profile_spec("dlib")
        if isinstance(detector, YuNetDetector) != (self.profile.detector == "yunet"):
            raise ValueError(f"profile {self.profile.name} cannot run detector {type(detector).__name__}")
        self.detector = detector
        self.detect_scale = detect_scale
        self.detect_max_side = detect_max_side
        # Below this factor a face of ``smallest_face_px`` would shrink under what YuNet finds.
        self.min_detect_scale = min(1.0, RELIABLE_FACE_PX / max(smallest_face_px, 1))
        self.liveness = liveness
        self.landmarks = landmarks
        self.landmarks68 = landmarks68  # for the blink cue only; alignment uses the 5 points
        self.encoder = encoder
        if (dlib_encoder is None) != (self.profile.dlib_encoder is None):
            raise ValueError(
                f"profile {self.profile.name} needs exactly its encoders {self.profile.encoders}"
            )
        self.dlib_encoder = dlib_encoder
        self.upsample_below_px = upsample_below_px
        self.min_face_px = min_face_px
        self.chip_padding = chip_padding
        self.flip_average = flip_average
        self.model_version = encoding_version(model_version, flip_average)
        # The encoder's dev-data impostor tail from the manifest (app.gallery.calibration.prior_model).
        self.calibration_prior: dict[str, object] | None = None

    @classmethod
    def from_manifest(
        cls,
        model_dir: Path,
        manifest: Manifest,
        settings: Settings,
        *,
        flip_average: bool | None = None,
        profile: str | None = None,
    ) -> FacePipeline:
        def session(name: str):  # type: ignore[no-untyped-def]
            return create_session(
                model_dir / manifest.entry(name).file,
                providers=settings.onnx_providers,
                intra_op_threads=settings.onnx_intra_op_threads,
                inter_op_threads=settings.onnx_inter_op_threads,
            )

        spec = profile_spec(profile or settings.profile)
        encoder_details = manifest.details(spec.encoder)
        dlib_encoder = None
        if spec.dlib_encoder is not None:
            dlib_encoder = FaceEncoder(
                session(spec.dlib_encoder),
                manifest.details(spec.dlib_encoder),
                max_batch=settings.encoder_max_batch,
            )
        if spec.detector == "yunet":
            detector: FaceDetector | YuNetDetector = YuNetDetector(
                session("yunet"), manifest.details("yunet")
            )
        else:
            detector = FaceDetector(session("detector"), manifest.details("detector"))
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
            detector,
            LandmarkPredictor.from_npz(model_dir / manifest.entry("landmarks").file),
            FaceEncoder(session(spec.encoder), encoder_details, max_batch=settings.encoder_max_batch),
            dlib_encoder=dlib_encoder,
            profile=spec,
            detect_scale=settings.detect_scale,
            detect_max_side=settings.detect_max_side,
            smallest_face_px=min(settings.recognize_min_face_px, settings.enrol_min_face_px),
            upsample_below_px=settings.detect_upsample_below_px,
            min_face_px=settings.detect_min_face_px,
            chip_padding=float(manifest.details("encoder")["chip"]["padding"]),
            flip_average=settings.flip_average_for(spec.name) if flip_average is None else flip_average,
            model_version=_encoder_version(manifest, spec),
            liveness=LivenessModel.from_manifest(
                model_dir,
                manifest,
                providers=settings.onnx_providers,
                intra_op_threads=settings.onnx_intra_op_threads,
                detector=spec.detector,  # whose boxes the PAD crop scales
            ),
            landmarks68=landmarks68,
        )
        pipeline.calibration_prior = calibration_prior(encoder_details, pipeline.model_version, spec.name)
        pipeline.warm_up()
        return pipeline

    @classmethod
    def load(
        cls, settings: Settings, *, flip_average: bool | None = None, profile: str | None = None
    ) -> FacePipeline:
        """Verify the manifest and artifacts in the model directory, then build the pipeline.

        ``flip_average`` overrides the setting (``embed`` needs dlib's plain encodings) and
        ``profile`` the configured profile.
        """
        model_dir = settings.models_path
        return cls.from_manifest(
            model_dir, load_manifest(model_dir), settings, flip_average=flip_average, profile=profile
        )

    @property
    def metric(self) -> str:
        return self.profile.metric

    @property
    def dim(self) -> int:
        """The stored template's size (the fusion's holds both encodings)."""
        return self.encoder.dim + (self.dlib_encoder.dim if self.dlib_encoder is not None else 0)

    def warm_up(self) -> None:
        blank = np.zeros((480, 640, 3), dtype=np.uint8)
        self.detect(blank)
        self.encoder.warm_up()
        if self.dlib_encoder is not None:
            self.dlib_encoder.warm_up()

    def close(self) -> None:
        self.detector.close()
        self.liveness.close()

    def upsample_for(self, shape: tuple[int, ...]) -> int:
        """dlib's pyramid_up once for small photos (so ~40 px faces are found), never for big frames."""
        return 1 if max(shape[0], shape[1]) < self.upsample_below_px else 0

    def detect_scale_for(self, shape: tuple[int, ...]) -> float:
        """YuNet's scale for a frame of this shape: ``detect_scale``, or where the longer side is over
        ``detect_max_side``, 1/n for the smallest whole n that fits it, but never below
        ``min_detect_scale`` (faces are then refined at full resolution, ``YuNetDetector.detect``).

        Whole factors only: a reduction must at least halve each side to pay for the refinement
        (measured on an 853x480 portrait: YuNet at 0.75 plus the refinement took 10.4 ms against
        8.6 ms on the whole frame), and an integer area resize is the cheap one.
        """
        longer = max(shape[0], shape[1])
        if not self.detect_max_side or longer * self.detect_scale <= self.detect_max_side:
            return self.detect_scale
        factor = math.ceil(longer / self.detect_max_side)
        return min(self.detect_scale, max(1.0 / factor, self.min_detect_scale))

    def detect(self, rgb: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Detection]:
        timer = timer or StageTimer()
        with timer.stage("detect"):
            if isinstance(self.detector, YuNetDetector):
                scale = self.detect_scale_for(rgb.shape)
                return list(self.detector.detect(rgb, scale=scale, min_size=self.min_face_px))
            return self.detector.detect(rgb, upsample=self.upsample_for(rgb.shape), min_size=self.min_face_px)

    def faces_rgb(self, rgb: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Face]:
        return self.faces_many([rgb], timer)[0]

    def faces_many(
        self, rgbs: Sequence[NDArray[np.uint8]], timer: StageTimer | None = None
    ) -> list[list[Face]]:
        """Every face of several RGB images (a burst's frames); the chips of all of them go
        through each encoder in one batch (on a GPU, one run per burst)."""
        timer = timer or StageTimer()
        located = [self._locate(rgb, timer) for rgb in rgbs]
        chips = [c for loc in located for c in loc.chips]
        if not chips:
            return [[] for _ in rgbs]
        dlib_chips = [c for loc in located for c in loc.dlib_chips]
        with timer.stage("encode"):
            embeddings = self.encode(np.stack(chips), np.stack(dlib_chips) if dlib_chips else None)
        out: list[list[Face]] = []
        row = 0
        for loc in located:
            n = len(loc.detections)
            out.append(
                [
                    Face(d.box, d.score, p, c, e, p68, a)
                    for d, p, c, e, p68, a in zip(
                        loc.detections,
                        loc.points,
                        loc.chips,
                        embeddings[row : row + n],
                        loc.points68,
                        loc.align_points,
                        strict=True,
                    )
                ]
            )
            row += n
        return out

    def _locate(self, rgb: NDArray[np.uint8], timer: StageTimer) -> _Located:
        """Detection, landmarks and chips of one image: everything but the encoders."""
        detections = self.detect(rgb, timer)
        if not detections:
            return _Located([], [], [], [], [], [])
        with timer.stage("landmarks"):
            points = self.landmarks.predict_many(rgb, [d.box for d in detections])
        # The profile's alignment points: YuNet's own five, or dlib's five for dlib's chip.
        align_points = [_detector_points(d, p) for d, p in zip(detections, points, strict=True)]
        dlib_chips: list[NDArray[np.uint8]] = []
        with timer.stage("align"):
            if self.profile.detector != "yunet" or self.dlib_encoder is not None:
                pad = self.chip_padding
                dlib_chips = [extract_chip(rgb, p, size=150, padding=pad) for p in points]
            if self.profile.detector == "yunet":
                chips = [sface_chip(rgb, a) for a in align_points]
            else:
                chips, dlib_chips = dlib_chips, []
        points68: list[NDArray[np.float64] | None] = [None] * len(detections)
        if self.landmarks68 is not None:
            with timer.stage("landmarks68"):
                points68 = [self.landmarks68.predict(rgb, d.box) for d in detections]
        return _Located(list(detections), points, align_points, chips, dlib_chips, points68)

    def encode(
        self, chips: NDArray[np.uint8], dlib_chips: NDArray[np.uint8] | None = None
    ) -> NDArray[np.float32]:
        """Encode aligned chips into stored templates (the profile's metric space).

        With flip averaging, one batch holds the chips and their mirrors. Cosine encodings are
        unit vectors (after averaging); the fusion's are ``[sqrt(a) s, sqrt(2 b) d]`` for the unit
        SFace vector s and dlib's vector d of the same faces (``dlib_chips``), so that half the
        squared distance is ``a (1 - cos) + b L2^2``.
        """
        out = _run_encoder(self.encoder, chips, self.flip_average)
        if self.profile.metric == "l2":
            return out
        out = unit_rows(out)
        if self.dlib_encoder is None:
            return out
        if dlib_chips is None or len(dlib_chips) != len(chips):
            raise ValueError(f"profile {self.profile.name} encodes each face's dlib chip too")
        second = _run_encoder(self.dlib_encoder, dlib_chips, self.flip_average)
        fused = np.concatenate(
            [
                out * np.float32(np.sqrt(FUSION_SFACE_COSINE)),
                second * np.float32(np.sqrt(2 * FUSION_DLIB_SQUARED_L2)),
            ],
            axis=1,
        )
        return fused.astype(np.float32)

    def fuse(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        """One template-space vector for several encodings of one face (a burst's frames).

        The mean, put back on the profile's space: unit length for cosine; for the fusion, the
        SFace block back to its fixed length, dlib's block as it is (dlib's space is Euclidean).
        """
        mean: NDArray[np.float32] = np.asarray(embeddings, dtype=np.float32).mean(axis=0, dtype=np.float32)
        if self.profile.metric == "l2":
            return mean
        if self.dlib_encoder is None:
            unit: NDArray[np.float32] = unit_rows(mean[None])[0]
            return unit
        n = self.encoder.dim
        head = unit_rows(mean[None, :n])[0] * np.float32(np.sqrt(FUSION_SFACE_COSINE))
        return np.concatenate([head, mean[n:]]).astype(np.float32)

    def faces(self, bgr: NDArray[np.uint8], timer: StageTimer | None = None) -> list[Face]:
        """Every face in an OpenCV (BGR) image, best detection first."""
        return self.faces_burst([bgr], timer)[0]

    def faces_burst(
        self, bgrs: Sequence[NDArray[np.uint8]], timer: StageTimer | None = None
    ) -> list[list[Face]]:
        """Every face in each of several BGR images (a burst), encoded in one batch."""
        timer = timer or StageTimer()
        with timer.stage("convert"):
            rgbs = [np.ascontiguousarray(cv2.cvtColor(b, cv2.COLOR_BGR2RGB), dtype=np.uint8) for b in bgrs]
        return self.faces_many(rgbs, timer)
