"""Liveness judged on real captures (``../shared/faces/liveness``), as door bursts.

The set (its PROVENANCE.md): NUAA live webcam runs and hand-held printed photos of 7 subjects
(runs of 15 stored frames, about 5 fps), a live webcam video and a phone-screen replay of one
man, and four close-range live clips. Each burst is what a door sends: 5-15 consecutive frames
at about 5 fps, JPEG bytes with timestamps, judged on the service's path (the pipeline's faces
per frame, ``follow_subject`` with the service's min face, the liveness judge).

- NUAA: the run's stored JPEG bytes unchanged; timestamps are picture numbers over the 20 fps
  capture. Windows of 8 frames every 4, plus the whole 15-frame run.
- Videos: decoded, every round(fps / 5)-th frame kept and encoded as a door camera's JPEG;
  timestamps are frame number over fps. Windows of 5, 8 and 12 frames every 4.
- The screen replay's first ~2 s also show the presenter's own live face beside the phone. Those
  frames stay (a door would see them), and a replay burst whose tracked subject is the presenter
  (``presenter``) is no attack presentation: it is counted apart, out of APCER.

Figures in ISO/IEC 30107-3 terms (``liveness_metrics``) per source and per attack group, and
leave-one-subject-out folds (``split_by_subject``) for whoever tunes thresholds on this set.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

import cv2
import numpy as np

from app.evaluation.liveness_eval import (
    MIN_FACE_FRAMES,
    BurstResult,
    FacesFn,
    FrameObservation,
    Judge,
    Observer,
)
from app.evaluation.liveness_metrics import (
    Presentation,
    Rate,
    ThresholdPoint,
    acquisition_failures,
    apcer,
    bpcer,
    bpcer_at_apcer,
    called_spoof,
    judged,
    undetermined,
    worst_apcer,
)
from app.evaluation.liveness_render import encode_jpeg
from app.vision.manifest import read_manifest
from app.vision.tracking import Box, follow_subject, iou

LIVENESS_FOLDER = "liveness"  # under the shared faces folder
NUAA_CAPTURE_FPS = 20.0  # PROVENANCE.md: picture numbers count frames of a 20 fps capture
VIDEO_SAMPLE_FPS = 5.0
VIDEO_JPEG_QUALITY = 85
VIDEO_SUFFIXES = (".mp4", ".webm")
MIN_BURST_FRAMES, MAX_BURST_FRAMES = 5, 15
# The replay's first 2 s (frames 0-29 at 15 fps) show the presenter's own face beside the phone.
PRESENTER_UNTIL_S = 2.0

Label = Literal["live", "attack"]

# The issue's attack groups; types not listed keep their own name.
ATTACK_GROUPS: dict[str, str] = {
    "print_bent_or_rotated": "print tilted or bent",
    "print": "other prints",
    "print_flat": "other prints",
    "screen_replay": "screen replay",
    "video_replay": "video replay",
}
GROUP_ORDER = ("print tilted or bent", "other prints", "screen replay", "video replay")
# Manifest ``source`` (GitHub owner/repo) to the short names the figures use.
SOURCE_NAMES = {"imironica/": "nuaa", "ZubairCracksCode/": "zubair", "KwaiVGI/": "liveportrait"}
SOURCE_ORDER = ("nuaa", "zubair", "liveportrait")


def source_name(manifest_source: str) -> str:
    repo = manifest_source.split("@", 1)[0]
    for prefix, name in SOURCE_NAMES.items():
        if repo.startswith(prefix):
            return name
    return repo.rsplit("/", 1)[-1].lower()


def attack_group(attack_type: str) -> str:
    return ATTACK_GROUPS.get(attack_type, attack_type)


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), n))


# --- recordings and bursts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Every run of ``length`` consecutive kept frames, starting every ``stride`` frames."""

    length: int
    stride: int

    def __post_init__(self) -> None:
        if not MIN_BURST_FRAMES <= self.length <= MAX_BURST_FRAMES:
            raise ValueError(f"a burst has {MIN_BURST_FRAMES}-{MAX_BURST_FRAMES} frames, not {self.length}")
        if self.stride < 1:
            raise ValueError("a window's stride is at least 1 frame")

    def starts(self, frames: int) -> range:
        return range(0, frames - self.length + 1, self.stride)


NUAA_WINDOWS = (Window(8, 4), Window(15, 15))  # 8 frames every 4, and the whole 15-frame run
VIDEO_WINDOWS = (Window(5, 4), Window(8, 4), Window(12, 4))


@dataclass(frozen=True, eq=False)
class Recording:
    """One NUAA run or one video, as the frames a door would get (about 5 fps)."""

    name: str  # the manifest's ``sequence``: the NUAA run, or the video's file stem
    kind: Literal["frames", "video"]
    source: str  # nuaa / zubair / liveportrait
    subject: str
    label: Label
    attack_type: str  # the manifest's; "" for live
    frame_numbers: tuple[int, ...]  # NUAA picture numbers / video frame numbers of the kept frames
    times: tuple[float, ...]  # seconds since the recording's first frame
    jpegs: tuple[bytes, ...] = field(repr=False)

    @property
    def group(self) -> str:
        """ "live", or the attack's group (``ATTACK_GROUPS``)."""
        return "live" if self.label == "live" else attack_group(self.attack_type)


@dataclass(frozen=True, eq=False)
class RealBurst:
    """``length`` consecutive kept frames of a recording, from ``start``."""

    recording: Recording
    start: int
    length: int

    @property
    def positions(self) -> range:
        return range(self.start, self.start + self.length)

    @property
    def subject(self) -> str:
        return self.recording.subject

    @property
    def source(self) -> str:
        return self.recording.source

    @property
    def label(self) -> Label:
        return self.recording.label

    @property
    def group(self) -> str:
        return self.recording.group

    @property
    def frame_numbers(self) -> tuple[int, ...]:
        return self.recording.frame_numbers[self.start : self.start + self.length]

    @property
    def timestamps(self) -> list[float]:
        """Seconds since the burst's first frame."""
        times = self.recording.times[self.start : self.start + self.length]
        return [t - times[0] for t in times]

    @property
    def jpegs(self) -> tuple[bytes, ...]:
        return self.recording.jpegs[self.start : self.start + self.length]

    @property
    def name(self) -> str:
        return f"{self.recording.name}@{self.frame_numbers[0]}+{self.length}"


@dataclass(frozen=True)
class _Row:
    path: str
    source: str
    subject: str
    label: Label
    attack_type: str
    sequence: str
    frame_index: int | None


def read_manifest_rows(folder: Path) -> list[_Row]:
    with (folder / "manifest.csv").open(newline="") as fh:
        rows = []
        for r in csv.DictReader(fh):
            if r["label"] not in ("live", "attack"):
                raise ValueError(f"{folder / 'manifest.csv'}: unknown label {r['label']!r} for {r['path']}")
            label: Label = "live" if r["label"] == "live" else "attack"
            rows.append(
                _Row(
                    r["path"],
                    r["source"],
                    r["subject"],
                    label,
                    r["attack_type"],
                    r["sequence"],
                    int(r["frame_index"]) if r["frame_index"] else None,
                )
            )
    return rows


def _frame_run(folder: Path, name: str, rows: Sequence[_Row]) -> Recording:
    ordered = sorted(rows, key=lambda r: r.frame_index if r.frame_index is not None else -1)
    if any(r.frame_index is None for r in ordered):
        raise ValueError(f"run {name}: a frame without frame_index")
    numbers = tuple(int(r.frame_index) for r in ordered if r.frame_index is not None)
    first = ordered[0]
    return Recording(
        name,
        "frames",
        source_name(first.source),
        first.subject,
        first.label,
        first.attack_type,
        numbers,
        tuple((n - numbers[0]) / NUAA_CAPTURE_FPS for n in numbers),
        tuple((folder / r.path).read_bytes() for r in ordered),
    )


def _video(folder: Path, row: _Row, sample_fps: float, quality: int) -> Recording:
    capture = cv2.VideoCapture(str(folder / row.path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if not fps > 0:
            raise ValueError(f"{row.path}: the video states no frame rate")
        step = max(1, round(fps / sample_fps))
        numbers, jpegs = [], []
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                numbers.append(index)
                jpegs.append(encode_jpeg(np.asarray(frame, dtype=np.uint8), quality))
            index += 1
    finally:
        capture.release()
    if not jpegs:
        raise ValueError(f"no frame could be read from {row.path}")
    return Recording(
        row.sequence or Path(row.path).stem,
        "video",
        source_name(row.source),
        row.subject,
        row.label,
        row.attack_type,
        tuple(numbers),
        tuple(n / fps for n in numbers),
        tuple(jpegs),
    )


def load_recordings(
    folder: Path, *, sample_fps: float = VIDEO_SAMPLE_FPS, quality: int = VIDEO_JPEG_QUALITY
) -> list[Recording]:
    """Every NUAA run (frames by picture number) and every video (sampled at about ``sample_fps``)."""
    rows = read_manifest_rows(folder)
    runs: dict[str, list[_Row]] = defaultdict(list)
    recordings = []
    for row in rows:
        if row.path.lower().endswith(VIDEO_SUFFIXES):
            recordings.append(_video(folder, row, sample_fps, quality))
        else:
            runs[row.sequence].append(row)
    return [_frame_run(folder, name, rs) for name, rs in runs.items()] + recordings


def build_bursts(
    recordings: Iterable[Recording],
    *,
    nuaa_windows: Sequence[Window] = NUAA_WINDOWS,
    video_windows: Sequence[Window] = VIDEO_WINDOWS,
    attack_video_from_s: float = 0.0,
) -> list[RealBurst]:
    """Every window of every recording (windows of one recording that coincide, once).

    ``attack_video_from_s``: attack videos' bursts start at or after this time (2.0 keeps the
    replay's presenter out of view); 0 keeps every frame, as a door would see them.
    """
    bursts = []
    for rec in recordings:
        first = 0
        if rec.kind == "video" and rec.label == "attack":
            first = next(
                (i for i, t in enumerate(rec.times) if t >= attack_video_from_s - 1e-9), len(rec.times)
            )
        n = len(rec.jpegs) - first
        seen: set[tuple[int, int]] = set()
        for window in nuaa_windows if rec.kind == "frames" else video_windows:
            for start in window.starts(n):
                if (start, window.length) not in seen:
                    seen.add((start, window.length))
                    bursts.append(RealBurst(rec, first + start, window.length))
    return bursts


# --- judging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealResult:
    burst: RealBurst
    judged: BurstResult
    # The tracked subject was the presenter's own live face beside the attack (not an attack presentation).
    presenter: bool = False

    @property
    def subject(self) -> str:
        return self.burst.subject

    def presentation(self, operating_threshold: float | None = None) -> Presentation:
        return self.judged.presentation(operating_threshold)


def presenter_boxes(
    observations: Sequence[FrameObservation], times: Sequence[float], until_s: float = PRESENTER_UNTIL_S
) -> dict[int, Box]:
    """Where the presenter's own face is, by frame, in an attack video that begins with it in view.

    The presenter is the widest face of the first frame with two or more faces (a head at arm's
    length is larger than the photo it holds up: true of the one replay here, checked by eye),
    then followed by box overlap, a miss keeping the last box, until ``until_s`` and beyond for as
    long as it keeps being found.
    """
    boxes: dict[int, Box] = {}
    last: Box | None = None
    for k, (obs, t) in enumerate(zip(observations, times, strict=True)):
        if last is None:
            if t >= until_s:
                break
            if len(obs.faces) >= 2:
                last = max(obs.faces, key=lambda f: f.box[2] - f.box[0]).box
                boxes[k] = last
            continue
        linked = [f.box for f in obs.faces if iou(last, f.box) >= 0.3]
        if linked:
            last = max(linked, key=lambda b: iou(last, b) if last is not None else 0.0)
            boxes[k] = last
        elif t >= until_s:
            break
    return boxes


def judge_burst(
    observations: Sequence[FrameObservation],
    burst: RealBurst,
    judge: Judge,
    min_face_px: int,
    presenter: Mapping[int, Box] | None = None,
) -> RealResult:
    """One burst as a door request: its subject tracked over its frames, then judged."""
    frames = [(observations[p].frame, observations[p].faces) for p in burst.positions]
    times = burst.timestamps
    subject = follow_subject(frames, times, min_face_px)
    tracked = subject.observed
    result = judge(tracked) if len(tracked) >= MIN_FACE_FRAMES else None
    outcome = BurstResult(
        "bona_fide" if burst.label == "live" else "attack",
        burst.group,
        burst.name,
        burst.length,
        len(tracked),
        result,
    )
    is_presenter = False
    if presenter and tracked:
        position = {t: p for p, t in zip(burst.positions, times, strict=True)}
        on_presenter = sum(
            1
            for face in tracked
            if (box := presenter.get(position[face.t])) is not None and iou(box, face.box) >= 0.5
        )
        is_presenter = on_presenter * 2 > len(tracked)
    return RealResult(burst, outcome, is_presenter)


@dataclass
class RealReport:
    results: list[RealResult] = field(default_factory=list)
    operating_threshold: float | None = None  # the model's own P(live) threshold

    def scored(self, results: Iterable[RealResult] | None = None) -> list[tuple[str, Presentation]]:
        """(group, presentation) of every burst that is a presentation of its label (not the presenter's)."""
        chosen = self.results if results is None else results
        return [(r.burst.group, r.presentation(self.operating_threshold)) for r in chosen if not r.presenter]

    def figures(self, source: str | None = None) -> RealFigures:
        return figures(self.scored(r for r in self.results if source is None or r.burst.source == source))

    @property
    def sources(self) -> list[str]:
        return _ordered((r.burst.source for r in self.results), SOURCE_ORDER)

    def presenter_results(self) -> list[RealResult]:
        return [r for r in self.results if r.presenter]


def evaluate_real(
    faces: FacesFn,
    judge: Judge,
    folder: Path,
    *,
    cache_dir: Path | None = None,
    model_key: str = "",
    min_face_px: int = 0,
    operating_threshold: float | None = None,
    nuaa_windows: Sequence[Window] = NUAA_WINDOWS,
    video_windows: Sequence[Window] = VIDEO_WINDOWS,
    attack_video_from_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> RealReport:
    """Every real burst of ``folder`` (the shared ``faces/liveness``) judged as a door request.

    The faces found in each recording are cached under ``cache_dir`` by the frames' sha256 and
    ``model_key`` (``Observer``), so a rerun with another judge only judges.
    """
    observer = Observer(faces, cache_dir, model_key, min_face_px)
    report = RealReport(operating_threshold=operating_threshold)
    recordings = load_recordings(folder)
    for index, rec in enumerate(recordings):
        bursts = build_bursts(
            [rec],
            nuaa_windows=nuaa_windows,
            video_windows=video_windows,
            attack_video_from_s=attack_video_from_s,
        )
        if not bursts:
            continue
        observations = observer(rec.jpegs)
        presenter = (
            presenter_boxes(observations, rec.times) if rec.kind == "video" and rec.label == "attack" else {}
        )
        report.results += [judge_burst(observations, b, judge, min_face_px, presenter) for b in bursts]
        if progress is not None:
            progress(f"real captures: {index + 1}/{len(recordings)} recordings, {len(report.results)} bursts")
    return report


# --- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealFigures:
    """ISO/IEC 30107-3 figures of a set of judged real bursts."""

    live: list[Presentation]
    attacks: dict[str, list[Presentation]]  # by attack group

    def apcer_by_group(self) -> dict[str, Rate]:
        return {g: apcer(ps) for g, ps in self.attacks.items()}

    def worst(self) -> tuple[str, Rate] | None:
        if not any(judged(ps) for ps in self.attacks.values()):
            return None
        return worst_apcer(self.attacks)

    def bpcer(self) -> Rate:
        return bpcer(self.live)

    def live_called_spoof(self) -> Rate:
        return called_spoof(self.live)

    def live_undetermined(self) -> Rate:
        return undetermined(self.live)

    def bpcer_at_apcer(self, target: float = 0.01) -> ThresholdPoint | None:
        """None without judged live and judged attack bursts."""
        if not judged(self.live) or not any(judged(ps) for ps in self.attacks.values()):
            return None
        return bpcer_at_apcer(self.live, self.attacks, target)


def figures(scored: Iterable[tuple[str, Presentation]]) -> RealFigures:
    """Figures of (group, presentation) pairs; the group "live" is bona fide, any other an attack."""
    live: list[Presentation] = []
    attacks: dict[str, list[Presentation]] = defaultdict(list)
    for group, presentation in scored:
        (live if group == "live" else attacks[group]).append(presentation)
    return RealFigures(live, {g: attacks[g] for g in _ordered(attacks, GROUP_ORDER)})


# --- leave one subject out -----------------------------------------------------------------------


class HasSubject(Protocol):
    @property
    def subject(self) -> str: ...


T = TypeVar("T", bound=HasSubject)


@dataclass(frozen=True)
class Fold(Generic[T]):
    """Tune on ``tune`` (every other subject), report on ``test`` (this subject's bursts only)."""

    subject: str
    tune: list[T]
    test: list[T]


def split_by_subject(items: Sequence[T]) -> list[Fold[T]]:
    """One fold per subject (a person's live and attack bursts always fall on one side)."""
    subjects = sorted({item.subject for item in items})
    return [
        Fold(s, [i for i in items if i.subject != s], [i for i in items if i.subject == s]) for s in subjects
    ]


Decide = Callable[[RealResult], Presentation]


def leave_one_subject_out(
    results: Sequence[RealResult], fit: Callable[[Sequence[RealResult]], Decide]
) -> RealFigures:
    """Each subject's bursts decided by what ``fit`` chose on the other subjects' bursts, pooled.

    ``fit`` gets the tuning bursts (presenter bursts left out) and returns how to decide a burst.
    """
    usable = [r for r in results if not r.presenter]
    scored: list[tuple[str, Presentation]] = []
    for fold in split_by_subject(usable):
        decide = fit(fold.tune)
        scored += [(r.burst.group, decide(r)) for r in fold.test]
    return figures(scored)


# --- cue audit -----------------------------------------------------------------------------------


Rules = Callable[[Mapping[str, float]], Mapping[str, bool]]


def cue_audit(report: RealReport, rules: Rules, active: Collection[str]) -> dict[str, dict[str, Rate]]:
    """How often each reject cue's rule holds, per set: live per source, then attacks per group.

    ``rules`` says, from a burst's cues, whether each reject cue's rule holds (on or off in the
    verdict); the column "rejected" counts bursts where a cue of ``active`` (those in the
    verdict) holds. Over the judged bursts whose image cues were measured, presenter bursts
    left out.
    """
    rows: dict[str, list[RealResult]] = {}
    usable = [r for r in report.results if not r.presenter and r.judged.result is not None]
    live = [r for r in usable if r.burst.label == "live"]
    attacks = [r for r in usable if r.burst.label == "attack"]
    for source in report.sources:
        of_source = [r for r in live if r.burst.source == source]
        if of_source:
            rows[f"live {source}"] = of_source
    rows["live all"] = live
    for group in _ordered((r.burst.group for r in attacks), GROUP_ORDER):
        rows[f"attack {group}"] = [r for r in attacks if r.burst.group == group]
    rows["attack all"] = attacks
    audit: dict[str, dict[str, Rate]] = {}
    for name, results in rows.items():
        measured = [r.judged.result.cues for r in results if r.judged.result is not None]
        held = [rules(c) for c in measured if "border_frames" in c]
        cues = list(held[0]) if held else []
        audit[name] = {cue: Rate(sum(h[cue] for h in held), len(held)) for cue in cues}
        audit[name]["rejected"] = Rate(sum(any(h[c] for c in active if c in h) for h in held), len(held))
    return audit


def format_cue_audit(
    audit: Mapping[str, Mapping[str, Rate]], active: Collection[str] | None = None
) -> list[str]:
    """The audit as a table; with ``active``, the cues not in the verdict are marked "(off)"."""
    if not audit:
        return []
    cues = max((list(rates) for rates in audit.values()), key=len)
    names = [c if active is None or c == "rejected" or c in active else f"{c} (off)" for c in cues]
    lines = [
        "",
        "reject cues whose rule holds on real bursts (share of judged bursts; on live = false rejects)",
    ]
    lines.append(f"{'set':28s} {'bursts':>6s} " + " ".join(f"{c:>16s}" for c in names))
    for name, rates in audit.items():
        total = rates["rejected"].total
        cells = " ".join(
            f"{'n/a':>16s}" if not r.total else f"{r.value * 100:6.1f}% ({r.errors:4d})".rjust(16)
            for r in (rates.get(c, Rate(0, 0)) for c in cues)
        )
        lines.append(f"{name:28s} {total:6d} {cells}")
    return lines


# --- the printed tables --------------------------------------------------------------------------


def _pct(rate: Rate) -> str:
    return "n/a" if math.isnan(rate.value) else f"{rate.value * 100:6.2f}% ({rate.errors}/{rate.total})"


def _counts(presentations: Sequence[Presentation]) -> str:
    n = {o: sum(1 for p in presentations if p.outcome == o) for o in ("live", "spoof", "undetermined")}
    return (
        f"{len(presentations):6d} {n['live']:5d} {n['spoof']:5d} {n['undetermined']:5d} "
        f"{acquisition_failures(presentations):5d}"
    )


def _set_rows(name: str, figs: RealFigures) -> list[str]:
    lines = []
    if figs.live:
        rate = figs.bpcer()
        lines.append(f"{name:13s} {'live':22s} {_counts(figs.live)}  BPCER {_pct(rate)}")
    for group, presentations in figs.attacks.items():
        lines.append(f"{name:13s} {group:22s} {_counts(presentations)}  APCER {_pct(apcer(presentations))}")
    return lines


def _summary_row(name: str, figs: RealFigures) -> str:
    cells = [
        _pct(figs.bpcer()) if judged(figs.live) else "n/a",
        _pct(figs.live_called_spoof()) if judged(figs.live) else "n/a",
        _pct(figs.live_undetermined()) if judged(figs.live) else "n/a",
    ]
    worst = figs.worst()
    cells.append("n/a" if worst is None else f"{_pct(worst[1])} [{worst[0]}]")
    point = figs.bpcer_at_apcer(0.01)
    cells.append(
        "n/a"
        if point is None
        else f"{point.bpcer * 100:6.2f}% (P(live) >= {point.threshold:.4f})"
        if math.isfinite(point.threshold)
        else "100.00% (no threshold)"
    )
    return f"{name:13s} " + " | ".join(cells)


def format_real(report: RealReport) -> list[str]:
    """Per source and per attack group: outcomes, APCER / BPCER, the worst APCER, BPCER at APCER 1%."""
    per_source = {s: [r for r in report.results if r.burst.source == s] for s in report.sources}
    lines = [
        "",
        "Real captures (ISO/IEC 30107-3; a burst of 5-15 frames at ~5 fps = one presentation)",
        "bursts: "
        + ", ".join(f"{s} {len(rs)}" for s, rs in per_source.items())
        + f"; all {len(report.results)}",
        "",
        f"{'source':13s} {'set':22s} {'bursts':>6s} {'live':>5s} {'spoof':>5s} {'undet':>5s} {'FTA':>5s}"
        "  rate",
    ]
    for source in report.sources:
        lines += _set_rows(source, report.figures(source))
    lines += _set_rows("all", report.figures())
    lines += [
        "",
        f"{'source':13s} BPCER | of which spoof | of which undetermined | APCER worst | BPCER at APCER<=1%",
    ]
    for source in report.sources:
        lines.append(_summary_row(source, report.figures(source)))
    lines.append(_summary_row("all", report.figures()))
    lines.append(f"FTA: face tracked in < {MIN_FACE_FRAMES} frames; failures to acquire are not in the rates")
    presenter = report.presenter_results()
    attack_videos = [
        r for r in report.results if r.burst.label == "attack" and r.burst.recording.kind == "video"
    ]
    if attack_videos:
        outcomes: dict[str, int] = defaultdict(int)
        for r in presenter:
            outcomes["no face" if r.judged.result is None else r.judged.result.outcome] += 1
        lines.append(
            f"attack-video bursts whose tracked subject was the live presenter beside the attack: "
            f"{len(presenter)} of {len(attack_videos)} (left out of APCER"
            + (f"; judged {dict(outcomes)})" if presenter else ")")
        )
    return lines


def real_records(report: RealReport) -> list[dict[str, object]]:
    """One JSON-ready record per real burst."""
    records: list[dict[str, object]] = []
    for r in report.results:
        result = r.judged.result
        records.append(
            {
                "kind": "real",
                "source": r.burst.source,
                "subject": r.burst.subject,
                "label": r.burst.label,
                "group": r.burst.group,
                "attack_type": r.burst.recording.attack_type,
                "recording": r.burst.recording.name,
                "frame_numbers": list(r.burst.frame_numbers),
                "timestamps": [round(t, 4) for t in r.burst.timestamps],
                "frames_with_face": r.judged.frames_with_face,
                "presenter": r.presenter,
                "outcome": None if result is None else result.outcome,
                "score": None if result is None else result.score,
                "drivers": [] if result is None else list(result.drivers),
                "cues": {} if result is None else {k: float(v) for k, v in result.cues.items()},
            }
        )
    return records


def faces_model_key(model_dir: Path, detection_settings: Mapping[str, object]) -> str:
    """What the faces found in a frame depend on, whatever the profile: every built artifact but
    the liveness judge's (a superset is only a colder cache), and the detection settings."""
    manifest = read_manifest(model_dir)  # the pipeline has verified the checksums already
    parts = [
        f"{name}={entry.sha256}" for name, entry in sorted(manifest.models.items()) if name != "liveness"
    ]
    parts += [f"{name}={value}" for name, value in sorted(detection_settings.items())]
    return "|".join(parts)
