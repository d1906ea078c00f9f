"""LivenessModel: one tracked face over a burst in, live / spoof / undetermined out.

``measure`` computes every cue of the burst:
- image cues (``liveness_image``): a border around the face that moves with it, moire, glare,
  pixel-identical frames, a face that never moved;
- the 5-point geometry features and the simulated-trained MLP's P(live) on them
  (``geometry_p_live``, recorded; ``models/train_liveness.py``);
- MediaPipe's 468-point mesh on each frame's detection (``face_mesh``), summarised over the
  burst by ``mesh_cues.burst_geometry`` (homography and rigid residuals, rotation, blink);
- with the operator's PAD model imported, MiniFASNet's per-frame p_real fused over the burst.

``judge`` then decides with one logistic regression (``FusionModel``) over a few of them, fitted
on the real dev captures by ``models/fit_liveness_fusion.py`` and carried by the manifest's
liveness entry (``fusion``: a ``with_pad`` and a ``without_pad`` variant, each with its weights
and live threshold): "live" at or above the threshold, "spoof" below. The reject cues in the
fusion's ``rejects`` (moire, identical frames, motionless) make a burst a spoof on their own;
the border cue is one of the regression's features instead (it holds on ~40% of real live bursts).
"undetermined" with hint "turn_head" is left for bursts that cannot be judged: a single frame, or
too few frames where the mesh found the face when the variant reads the mesh. Without a fitted
fusion every burst is "undetermined" (driver "uncalibrated"), and the load logs an error.

With the operator's 68-point landmarks (FACEGATE_LIVENESS_LANDMARKS68) the eyes' blink over the
burst is recorded in the cues (``blink_cues``); it does not take part in the verdict.

``drivers`` names what decided: the reject cues that fired, or the two features whose terms
pushed the logit most towards the outcome.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.vision import liveness_image as image_cues
from app.vision.face_mesh import FaceMesh, roi_from_box
from app.vision.liveness_cues import (
    FEATURE_NAMES,
    blink_depth,
    eye_aspect_ratio,
    eye_centres,
    five_points,
    geometry_features,
    motionless,
)
from app.vision.liveness_types import LivenessResult, TrackedFace
from app.vision.manifest import REBUILD_HINT, Manifest, ModelArtifactError
from app.vision.mesh_cues import burst_geometry
from app.vision.pad import MANIFEST_KEY as PAD_KEY
from app.vision.pad import PadModel
from app.vision.runtime import create_session, warm_up

log = logging.getLogger(__name__)

MIN_MESH_FRAMES = 3  # frames with a mesh a burst needs to be weighed
# MiniFASNet scores every PAD_STRIDE-th frame of a burst (the first included): the pair costs ~7 ms
# of CPU a frame, and on the real captures its fused score parts live from attacks by a wide margin
# (lowest live burst 0.51, highest attack 0.04). The fit records the stride it measured with.
PAD_STRIDE = 2

REJECT_CUES = ("border", "moire", "glare", "identical_frames", "motionless")
# The cues whose rule may call a burst a spoof; every cue is measured and recorded either way.
# Audited on the real captures (``facegate eval liveness --cues``, ``evaluation/liveness_real``):
# - glare holds on 6 of 81 NUAA live bursts (faces overexposed by office lights) and on no real
#   attack: off.
# - border holds on 40.7% of real live bursts (76.5% of NUAA's: desks, walls and the head's own
#   outline around a face that barely moves) and on 65% of real prints and all screen replays.
#   As a veto it kept 148 of 364 live bursts out; it is now a feature of the fusion instead
#   (``cue_border_frames``), weighed against the texture or the mesh geometry.
# - moire, identical frames and motionless never hold on a real live burst: they stay vetoes.
DEFAULT_REJECTS: tuple[str, ...] = ("moire", "identical_frames", "motionless")


@dataclass(frozen=True)
class ImageCueLimits:
    """When a reject-only image cue fires (each judged over the burst's frames), and which may reject."""

    # Straight edges on all 4 sides of the face: 3 fire on real scenes (stage sets, door frames).
    border_min_sides: int = 4
    border_min_frames: float = 0.5  # ... in at least half the frames
    # ... and moving with the face: each side that can tell a static scene edge from an attached
    # rim keeps its line at one face-relative place in this fraction of the frames (a live face
    # framed by scenery or its own silhouette loses it as it moves; a face that barely moved
    # scores 1.0, so a picture held still stays rejected). See ``liveness_image.border_motion``.
    border_min_follow: float = 0.7
    moire_min_peak: float = 5.5  # ln power over surroundings; natural faces stay near 3
    glare_min_fraction: float = 0.04  # largest saturated blob, as a fraction of the face box (off by default)
    identical_min_fraction: float = 0.5  # consecutive frame pairs identical to the pixel
    rejects: tuple[str, ...] = DEFAULT_REJECTS  # the cues (of ``REJECT_CUES``) that take part in the verdict

    def __post_init__(self) -> None:
        for name in ("border_min_frames", "border_min_follow", "identical_min_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"ImageCueLimits.{name} is a fraction of the burst, in (0, 1]")
        if not 1 <= self.border_min_sides <= 4:
            raise ValueError("ImageCueLimits.border_min_sides counts the face's sides, 1 to 4")
        unknown = set(self.rejects) - set(REJECT_CUES)
        if unknown:
            raise ValueError(f"ImageCueLimits.rejects: unknown cues {sorted(unknown)}; known: {REJECT_CUES}")


def cue_rules(cues: Mapping[str, float], limits: ImageCueLimits) -> dict[str, bool]:
    """Whether each reject cue's rule holds on a burst's measured cues, whether or not it may reject."""
    return {
        # Only a border that moves with the face, or around a face too still to tell: scenery stays put.
        "border": cues["border_frames"] >= limits.border_min_frames
        and cues.get("border_follow", 1.0) >= limits.border_min_follow,
        "moire": cues["moire_peak"] >= limits.moire_min_peak,
        "glare": cues["glare_fraction"] >= limits.glare_min_fraction,
        "identical_frames": cues["identical_fraction"] >= limits.identical_min_fraction,
        "motionless": cues.get("motionless", 0.0) >= 1.0,
    }


def fired_cues(cues: Mapping[str, float], limits: ImageCueLimits) -> list[str]:
    """The cues that reject this burst: those of ``limits.rejects`` whose rule holds."""
    rules = cue_rules(cues, limits)
    return [name for name in REJECT_CUES if name in limits.rejects and rules[name]]


def blink_cues(track: Sequence[TrackedFace]) -> dict[str, float]:
    """The eyes over the burst, when every frame has 68-point landmarks (the operator's option).

    Recorded with the verdict for review, not used in it: on the only real footage (faces of
    80-96 px) a "blink" deeper than 0.3 shows in as many attack bursts as live ones (~5%).
    """
    points = [f.landmarks68 for f in track]
    if not points or any(p is None for p in points):
        return {}
    ear = eye_aspect_ratio(np.stack([np.asarray(p, dtype=np.float64) for p in points if p is not None]))
    return {"eye_aspect_ratio_open": float(np.percentile(ear, 80)), "blink_depth": blink_depth(ear)}


def _logit(p: float, eps: float = 1e-4) -> float:
    q = min(max(p, eps), 1.0 - eps)
    return math.log(q / (1.0 - q))


@dataclass(frozen=True)
class FusionModel:
    """One logistic regression over burst features: P(live) = sigmoid(w . (x - mean) / scale + b).

    Fitted on the real dev bursts by ``models/fit_liveness_fusion.py``; the manifest's liveness
    entry carries one per variant (``with_pad``, ``without_pad``) under ``fusion``.
    """

    features: tuple[str, ...]
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    coef: NDArray[np.float64]
    intercept: float
    threshold: float  # P(live) at or above which a burst is live

    @classmethod
    def from_details(cls, spec: Mapping[str, Any]) -> FusionModel:
        features = tuple(str(f) for f in spec["features"])
        arrays = [np.asarray(spec[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(features),) for a in arrays) or not np.all(arrays[1] > 0):
            raise ModelArtifactError(f"the liveness fusion for {list(features)} is malformed; {REBUILD_HINT}")
        unknown = set(features) - set(FUSION_FEATURES)
        if unknown:
            raise ModelArtifactError(
                f"the liveness fusion uses features {sorted(unknown)} this code does not compute; "
                f"{REBUILD_HINT}"
            )
        return cls(
            features, arrays[0], arrays[1], arrays[2], float(spec["intercept"]), float(spec["threshold"])
        )

    def vector(self, cues: Mapping[str, float]) -> NDArray[np.float64]:
        return np.array([cues[f] for f in self.features], dtype=np.float64)

    def contributions(self, cues: Mapping[str, float]) -> NDArray[np.float64]:
        """Each feature's term in the logit (positive: towards live)."""
        return np.asarray(self.coef * (self.vector(cues) - self.mean) / self.scale, dtype=np.float64)

    def p_live(self, cues: Mapping[str, float]) -> float:
        z = float(self.contributions(cues).sum()) + self.intercept
        return 1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0)))


class LivenessModel:
    def __init__(
        self,
        session: ort.InferenceSession,
        details: dict[str, Any],
        limits: ImageCueLimits | None = None,
        *,
        mesh: FaceMesh | None = None,
        pad: PadModel | None = None,
    ) -> None:
        features = list(details["input"]["features"])
        if features != list(FEATURE_NAMES):
            raise ModelArtifactError(
                f"the liveness model was trained on features {features}, this code computes "
                f"{list(FEATURE_NAMES)}; {REBUILD_HINT}"
            )
        self.session = session
        self.input_name = str(details["input"]["name"])
        self.feature_mean = np.asarray(details["feature_mean"], dtype=np.float32)
        self.limits = limits or ImageCueLimits(
            rejects=tuple(details.get("fusion", {}).get("rejects", DEFAULT_REJECTS))
        )
        self.mesh = mesh
        self.pad = pad
        fusion = details.get("fusion")
        self.fusion: FusionModel | None = None
        if fusion is not None:
            variant = "with_pad" if pad is not None else "without_pad"
            if variant not in fusion:
                raise ModelArtifactError(f"the liveness entry has no {variant} fusion; {REBUILD_HINT}")
            self.fusion = FusionModel.from_details(fusion[variant])
            if mesh is None and any(f in MESH_FEATURES for f in self.fusion.features):
                raise ModelArtifactError(f"the liveness fusion needs the face mesh; {REBUILD_HINT}")
        self.min_mesh_frames = int(details.get("fusion", {}).get("min_mesh_frames", MIN_MESH_FRAMES))
        self.pad_stride = int(details.get("fusion", {}).get("pad_stride", PAD_STRIDE))

    @property
    def threshold(self) -> float:
        """The P(live) at or above which a burst is live (NaN before the fusion is calibrated)."""
        return self.fusion.threshold if self.fusion is not None else math.nan

    @classmethod
    def from_manifest(
        cls,
        model_dir: Path,
        manifest: Manifest,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 1,
        detector: str | None = None,
        use_pad: bool = True,
    ) -> LivenessModel:
        """The judge with the manifest's mesh and, when imported (and ``use_pad``), the PAD pair.

        ``detector``: the manifest model whose boxes the tracked faces carry (the PAD crop's box
        scale); default YuNet when built (the fusion and sface profiles), else dlib's detector.
        """
        # A 1-row MLP gains nothing from more threads; keep it off the cores detection needs.
        session = create_session(
            model_dir / manifest.entry("liveness").file,
            providers=providers,
            intra_op_threads=min(intra_op_threads, 1),
        )
        details = manifest.details("liveness")
        if "fusion" not in details:
            # Fail safe, and loudly: no burst is live until the fusion is fitted for these artifacts.
            log.error(
                "%s: the liveness entry has no fusion calibration (models/calibration/liveness.json was "
                "fitted on other liveness or mesh artifacts): every burst is undetermined; rerun "
                "`python -m models.fit_liveness_fusion`, then `facegate models build`",
                model_dir,
            )
        mesh = None
        if "mesh" in manifest.models:
            mesh = FaceMesh(
                create_session(
                    model_dir / manifest.entry("mesh").file,
                    providers=providers,
                    intra_op_threads=min(intra_op_threads, 1),
                ),
                manifest.details("mesh"),
            )
            mesh.warm_up()
        pad = None
        if use_pad and PAD_KEY in manifest.models:
            box_detector = detector or ("yunet" if "yunet" in manifest.models else "detector")
            pad = PadModel.from_manifest(
                model_dir, manifest, detector=box_detector, providers=providers, intra_op_threads=1
            )
        model = cls(session, details, mesh=mesh, pad=pad)
        warm_up(session, {model.input_name: model.feature_mean.reshape(1, -1)})
        return model

    def close(self) -> None:
        if self.pad is not None:
            self.pad.close()

    def p_live_geometry(self, features: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """The 5-point geometry MLP's P(live) (trained on simulated bursts) for (N, K) feature rows."""
        rows = np.ascontiguousarray(np.atleast_2d(features), dtype=np.float32)
        out = self.session.run(None, {self.input_name: rows})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def image_cues(self, track: Sequence[TrackedFace]) -> dict[str, float]:
        borders: list[image_cues.BorderFrame] = []
        moire, glare = [], []
        lefts, rights = eye_centres(five_points(np.stack([f.landmarks for f in track]).astype(np.float64)))
        for face, left, right in zip(track, lefts, rights, strict=True):
            borders.append(
                image_cues.border_frame(
                    face.frame, face.box, (float(left[0]), float(left[1])), (float(right[0]), float(right[1]))
                )
            )
            moire.append(image_cues.moire_peak(face.frame, face.box))
            glare.append(image_cues.glare_fraction(face.frame, face.box))
        limits = self.limits
        sides = [b.lines.sides for b in borders]
        motion = image_cues.border_motion(borders, limits.border_min_sides)
        return {
            "border_sides": float(np.median(sides)),
            "border_frames": float(np.mean([s >= limits.border_min_sides for s in sides])),
            "border_follow": motion.follow,
            "border_shift": motion.shift,
            "border_decisive": float(motion.decisive_sides),
            "moire_peak": float(np.median(moire)),
            "glare_fraction": float(np.median(glare)),
            "identical_fraction": image_cues.identical_fraction(
                [f.frame for f in track], [f.box for f in track]
            ),
        }

    def mesh_cues(self, track: Sequence[TrackedFace]) -> dict[str, float]:
        """The mesh on each frame's detection (eye line upright), geometry over the frames it found."""
        if self.mesh is None:
            return {}
        mesh = self.mesh
        lefts, rights = eye_centres(five_points(np.stack([f.landmarks for f in track]).astype(np.float64)))
        patches, affines = [], []
        for face, left, right in zip(track, lefts, rights, strict=True):
            # Image-left eye first; the dlib order starts with the subject's left eye (image right).
            eyes = np.array([right, left]) if right[0] < left[0] else np.array([left, right])
            patch, affine = mesh.crop_roi(face.frame, roi_from_box(face.box, eyes, mesh.scale))
            patches.append(patch[:, :, ::-1])  # BGR frame, RGB network: flip the small patch only
            affines.append(affine)
        raw, scores = mesh.run(np.ascontiguousarray(np.stack(patches)))
        keep = [i for i in range(len(track)) if scores[i] >= mesh.threshold]
        out = {"mesh_frames": float(len(keep))}
        if len(keep) < self.min_mesh_frames:
            return out
        points = np.stack([mesh.to_image(raw[i], affines[i]) for i in keep])
        geometry = burst_geometry(points)
        out.update({f"mesh_{k}": float(v) for k, v in geometry.items()})
        return out

    def pad_cues(self, track: Sequence[TrackedFace]) -> dict[str, float]:
        if self.pad is None:
            return {}
        scored = track[:: self.pad_stride]
        scores = self.pad.score_frames([f.frame for f in scored], [f.box for f in scored])
        p = self.pad.fuse(scores)
        return {"pad_p_real": p, "pad_p_real_min": float(np.min(scores)), "pad_frames": float(len(scored))}

    def measure(self, track: Sequence[TrackedFace], *, every_cue: bool = False) -> dict[str, float]:
        """The cues of a burst of at least 2 frames, and the fusion's derived features: all of them
        with ``every_cue`` (or before a fusion is fitted), else those the verdict reads or records."""
        cues: dict[str, float] = {"frames": float(len(track))}
        landmarks = np.stack([np.asarray(f.landmarks, dtype=np.float64) for f in track])
        t = np.array([f.t for f in track], dtype=np.float64)
        cues.update(self.image_cues(track))
        cues["motionless"] = float(motionless(landmarks, t))
        cues.update(blink_cues(track))
        try:
            features = geometry_features(landmarks, t)
        except ValueError:  # degenerate landmarks (eye centres on one pixel): a neutral geometry score
            cues["geometry_p_live"] = 0.5
        else:
            cues.update({name: float(v) for name, v in zip(FEATURE_NAMES, features, strict=True)})
            cues["motion_snr"] = 10.0 ** cues["log_motion_snr"]
            cues["geometry_p_live"] = float(self.p_live_geometry(features)[0])
        if every_cue or self.fusion is None or any(f in MESH_FEATURES for f in self.fusion.features):
            cues.update(self.mesh_cues(track))  # ~3-5 ms a frame: only where the verdict reads it
        cues.update(self.pad_cues(track))
        cues.update(derived_features(cues))
        return cues

    def judge(self, track: Sequence[TrackedFace]) -> LivenessResult:
        """The verdict on one face tracked through a burst (frames in capture order)."""
        if len(track) < 2:
            return LivenessResult(
                "undetermined", None, {"frames": float(len(track))}, ["frames"], hint="turn_head"
            )
        cues = self.measure(track)
        if self.fusion is None:
            return LivenessResult("undetermined", None, cues, ["uncalibrated"])
        rejects = fired_cues(cues, self.limits)
        missing = [f for f in self.fusion.features if f not in cues]
        if missing:
            # Too few frames where the mesh found a face: nothing to weigh (an image cue may still reject).
            if rejects:
                return LivenessResult("spoof", None, cues, rejects)
            why = ["mesh_frames"] if any(f in MESH_FEATURES for f in missing) else missing
            return LivenessResult("undetermined", None, cues, why, hint="turn_head")
        p = self.fusion.p_live(cues)
        cues["p_live"] = p
        if rejects:
            return LivenessResult("spoof", p, cues, rejects)
        live = p >= self.fusion.threshold
        return LivenessResult("live" if live else "spoof", p, cues, self._drivers(cues, live))

    def _drivers(self, cues: Mapping[str, float], live: bool) -> list[str]:
        """The two features whose terms pushed the logit most towards the outcome."""
        fusion = self.fusion
        if fusion is None:
            return ["p_live"]
        terms = fusion.contributions(cues) * (1.0 if live else -1.0)
        order = [int(i) for i in np.argsort(-terms) if terms[i] > 0]
        return [fusion.features[i] for i in order[:2]] or ["p_live"]


def derived_features(cues: Mapping[str, float]) -> dict[str, float]:
    """The fusion's inputs computed from the raw cues (logs of residuals, logits of probabilities)."""
    out: dict[str, float] = {"geometry_logit": _logit(cues.get("geometry_p_live", 0.5))}
    for name in ("border_frames", "border_follow", "moire_peak", "glare_fraction"):
        if name in cues:
            out[f"cue_{name}"] = float(cues[name])
    if "mesh_parallax_ratio" in cues:
        out["log_parallax_ratio"] = math.log(max(cues["mesh_parallax_ratio"], 1e-6))
        out["log_parallax_excess"] = math.log(cues["mesh_parallax_excess"] + 1e-4)
        out["log_homography_residual"] = math.log(cues["mesh_homography_residual"] + 1e-4)
        out["log_rigid_residual"] = math.log(cues["mesh_rigid_residual"] + 1e-4)
        out["mesh_rotation"] = float(cues["mesh_rotation_deg"])
        out["mesh_blink"] = float(cues["mesh_blink_depth"])
    if "pad_p_real" in cues:
        out["pad_logit"] = _logit(cues["pad_p_real"])
    return out


MESH_FEATURES = (
    "log_parallax_ratio",
    "log_parallax_excess",
    "log_homography_residual",
    "log_rigid_residual",
    "mesh_rotation",
    "mesh_blink",
)
# The built artifacts whose outputs a fusion feature is computed from (the rest are this code's
# image cues, or the operator's PAD model, which the manifest does not build).
FEATURE_ARTIFACTS = {"geometry_logit": "liveness", **{f: "mesh" for f in MESH_FEATURES}}
FUSION_FEATURES = (
    "geometry_logit",
    "cue_border_frames",
    "cue_border_follow",
    "cue_moire_peak",
    "cue_glare_fraction",
    *MESH_FEATURES,
    "pad_logit",
)


def fusion_artifacts(fusion: Mapping[str, Any]) -> tuple[str, ...]:
    """The manifest artifacts a fitted fusion (every variant) reads, sorted: the ones it must be
    fitted on. The simulated-trained MLP (``liveness``) counts only where ``geometry_logit`` is a
    feature; its bytes differ between CPUs (BLAS summation order in training), and a fusion that
    does not read it must not be dropped for that."""
    names = {
        FEATURE_ARTIFACTS[f]
        for variant in ("with_pad", "without_pad")
        if isinstance(spec := fusion.get(variant), Mapping)
        for f in spec.get("features", ())
        if f in FEATURE_ARTIFACTS
    }
    return tuple(sorted(names))
