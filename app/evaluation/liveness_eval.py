"""Liveness evaluation on real faces: rendered attacks, live video bursts and spoof stills.

Every burst goes through what the service does with a door request: each JPEG frame is decoded,
every face found by the real pipeline, the subject followed across the frames
(``app.vision.tracking.subject_track``), and the subject's observations judged by the liveness
model. The sets:

(a) attacks rendered from real photos (``liveness_render``): flat prints, bent prints and
    screens, one of each per photo;
(b) bona fide bursts: every window of N frames (N 5, 8, 12; every 2nd or 3rd frame) of the real
    video in ``videos/``, each frame re-encoded as JPEG as a door camera would;
(c) the stills in ``spoof/silent_face_antispoofing``, each sent as a burst of copies that differ
    only by camera noise (a smoke test: four scenes measure no error rate).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from app.evaluation.liveness_metrics import (
    Presentation,
    Rate,
    ThresholdPoint,
    acquisition_failures,
    apcer,
    bpcer,
    bpcer_at_apcer,
    called_spoof,
    undetermined,
    worst_apcer,
)
from app.evaluation.liveness_render import ATTACK_TYPES, RENDER_VERSION, Photo, encode_jpeg, render_attack
from app.vision.imageio import decode_image
from app.vision.liveness_types import LivenessResult, TrackedFace
from app.vision.pipeline import Face
from app.vision.tracking import follow_subject

log = logging.getLogger(__name__)

Judge = Callable[[Sequence[TrackedFace]], LivenessResult]
FacesFn = Callable[[NDArray[np.uint8]], list[Face]]
Kind = Literal["attack", "bona_fide", "still"]

VIDEO_NAME = "videos/face_recognition_short_hamilton_clip.mp4"
VIDEO_FPS = 29.97
LIVE_WINDOW_FRAMES = (5, 8, 12)
LIVE_WINDOW_STRIDES = (2, 3)  # a door client sending every 2nd or 3rd frame of a 30 fps camera
STILL_COPIES = 8
STILL_FPS = 10.0
# A burst whose subject is seen in fewer frames than this is a failure to acquire, not a verdict.
MIN_FACE_FRAMES = 3
DOOR_FRAME_LONG_SIDE = 640


@dataclass(frozen=True)
class BurstResult:
    kind: Kind
    label: str  # the attack type, "live", or for stills "live"/"spoof"
    source: str
    frames: int
    frames_with_face: int
    result: LivenessResult | None  # None: the face was not acquired (fewer than MIN_FACE_FRAMES)
    details: dict[str, float] = field(default_factory=dict)  # how an attack was rendered

    def presentation(self, operating_threshold: float | None = None) -> Presentation:
        """As a metric input. A "spoof" whose P(live) is at or above the model's own threshold was
        vetoed by a rule (a reject-only cue): a threshold sweep cannot accept it. An "undetermined"
        with a score was judged ambiguous by that score (the abstain rule leaves no score)."""
        if self.result is None:
            return Presentation(None, None)
        r = self.result
        vetoed = (
            r.outcome == "spoof"
            and r.score is not None
            and operating_threshold is not None
            and r.score >= operating_threshold
        )
        ambiguous = r.outcome == "undetermined" and r.score is not None
        return Presentation(r.outcome, r.score, vetoed, ambiguous)


@dataclass
class LivenessReport:
    attacks: list[BurstResult] = field(default_factory=list)
    live: list[BurstResult] = field(default_factory=list)
    stills: list[BurstResult] = field(default_factory=list)
    photos_without_face: list[str] = field(default_factory=list)
    operating_threshold: float | None = None  # the model's own P(live) threshold, when known

    def attacks_by_type(self) -> dict[str, list[Presentation]]:
        return {
            t: [b.presentation(self.operating_threshold) for b in self.attacks if b.label == t]
            for t in ATTACK_TYPES
        }

    @property
    def live_presentations(self) -> list[Presentation]:
        return [b.presentation(self.operating_threshold) for b in self.live]

    def apcer_by_type(self) -> dict[str, Rate]:
        return {t: apcer(ps) for t, ps in self.attacks_by_type().items()}

    def worst(self) -> tuple[str, Rate]:
        return worst_apcer(self.attacks_by_type())

    def bpcer(self) -> Rate:
        return bpcer(self.live_presentations)

    def live_called_spoof(self) -> Rate:
        return called_spoof(self.live_presentations)

    def live_undetermined(self) -> Rate:
        return undetermined(self.live_presentations)

    def bpcer_at_apcer(self, target: float = 0.01) -> ThresholdPoint:
        return bpcer_at_apcer(self.live_presentations, self.attacks_by_type(), target)


# --- one burst -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One face the pipeline found in a frame."""

    box: tuple[int, int, int, int]
    landmarks: NDArray[np.float64]
    landmarks68: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class FrameObservation:
    frame: NDArray[np.uint8]
    faces: list[Seen]


class Observer:
    """Decodes JPEG frames as the service does and finds every face in them.

    With ``cache_dir``, what the pipeline found in a burst is kept on disk under the hash of the
    frames' bytes and ``model_key`` (the detector and landmark models), so the evaluation of a new
    liveness model reruns only the judge.
    """

    def __init__(
        self, faces: FacesFn, cache_dir: Path | None = None, model_key: str = "", min_face_px: int = 0
    ) -> None:
        self.faces = faces
        self.cache = DiskCache(cache_dir)
        self.model_key = model_key
        # The service's FACEGATE_RECOGNIZE_MIN_FACE_PX: narrower subject faces are not judged.
        self.min_face_px = min_face_px

    def __call__(self, jpegs: Sequence[bytes]) -> list[FrameObservation]:
        frames = [decode_image(j) for j in jpegs]
        digest = hashlib.sha256(self.model_key.encode())
        for j in jpegs:
            digest.update(hashlib.sha256(j).digest())
        key = "faces-" + digest.hexdigest()[:32]
        found = self.cache.get(key)
        if found is None:
            found = [
                [(f.box, np.asarray(f.landmarks, dtype=np.float64), f.landmarks68) for f in self.faces(b)]
                for b in frames
            ]
            self.cache.put(key, found)
        return [
            FrameObservation(frame, [Seen(*face) for face in faces])
            for frame, faces in zip(frames, found, strict=True)
        ]


class DiskCache:
    """Pickles under var/ (our own outputs only), by key; a no-op without a folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, key: str) -> Any:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.pkl"
        if not path.exists():
            return None
        with path.open("rb") as fh:
            return pickle.load(fh)

    def put(self, key: str, value: object) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.pkl.tmp"
        with tmp.open("wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.folder / f"{key}.pkl")


def judge_observations(
    observations: Sequence[FrameObservation],
    timestamps: Sequence[float],
    judge: Judge,
    *,
    kind: Kind,
    label: str,
    source: str,
    min_face_px: int = 0,
) -> BurstResult:
    """Judge the burst's subject where it was seen wide enough, as the service does (tracker and gate)."""
    frames = [(o.frame, o.faces) for o in observations]
    tracked = follow_subject(frames, timestamps, min_face_px).observed
    result = judge(tracked) if len(tracked) >= MIN_FACE_FRAMES else None
    return BurstResult(kind, label, source, len(observations), len(tracked), result)


# --- (a) attacks ---------------------------------------------------------------------------------


def attack_photos(faces_dir: Path, count: int, seed: int) -> list[Path]:
    """Every photo in examples/images, then a seeded sample of LFW photos up to ``count``."""
    examples = sorted(p for p in (faces_dir / "examples" / "images").glob("*/*") if p.is_file())
    chosen = examples[:count]
    if len(chosen) < count:
        with (faces_dir / "lfw-dev" / "labels.csv").open(newline="") as fh:
            lfw = sorted(faces_dir / "lfw-dev" / row["file"] for row in csv.DictReader(fh))
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(lfw), size=min(count - len(chosen), len(lfw)), replace=False)
        chosen += [lfw[int(i)] for i in sorted(picks)]
    return chosen


def background_scenes(faces_dir: Path, observer: Observer) -> list[NDArray[np.uint8]]:
    """Real scenes to put out of focus behind the attack: the example photos and group scenes with
    their faces painted out (a background face would be a second subject, which no attacker brings)."""
    paths = sorted((faces_dir / "examples" / "images").glob("*/*"))
    paths += sorted((faces_dir / "examples" / "multi_face_scenes").glob("*.jpg"))
    scenes = []
    for path in paths:
        seen = observer([path.read_bytes()])[0]
        image = seen.frame
        mask = np.zeros(image.shape[:2], dtype=np.uint8)
        for face in seen.faces:
            left, top, right, bottom = face.box
            w, h = right - left + 1, bottom - top + 1
            # The head and hair around the face box, generously.
            cv2.rectangle(
                mask,
                (round(left - 0.6 * w), round(top - 0.9 * h)),
                (round(right + 0.6 * w), round(bottom + 0.7 * h)),
                255,
                thickness=-1,
            )
        scale = min(1.0, 480.0 / max(image.shape[:2]))
        small = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
        small_mask = np.asarray(
            cv2.resize(mask, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        )
        if small_mask.mean() > 0.6 * 255:
            continue  # mostly face: nothing left of the scene
        if small_mask.any():
            small = np.asarray(cv2.inpaint(small, small_mask, 9, cv2.INPAINT_TELEA))
        scenes.append(small.astype(np.uint8))
    return scenes


def burst_seed(seed: int, index: int, attack_type: str) -> int:
    return int(np.random.SeedSequence([seed, index, ATTACK_TYPES.index(attack_type)]).generate_state(1)[0])


def _scenes_digest(scenes: Sequence[NDArray[np.uint8]]) -> str:
    digest = hashlib.sha256()
    for scene in scenes:
        digest.update(str(scene.shape).encode())
        digest.update(hashlib.sha256(np.ascontiguousarray(scene).tobytes()).digest())
    return digest.hexdigest()[:16]


def evaluate_attacks(
    observer: Observer,
    judge: Judge,
    photos: Sequence[Path],
    seed: int,
    *,
    scenes: Sequence[NDArray[np.uint8]] = (),
    save_frames: Path | None = None,
    report: LivenessReport,
    progress: Callable[[str], None] | None = None,
) -> None:
    scenes_digest = _scenes_digest(scenes)
    for index, path in enumerate(photos):
        data = path.read_bytes()
        source = observer([data])[0]
        if not source.faces:
            report.photos_without_face.append(str(path))
            continue
        face = max(source.faces, key=lambda f: f.box[2] - f.box[0])
        photo = Photo(source.frame, face.box, path.name)
        for attack_type in ATTACK_TYPES:
            bseed = burst_seed(seed, index, attack_type)
            key = hashlib.sha256(
                f"{RENDER_VERSION}|{hashlib.sha256(data).hexdigest()}|{face.box}|{attack_type}|{bseed}|"
                f"{scenes_digest}".encode()
            ).hexdigest()[:32]
            cached = observer.cache.get(f"render-{key}")
            if cached is None:
                burst = render_attack(photo, attack_type, bseed, scenes=scenes)
                cached = (burst.jpegs, burst.timestamps, burst.details)
                observer.cache.put(f"render-{key}", cached)
            jpegs, timestamps, details = cached
            result = judge_observations(
                observer(jpegs),
                timestamps,
                judge,
                kind="attack",
                label=attack_type,
                source=path.name,
                min_face_px=observer.min_face_px,
            )
            report.attacks.append(replace(result, details=details))
            if save_frames is not None:
                folder = save_frames / attack_type / f"{index:04d}_{path.stem}"
                folder.mkdir(parents=True, exist_ok=True)
                for k, jpeg in enumerate(jpegs):
                    (folder / f"{k:02d}.jpg").write_bytes(jpeg)
        if progress is not None:
            progress(f"attacks: photo {index + 1}/{len(photos)}")


# --- (b) live video bursts -----------------------------------------------------------------------


def video_frames(path: Path, seed: int, frames: range | None = None) -> list[bytes]:
    """The video's frames (all, or those in ``frames``) re-encoded as a door camera's JPEGs (70-90)."""
    capture = cv2.VideoCapture(str(path))
    rng = np.random.default_rng(seed)
    jpegs = []
    try:
        index = 0
        while frames is None or index < frames.stop:
            ok, frame = capture.read()
            if not ok:
                break
            # Drawn for every frame, so a frame's quality does not depend on the range asked for.
            quality = int(rng.integers(70, 91))
            if frames is None or index in frames:
                jpegs.append(encode_jpeg(np.asarray(frame, dtype=np.uint8), quality))
            index += 1
    finally:
        capture.release()
    if not jpegs:
        raise ValueError(f"no frame could be read from {path}")
    return jpegs


def live_windows(
    n_frames: int,
    lengths: Sequence[int] = LIVE_WINDOW_FRAMES,
    strides: Sequence[int] = LIVE_WINDOW_STRIDES,
) -> Iterator[tuple[str, list[int]]]:
    """Every window of ``length`` frames taken every ``stride``-th frame, at every start frame."""
    for length in lengths:
        for stride in strides:
            for start in range(n_frames - (length - 1) * stride):
                yield f"n{length}s{stride}@{start}", [start + k * stride for k in range(length)]


def evaluate_live_video(
    observer: Observer,
    judge: Judge,
    video: Path,
    seed: int,
    *,
    report: LivenessReport,
    frames: range | None = None,
) -> None:
    observations = observer(video_frames(video, seed, frames))
    for name, indices in live_windows(len(observations)):
        times = [(i - indices[0]) / VIDEO_FPS for i in indices]
        window = [observations[i] for i in indices]
        report.live.append(
            judge_observations(
                window,
                times,
                judge,
                kind="bona_fide",
                label="live",
                source=name,
                min_face_px=observer.min_face_px,
            )
        )


# --- (c) stills ----------------------------------------------------------------------------------


def still_paths(faces_dir: Path) -> list[tuple[str, Path]]:
    root = faces_dir / "spoof" / "silent_face_antispoofing"
    out = []
    for base in (root, root / "older_revisions"):
        for label in ("live", "spoof"):
            out += [(label, p) for p in sorted((base / label).glob("*.jpg"))]
    return out


def still_burst(image: NDArray[np.uint8], seed: int, copies: int = STILL_COPIES) -> list[bytes]:
    """A still as a door burst: scaled to the door camera's size, copies differing by sensor noise."""
    scale = DOOR_FRAME_LONG_SIDE / max(image.shape[:2])
    if scale < 1:
        image = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    rng = np.random.default_rng(seed)
    base = image.astype(np.float32)
    jpegs = []
    for _ in range(copies):
        sigma = np.sqrt(base * 0.05 + 2.0**2)
        noisy = np.clip(np.rint(base + rng.standard_normal(base.shape).astype(np.float32) * sigma), 0, 255)
        jpegs.append(encode_jpeg(noisy.astype(np.uint8), int(rng.integers(70, 91))))
    return jpegs


def evaluate_stills(
    observer: Observer, judge: Judge, faces_dir: Path, seed: int, *, report: LivenessReport
) -> None:
    for index, (label, path) in enumerate(still_paths(faces_dir)):
        jpegs = still_burst(decode_image(path.read_bytes()), seed + index)
        observations = observer(jpegs)
        times = [k / STILL_FPS for k in range(len(jpegs))]
        rel = str(path.relative_to(faces_dir / "spoof" / "silent_face_antispoofing"))
        report.stills.append(
            judge_observations(
                observations,
                times,
                judge,
                kind="still",
                label=label,
                source=rel,
                min_face_px=observer.min_face_px,
            )
        )


# --- all -----------------------------------------------------------------------------------------


def evaluate_liveness(
    faces: FacesFn,
    judge: Judge,
    faces_dir: Path,
    *,
    attacks_per_type: int = 100,
    seed: int = 0,
    save_frames: Path | None = None,
    include_video: bool = True,
    include_stills: bool = True,
    operating_threshold: float | None = None,
    cache_dir: Path | None = None,
    model_key: str = "",
    min_face_px: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LivenessReport:
    """All three sets. ``cache_dir`` keeps rendered bursts and the faces found in them, keyed by
    ``model_key`` (name the detector and landmark models in it), so a rerun judges only.
    ``min_face_px``: the service's recognition gate (subject faces narrower are not judged)."""
    report = LivenessReport(operating_threshold=operating_threshold)
    observer = Observer(faces, cache_dir, model_key, min_face_px)
    photos = attack_photos(faces_dir, attacks_per_type, seed)
    scenes = background_scenes(faces_dir, observer)
    evaluate_attacks(
        observer,
        judge,
        photos,
        seed,
        scenes=scenes,
        save_frames=save_frames,
        report=report,
        progress=progress,
    )
    if include_video:
        evaluate_live_video(observer, judge, faces_dir / VIDEO_NAME, seed, report=report)
        if progress is not None:
            progress(f"live video: {len(report.live)} windows")
    if include_stills:
        evaluate_stills(observer, judge, faces_dir, seed, report=report)
    return report


# --- the printed table ---------------------------------------------------------------------------


def _pct(rate: Rate) -> str:
    return "n/a" if math.isnan(rate.value) else f"{rate.value * 100:6.2f}% ({rate.errors}/{rate.total})"


def _outcomes(results: Sequence[BurstResult]) -> str:
    counts = {"live": 0, "spoof": 0, "undetermined": 0}
    for r in results:
        if r.result is not None:
            counts[r.result.outcome] += 1
    failures = sum(1 for r in results if r.result is None)
    return (
        f"live {counts['live']:4d}  spoof {counts['spoof']:4d}  undetermined {counts['undetermined']:4d}  "
        f"no face {failures:4d}"
    )


def format_report(report: LivenessReport) -> list[str]:
    lines = ["ISO/IEC 30107-3 liveness evaluation (a burst = one presentation)", ""]
    lines.append(f"{'set':12s} {'bursts':>6s}  outcomes")
    for attack_type in ATTACK_TYPES:
        of_type = [b for b in report.attacks if b.label == attack_type]
        lines.append(f"{attack_type:12s} {len(of_type):6d}  {_outcomes(of_type)}")
    lines.append(f"{'live video':12s} {len(report.live):6d}  {_outcomes(report.live)}")
    lines.append("")
    by_type = report.apcer_by_type()
    for t, rate in by_type.items():
        lines.append(f"APCER {t:12s} {_pct(rate)}")
    if any(r.total for r in by_type.values()):
        worst_type, worst_rate = report.worst()
        lines.append(f"APCER worst        {_pct(worst_rate)}  [{worst_type}]")
    if report.live and any(b.result is not None for b in report.live):
        lines.append(f"BPCER              {_pct(report.bpcer())}")
        lines.append(f"  of which undetermined {_pct(report.live_undetermined())}")
        lines.append(f"  of which called spoof {_pct(report.live_called_spoof())}")
        if report.attacks:
            point = report.bpcer_at_apcer(0.01)
            lines.append(
                f"BPCER at APCER<=1% {point.bpcer * 100:6.2f}%  (threshold on P(live) {point.threshold:.4f})"
            )
    failures = {t: acquisition_failures(ps) for t, ps in report.attacks_by_type().items()}
    failures["live video"] = acquisition_failures(report.live_presentations)
    lines.append(
        f"failures to acquire (face in < {MIN_FACE_FRAMES} frames; not in the rates): "
        + ", ".join(f"{k} {v}" for k, v in failures.items())
    )
    if report.photos_without_face:
        lines.append(f"photos with no face (no attack rendered): {len(report.photos_without_face)}")
    if report.stills:
        lines.append("")
        lines.append("stills (smoke test: 4 scenes, no error rate can be measured from them)")
        for s in report.stills:
            verdict = "no face" if s.result is None else s.result.outcome
            score = "" if s.result is None or s.result.score is None else f"  P(live) {s.result.score:.3f}"
            drivers = (
                "" if s.result is None or not s.result.drivers else f"  drivers {','.join(s.result.drivers)}"
            )
            lines.append(f"  {s.label:5s} {s.source:45s} -> {verdict}{score}{drivers}")
    return lines


def cue_medians(results: Sequence[BurstResult]) -> dict[str, float]:
    """Median of every cue over the judged bursts (for failure analysis)."""
    values: dict[str, list[float]] = {}
    for r in results:
        if r.result is not None:
            for name, v in r.result.cues.items():
                values.setdefault(name, []).append(v)
    return {name: float(np.nanmedian(v)) for name, v in sorted(values.items())}


def format_cues(report: LivenessReport) -> list[str]:
    groups: dict[str, list[BurstResult]] = {
        t: [b for b in report.attacks if b.label == t] for t in ATTACK_TYPES
    }
    groups["live video"] = report.live
    medians = {g: cue_medians(rs) for g, rs in groups.items()}
    names = sorted({n for m in medians.values() for n in m})
    header = "  ".join(f"{g:>12s}" for g in groups)
    lines = ["", f"{'median cue':30s} {header}"]
    for name in names:
        cells = "  ".join(f"{medians[g].get(name, math.nan):12.4g}" for g in groups)
        lines.append(f"  {name:28s} {cells}")
    lines += ["", f"{'decided by (bursts)':30s} {header}"]
    drivers = {
        g: Counter(d for r in rs if r.result is not None for d in r.result.drivers)
        for g, rs in groups.items()
    }
    for name in sorted({d for c in drivers.values() for d in c}):
        cells = "  ".join(f"{drivers[g][name]:12d}" for g in groups)
        lines.append(f"  {name:28s} {cells}")
    return lines


def report_records(report: LivenessReport) -> list[dict[str, object]]:
    """One JSON-ready record per burst: set, label, source, frames, verdict, cues, rendering details."""
    records: list[dict[str, object]] = []
    for burst in [*report.attacks, *report.live, *report.stills]:
        r = burst.result
        records.append(
            {
                "kind": burst.kind,
                "label": burst.label,
                "source": burst.source,
                "frames": burst.frames,
                "frames_with_face": burst.frames_with_face,
                "outcome": None if r is None else r.outcome,
                "score": None if r is None else r.score,
                "drivers": [] if r is None else list(r.drivers),
                "hint": None if r is None else r.hint,
                "cues": {} if r is None else {k: float(v) for k, v in r.cues.items()},
                "details": dict(burst.details),
            }
        )
    return records
