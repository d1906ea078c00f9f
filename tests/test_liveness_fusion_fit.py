"""The liveness fusion fit (models/fit_liveness_fusion.py): weights, thresholds, LOSO, synthetic bursts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.vision.liveness import ImageCueLimits
from models import fit_liveness_fusion as fl

# What the image cue rules read; none of them holds.
IMAGE_CUES = {"border_frames": 0.0, "moire_peak": 2.0, "glare_fraction": 0.0, "identical_fraction": 0.0}


def _burst(subject: str, group: str, x: float, border: float = 0.0, **extra: float) -> fl.Burst:
    cues = {"pad_logit": x, "cue_border_frames": border, **IMAGE_CUES}
    cues.update(extra)
    label = "live" if group == "live" else "attack"
    return fl.Burst(f"{subject}-{group}-{x}", "src", subject, label, group, False, cues)


def _set(seed: int = 0) -> list[fl.Burst]:
    rng = np.random.default_rng(seed)
    bursts = []
    for s in range(6):
        bursts += [_burst(f"s{s}", "live", float(v)) for v in rng.normal(4.0, 1.0, 20)]
        bursts += [_burst(f"s{s}", "other prints", float(v)) for v in rng.normal(-5.0, 1.0, 10)]
    bursts += [_burst("s9", "screen replay", float(v)) for v in rng.normal(-3.0, 0.5, 5)]
    return bursts


def test_class_weights_give_live_half_and_each_attack_group_an_equal_share() -> None:
    bursts = _set()
    w = fl.class_weights(bursts)
    live = sum(wi for wi, b in zip(w, bursts, strict=True) if b.label == "live")
    prints = sum(wi for wi, b in zip(w, bursts, strict=True) if b.group == "other prints")
    screens = sum(wi for wi, b in zip(w, bursts, strict=True) if b.group == "screen replay")
    assert live == pytest.approx(w.sum() / 2) and prints == pytest.approx(screens)


def test_the_fit_is_deterministic_and_weighs_the_separating_feature() -> None:
    a = fl.fit(_set(), ("pad_logit", "cue_border_frames"))
    b = fl.fit(_set(), ("pad_logit", "cue_border_frames"))
    assert a.as_details() == b.as_details()
    assert a.coef[0] > 1.0 and abs(a.coef[1]) < 1e-6  # the border never varies here: no weight


def test_the_live_threshold_lets_at_most_one_percent_of_each_group_pass() -> None:
    groups = ["live"] * 3 + ["print"] * 200 + ["screen"] * 50
    p = np.concatenate([[0.9, 0.95, 0.99], np.linspace(0.0, 0.5, 200), np.linspace(0.0, 0.3, 50)])
    t = fl.live_threshold(p, groups)
    assert np.mean(p[3:203] >= t) <= 0.01 and np.mean(p[203:] >= t) <= 0.01
    assert np.sum(p[3:203] >= t) == 2  # 1% of 200 may pass: the threshold is not stricter than that
    assert not np.any(p[203:] >= t)  # 1% of 50 rounds down to none


def test_the_gap_threshold_is_the_middle_in_logit_or_the_apcer_point_on_overlap() -> None:
    groups = ["live"] * 100 + ["print"] * 100
    p = np.concatenate([np.full(100, 0.9), np.full(100, 0.1)])
    t = fl.gap_threshold(p, groups)
    low = fl.live_threshold(p, groups)
    mid = (math.log(low / (1 - low)) + math.log(0.9 / 0.1)) / 2
    assert t == pytest.approx(1 / (1 + math.exp(-mid)))
    overlap = np.concatenate([np.full(100, 0.2), np.full(100, 0.3)])
    assert fl.gap_threshold(overlap, groups) == fl.live_threshold(overlap, groups)


def test_leave_one_subject_out_never_fits_on_the_judged_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    bursts = _set()
    seen: list[set[str]] = []
    real_fit = fl.fit

    def spy(tune: list[fl.Burst], features: tuple[str, ...]) -> fl.Fit:
        seen.append({b.subject for b in tune})
        return real_fit(tune, features)

    monkeypatch.setattr(fl, "fit", spy)
    figures = fl.loso(bursts, ("pad_logit",), ImageCueLimits())
    subjects = {b.subject for b in bursts}
    assert len(seen) == len(subjects)
    assert all(len(subjects - s) == 1 for s in seen)  # each fold misses exactly its own subject
    # The replay's subject is judged by a fit that never saw a replay, and the threshold still holds.
    assert figures.apcer_by_group()["screen replay"].errors == 0
    assert figures.bpcer().value <= 0.05


def test_a_burst_the_mesh_could_not_measure_is_undetermined_and_a_veto_is_a_spoof() -> None:
    model = fl.fit(_set(), ("pad_logit",))
    limits = ImageCueLimits()
    missing = fl.Burst("x", "src", "s0", "live", "live", False, dict(IMAGE_CUES))
    assert fl.decide(model, missing, limits).outcome == "undetermined"
    frozen = _burst("s0", "live", 5.0, identical_fraction=1.0)
    assert fl.decide(model, frozen, limits).outcome == "spoof"
    assert fl.decide(model, _burst("s0", "live", 5.0), limits).outcome == "live"
