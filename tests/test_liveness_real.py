"""Liveness on real captures: the burst builder on the shared manifest, folds, figures, a small real run."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.evaluation.liveness_eval import BurstResult, FrameObservation, Kind, Seen
from app.evaluation.liveness_metrics import Presentation
from app.evaluation.liveness_real import (
    LIVENESS_FOLDER,
    RealBurst,
    RealReport,
    RealResult,
    Recording,
    Window,
    attack_group,
    build_bursts,
    cue_audit,
    figures,
    format_cue_audit,
    format_real,
    judge_burst,
    leave_one_subject_out,
    load_recordings,
    presenter_boxes,
    source_name,
    split_by_subject,
)
from app.vision.liveness import REJECT_CUES, ImageCueLimits, cue_rules, fired_cues
from app.vision.liveness_types import LivenessResult
from tests.conftest import shared_faces

# --- without data --------------------------------------------------------------------------------


def _recording(  # noqa: PLR0917
    name: str,
    subject: str,
    label: str = "live",
    attack_type: str = "",
    frames: int = 15,
    kind: str = "frames",
) -> Recording:
    return Recording(
        name,
        kind,  # type: ignore[arg-type]
        "nuaa",
        subject,
        label,  # type: ignore[arg-type]
        attack_type,
        tuple(range(0, 4 * frames, 4)),
        tuple(k * 0.2 for k in range(frames)),
        tuple(b"%d" % k for k in range(frames)),
    )


def test_windows_hold_5_to_15_frames_and_start_every_stride() -> None:
    assert list(Window(8, 4).starts(15)) == [0, 4]
    assert list(Window(15, 15).starts(15)) == [0]
    assert list(Window(5, 4).starts(4)) == []
    for bad in ((4, 1), (16, 1), (8, 0)):
        with pytest.raises(ValueError):
            Window(*bad)


def test_bursts_stay_inside_their_recording_and_coinciding_windows_count_once() -> None:
    a, b = _recording("a", "s1"), _recording("b", "s2", frames=9)
    bursts = build_bursts([a, b], nuaa_windows=(Window(8, 4), Window(15, 15), Window(8, 4)))
    assert [(x.recording.name, x.start, x.length) for x in bursts] == [
        ("a", 0, 8),
        ("a", 4, 8),
        ("a", 0, 15),
        ("b", 0, 8),
    ]
    assert bursts[1].frame_numbers == (16, 20, 24, 28, 32, 36, 40, 44)
    assert bursts[1].timestamps == pytest.approx([0.2 * k for k in range(8)])
    assert bursts[1].name == "a@16+8"


def test_attack_videos_can_start_after_the_presenter_left() -> None:
    replay = _recording("r", "s1", "attack", "screen_replay", frames=20, kind="video")
    bursts = build_bursts([replay], video_windows=(Window(5, 4),), attack_video_from_s=2.0)
    assert bursts and all(replay.times[x.start] >= 2.0 - 1e-9 for x in bursts)
    assert min(x.start for x in bursts) == 10


def test_names_of_sources_and_attack_groups() -> None:
    assert source_name("imironica/liveness@415a:db (NUAA raw)") == "nuaa"
    assert source_name("ZubairCracksCode/anit-spoofing@08f1") == "zubair"
    assert source_name("KwaiVGI/LivePortrait@1986") == "liveportrait"
    assert source_name("someone/Other@1") == "other"
    assert attack_group("print_bent_or_rotated") == "print tilted or bent"
    assert attack_group("print") == attack_group("print_flat") == "other prints"
    assert attack_group("screen_replay") == "screen replay"
    assert attack_group("flat") == "flat"  # rendered types keep their names


def _result(burst: RealBurst, outcome: str | None, score: float | None = None, **cues: float) -> RealResult:
    result = None if outcome is None else LivenessResult(outcome, score, dict(cues))  # type: ignore[arg-type]
    kind: Kind = "bona_fide" if burst.label == "live" else "attack"
    return RealResult(burst, BurstResult(kind, burst.group, burst.name, burst.length, 8, result))


def test_figures_split_live_from_each_attack_group_and_leave_the_presenter_out() -> None:
    live = RealBurst(_recording("l", "s1"), 0, 8)
    printed = RealBurst(_recording("p", "s1", "attack", "print_flat"), 0, 8)
    bent = RealBurst(_recording("b", "s2", "attack", "print_bent_or_rotated"), 0, 8)
    report = RealReport(
        [
            _result(live, "live", 0.99),
            _result(live, "undetermined"),
            _result(live, None),
            _result(printed, "spoof", 0.1),
            _result(printed, "live", 0.97),
            _result(bent, "spoof", 0.1),
            replace(_result(printed, "live", 0.99), presenter=True),
        ]
    )
    figs = report.figures()
    assert (figs.bpcer().errors, figs.bpcer().total) == (1, 2)
    assert list(figs.attacks) == ["print tilted or bent", "other prints"]
    rates = figs.apcer_by_group()
    assert (rates["other prints"].errors, rates["other prints"].total) == (1, 2)  # the presenter is out
    assert figs.worst() == ("other prints", rates["other prints"])
    point = figs.bpcer_at_apcer(0.01)
    assert point is not None and point.threshold == pytest.approx(0.99) and point.bpcer == pytest.approx(0.5)
    text = "\n".join(format_real(report))
    assert "other prints" in text and "APCER  50.00% (1/2)" in text
    assert "live presenter beside the attack" not in text  # no attack video here


def test_one_fold_per_subject_with_all_of_a_persons_bursts_on_one_side() -> None:
    rec = {s: _recording(s, s) for s in ("s1", "s2", "s3")}
    attack = _recording("s1-print", "s1", "attack", "print")
    bursts = [RealBurst(r, 0, 8) for r in (*rec.values(), attack)]
    folds = split_by_subject(bursts)
    assert [f.subject for f in folds] == ["s1", "s2", "s3"]
    for fold in folds:
        assert {b.subject for b in fold.test} == {fold.subject}
        assert fold.subject not in {b.subject for b in fold.tune}
        assert len(fold.tune) + len(fold.test) == len(bursts)
    assert len(folds[0].test) == 2  # s1 live and s1's print


def test_leave_one_subject_out_decides_each_subject_by_the_others() -> None:
    """A threshold fitted as the lowest live score of the other subjects: s2's lower live score is
    judged by s1's threshold, so it fails there, which a fit on everyone would have hidden."""
    live1, live2 = RealBurst(_recording("a", "s1"), 0, 8), RealBurst(_recording("b", "s2"), 0, 8)
    results = [_result(live1, "live", 0.9), _result(live2, "live", 0.6)]

    def fit(tune: object) -> object:
        threshold = min(r.judged.result.score for r in tune)  # type: ignore[attr-defined]

        def decide(r: RealResult) -> Presentation:
            score = r.judged.result.score  # type: ignore[union-attr]
            return Presentation("live" if score >= threshold else "spoof", score)

        return decide

    figs = leave_one_subject_out(results, fit)  # type: ignore[arg-type]
    assert (figs.bpcer().errors, figs.bpcer().total) == (1, 2)
    assert figures([("live", Presentation("live", 0.9))]).bpcer().errors == 0


def test_the_presenter_is_the_widest_of_two_faces_and_followed_while_it_overlaps() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    head, phone = (100, 100, 260, 260), (400, 50, 480, 130)
    point = np.zeros((5, 2))

    def seen(*boxes: tuple[int, int, int, int]) -> FrameObservation:
        return FrameObservation(frame, [Seen(b, point) for b in boxes])

    moved = (110, 100, 270, 260)
    observations = [seen(phone), seen(phone, head), seen(moved), seen(phone), seen(phone, moved)]
    times = [0.0, 0.5, 1.0, 2.5, 3.0]
    boxes = presenter_boxes(observations, times, until_s=2.0)
    # Frame 3 (after 2 s) lost the head: following stops there, and the later head is not linked.
    assert boxes == {1: head, 2: moved}


def test_a_replay_burst_tracking_the_presenter_is_flagged() -> None:
    frame = np.zeros((300, 500, 3), np.uint8)
    head, phone = (100, 100, 259, 259), (400, 50, 479, 129)
    point = np.array([[10.0, 10.0], [20.0, 10.0], [40.0, 10.0], [50.0, 10.0], [30.0, 40.0]])
    rec = replace(
        _recording("r", "s1", "attack", "screen_replay", frames=5, kind="video"),
        jpegs=(b"",) * 5,
    )
    observations = [FrameObservation(frame, [Seen(head, point), Seen(phone, point)]) for _ in range(5)]
    calls = []

    def judge(track: object) -> LivenessResult:
        calls.append(track)
        return LivenessResult("undetermined", None, {})

    presenter = presenter_boxes(observations, rec.times)
    result = judge_burst(observations, RealBurst(rec, 0, 5), judge, 0, presenter)
    assert result.presenter and result.judged.frames_with_face == 5 and len(calls) == 1
    only_phone = [FrameObservation(frame, [Seen(phone, point)]) for _ in range(5)]
    assert not judge_burst(only_phone, RealBurst(rec, 0, 5), judge, 0, presenter).presenter
    # Below the service's min face the subject is not judged: a failure to acquire.
    small = judge_burst(only_phone, RealBurst(rec, 0, 5), judge, 100, presenter)
    assert small.judged.result is None and len(calls) == 2


_CUES = {
    "border_frames": 1.0,
    "border_follow": 1.0,
    "moire_peak": 2.0,
    "glare_fraction": 0.0,
    "identical_fraction": 0.0,
    "motionless": 0.0,
}


def test_cue_rules_hold_whether_or_not_the_cue_takes_part_in_the_verdict() -> None:
    off = ImageCueLimits(rejects=("moire",))
    assert cue_rules(_CUES, off)["border"] and fired_cues(_CUES, off) == []
    assert fired_cues(_CUES, ImageCueLimits(rejects=REJECT_CUES)) == ["border"]
    with pytest.raises(ValueError, match="unknown cues"):
        ImageCueLimits(rejects=("texture",))


def test_the_cue_audit_counts_each_rule_per_set_and_the_rejections_by_active_cues() -> None:
    live = RealBurst(_recording("l", "s1"), 0, 8)
    printed = RealBurst(_recording("p", "s1", "attack", "print"), 0, 8)
    quiet = {**_CUES, "border_frames": 0.0}
    report = RealReport(
        [
            _result(live, "spoof", 0.5, **_CUES),
            _result(live, "undetermined", None, **quiet),
            _result(live, None),  # not judged: not in the audit
            _result(printed, "spoof", 0.1, **_CUES),
        ]
    )
    limits = ImageCueLimits(rejects=("moire",))
    audit = cue_audit(report, lambda c: cue_rules(c, limits), limits.rejects)
    assert list(audit) == ["live nuaa", "live all", "attack other prints", "attack all"]
    border = audit["live all"]["border"]
    assert (border.errors, border.total) == (1, 2)
    assert audit["live all"]["rejected"].errors == 0  # border is off
    text = "\n".join(format_cue_audit(audit, limits.rejects))
    assert "border (off)" in text and "moire (off)" not in text


# --- the shared real captures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_folder() -> Path:
    return shared_faces() / LIVENESS_FOLDER


@pytest.fixture(scope="module")
def recordings(real_folder: Path) -> list[Recording]:
    return load_recordings(real_folder)


@pytest.mark.shared
def test_every_nuaa_run_and_video_is_a_recording(recordings: list[Recording]) -> None:
    runs = [r for r in recordings if r.kind == "frames"]
    videos = {r.name: r for r in recordings if r.kind == "video"}
    assert len(runs) == 55 and all(len(r.jpegs) == 15 for r in runs)
    assert Counter(r.label for r in runs) == {"live": 27, "attack": 28}
    # Every round(fps / 5)-th frame: 15 fps -> every 3rd, 25 -> 5th, 30 -> 6th.
    assert {n: len(v.jpegs) for n, v in videos.items()} == {
        "zubaircrackscode_real_webcam": 67,
        "zubaircrackscode_fake_phone_screen": 53,
        "liveportrait_d0": 16,
        "liveportrait_d3": 59,
        "liveportrait_d6": 168,
        "liveportrait_d9": 98,
    }
    for video in videos.values():
        assert np.allclose(np.diff(video.times), 0.2)
    assert videos["zubaircrackscode_fake_phone_screen"].group == "screen replay"


@pytest.mark.shared
def test_real_bursts_per_set(recordings: list[Recording]) -> None:
    bursts = build_bursts(recordings)
    counts = Counter((b.source, b.group) for b in bursts)
    assert counts == {
        ("nuaa", "live"): 81,  # 27 runs x (2 windows of 8 + the whole run)
        ("nuaa", "other prints"): 42,
        ("nuaa", "print tilted or bent"): 42,
        ("zubair", "live"): 45,
        ("zubair", "screen replay"): 36,
        ("liveportrait", "live"): 238,
    }
    assert all(5 <= b.length <= 15 for b in bursts)
    later = build_bursts(recordings, attack_video_from_s=2.0)
    replay = [b for b in later if b.group == "screen replay"]
    assert replay and min(b.frame_numbers[0] for b in replay) >= 30


@pytest.mark.shared
def test_nuaa_bursts_are_runs_in_capture_order_about_a_fifth_of_a_second_apart(
    recordings: list[Recording], real_folder: Path
) -> None:
    with (real_folder / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"].startswith("nuaa/")]
    sequence_of = {hashlib.sha256((real_folder / r["path"]).read_bytes()).hexdigest(): r for r in rows}
    gaps = []
    for burst in build_bursts(r for r in recordings if r.kind == "frames"):
        times = burst.timestamps
        assert times[0] == 0.0 and all(np.diff(times) > 0)
        gaps += list(np.diff(times))
        # Every frame of the burst is a frame of one manifest run, in picture-number order.
        frames = [sequence_of[hashlib.sha256(j).hexdigest()] for j in burst.jpegs]
        assert {f["sequence"] for f in frames} == {burst.recording.name}
        assert [int(f["frame_index"]) for f in frames] == list(burst.frame_numbers)
        assert {f["label"] for f in frames} == {burst.label}
    assert max(gaps) <= 0.6 + 1e-9  # PROVENANCE: no gap over 12 pictures
    assert 0.15 <= float(np.median(gaps)) <= 0.25


@pytest.mark.shared
@pytest.mark.slow
def test_a_few_real_bursts_through_the_pipeline(pipeline, recordings: list[Recording]) -> None:  # type: ignore[no-untyped-def]
    """A NUAA live run, a NUAA print and the phone replay after the presenter left, each as a door
    burst on the service's path: faces per frame, the subject followed, the liveness judge."""
    from app.evaluation.liveness_eval import Observer

    by_name = {r.name: r for r in recordings}
    live = next(r for r in recordings if r.kind == "frames" and r.label == "live")
    printed = next(r for r in recordings if r.kind == "frames" and r.attack_type == "print_flat")
    replay = by_name["zubaircrackscode_fake_phone_screen"]
    start = next(k for k, n in enumerate(replay.frame_numbers) if n >= 36)
    observer = Observer(pipeline.faces)
    results = []
    for rec, first in ((live, 0), (printed, 0), (replay, start)):
        short = replace(
            rec,
            frame_numbers=rec.frame_numbers[first : first + 8],
            times=rec.times[first : first + 8],
            jpegs=rec.jpegs[first : first + 8],
        )
        observations = observer(short.jpegs)
        presenter = presenter_boxes(observations, short.times) if rec.kind == "video" else {}
        burst = RealBurst(short, 0, 8)
        result = judge_burst(observations, burst, pipeline.liveness.judge, 0, presenter)
        results.append(result)
        assert result.judged.frames_with_face >= 6, burst.name
        verdict = result.judged.result
        assert verdict is not None and {"border_frames", "moire_peak", "motionless"} <= set(verdict.cues)
        assert not result.presenter
        if rec.label == "attack":
            assert verdict.outcome != "live", (burst.name, verdict)
    report = RealReport(results, pipeline.liveness.threshold)
    assert [line for line in format_real(report) if line.startswith("all ")]


def test_eval_liveness_refuses_no_set_and_a_missing_real_folder(tmp_path: Path) -> None:
    """Checked before any model is loaded."""
    from typer.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()
    neither = runner.invoke(cli, ["eval", "liveness", "--faces", str(tmp_path), "--no-real", "--no-rendered"])
    assert neither.exit_code == 2 and "nothing to evaluate" in neither.output
    missing = runner.invoke(cli, ["eval", "liveness", "--faces", str(tmp_path), "--real"])
    assert missing.exit_code == 2 and f"{tmp_path / LIVENESS_FOLDER} is not a folder" in missing.output
