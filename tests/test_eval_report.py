"""The report's calibration, pair-classifier and liveness sections: pure parts by hand, the rest on
small real subsets (needs ../shared/faces)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.evaluation.liveness_eval import (
    LivenessReport,
    Observer,
    attack_photos,
    evaluate_attacks,
    evaluate_live_video,
)
from app.evaluation.openset import GalleryRow, ProbeRow
from app.evaluation.pair_classifier import PairClassifier
from app.evaluation.pairs import evaluate_pairs
from app.evaluation.report import (
    calibrate_openset,
    calibration_section,
    liveness_section,
    openset_calibration,
    pair_classifier_section,
    pair_classifier_skipped,
    render,
    roc_auc,
    score_pairs,
    training_overlap,
)
from app.settings import Settings
from tests.conftest import REPO, shared_faces

HEAD = REPO / "var" / "models-extra" / "pair_classifier.onnx"


def test_roc_auc_by_hand() -> None:
    # Distances: positives 0.1, 0.5; negatives 0.4, 0.5, 0.9. Pairs (pos < neg): 0.1 beats all 3;
    # 0.5 beats 0.9, ties 0.5 (half), loses to 0.4 -> (3 + 1 + 0.5) / 6.
    assert roc_auc(np.array([0.1, 0.5]), np.array([0.4, 0.5, 0.9])) == pytest.approx(4.5 / 6)
    assert roc_auc(np.array([0.1]), np.array([0.2])) == 1.0
    # A missing distance (no face) is the worst: below nothing, tied with another missing one.
    assert roc_auc(np.array([np.nan]), np.array([0.3, np.nan])) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.array([0.1]), np.array([]))


def test_training_overlap_reads_the_sidecar(tmp_path: Path) -> None:
    meta = {
        "training": {
            "pairs_csv": "lfw-dev/pairs.csv",
            "pairs_csv_folds": [1, 2, 3],
            "extra_csv": "lfw-dev/pairs_extra.csv",
            "extra_csv_folds": [1, 2],
        }
    }
    main = tmp_path / "lfw-dev" / "pairs.csv"
    assert training_overlap(main, [1], meta).trained_on
    held = training_overlap(main, [4, 5], meta)
    assert not held.trained_on and "folds 4, 5 were held out" in held.note
    assert training_overlap(tmp_path / "lfw-dev" / "pairs_extra.csv", [2], meta).trained_on
    other = training_overlap(tmp_path / "elsewhere" / "pairs.csv", [1], meta)
    assert not other.trained_on and "not one of the head's training CSVs" in other.note


def test_calibrate_openset_by_hand() -> None:
    # Two people on a line, two templates each; strangers at known distances from them.
    def vec(x: float) -> np.ndarray:
        return np.array([x, 0.0], dtype=np.float32)

    files = {Path(n): vec(x) for n, x in [("a1", 0.0), ("a2", 0.1), ("b1", 1.0), ("b2", 1.2)]}
    gallery = [GalleryRow("A", Path("a1"), 1), GalleryRow("A", Path("a2"), 1)]
    gallery += [GalleryRow("B", Path("b1"), 1), GalleryRow("B", Path("b2"), 1)]
    strangers = {Path("s1"): vec(0.55), Path("s2"): vec(3.0), Path("s3"): None}
    probes = [ProbeRow(f, "S", False) for f in strangers]
    embeddings = {**files, **strangers}
    result = calibrate_openset(gallery, probes, embeddings, shots=2, tau=0.5, target_far=1e-2, dim=2)
    r = result.report
    assert (r.people, r.templates, r.comparisons) == (2, 4, 4)
    assert result.names == {1: "A", 2: "B"}
    assert result.strangers_no_face == 1
    assert r.strangers is not None and r.strangers.strangers == 2
    # Nearest person: s1 at 0.45 (A's a2), s2 at 1.8: one of the two below 0.5, none below 0.44.
    assert r.strangers.matches_at_tau == 1
    seen = {round(p.tau, 2): p.stranger_matches for p in r.curve}
    assert (seen[0.44], seen[0.46], seen[0.8], seen[0.5]) == (0, 1, 1, 1)
    # The impostor comparisons: a1->B 1.0, a2->B 0.9, b1->A 0.9, b2->A 1.1; look-alike A/B at 0.9.
    assert r.look_alikes[0].distance == pytest.approx(0.9)


@pytest.mark.shared
def test_calibration_section_on_a_few_people(pipeline, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lfw = shared_faces() / "lfw-dev"
    gallery, probes = lfw / "openset_gallery.csv", lfw / "openset_probes.csv"
    results = [
        openset_calibration(pipeline, settings, gallery, probes, s, limit=4, cache_dir=tmp_path / "cache")
        for s in (1, 3)
    ]
    assert [r.report.templates for r in results] == [4, 12]
    assert all(r.report.people == 4 and r.report.strangers is not None for r in results)
    section = calibration_section(results, tmp_path)
    assert section.key == "calibration"
    assert "### 1 shot" in section.body and "### 3 shots" in section.body
    # No pinned τ: the curve marks the τ the service would apply to this gallery.
    applied = results[0].report.tau
    assert settings.tau is None and f"| {applied:.2f} (τ) |" in section.body
    assert "recommended τ for FAR 0.001" in section.body and "FACEGATE_TARGET_STRANGER_FAR" in section.body
    assert "Closest different people" in section.body
    png = cv2.imread(str(tmp_path / "calibration-far.png"))
    assert png is not None and png.shape[2] == 3


@pytest.mark.shared
def test_pair_classifier_section_on_a_few_pairs(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not HEAD.is_file():
        skipped = pair_classifier_skipped(HEAD, "no such file")
        assert skipped.body.startswith("Skipped: no such file")
        pytest.skip(f"{HEAD} is absent")
    pairs = shared_faces() / "lfw-dev" / "pairs.csv"
    cache = tmp_path / "cache"
    report = evaluate_pairs(pipeline, pairs, 0.6, limit=12, cache_dir=cache)
    # The test pipeline makes plain (not flip-averaged) encodings: no model-version check here.
    head = PairClassifier(HEAD)
    result = score_pairs(head, pipeline, pairs, report, limit=12, cache_dir=cache)
    assert result.p_same.shape == (12,) and np.all((result.p_same >= 0) & (result.p_same <= 1))
    assert result.overlap.trained_on  # fold 1 of pairs.csv is in the exported head's training set
    section = pair_classifier_section([result], HEAD, tmp_path)
    body = section.body
    assert "not held-out" in body and "held out (5-fold, sidecar)" in body
    assert re.search(r"\| ROC AUC \| 1\.0000 \| [01]\.\d{4} \|", body)
    assert "TAR at FAR = 0.001" in body
    assert cv2.imread(str(tmp_path / "pair-classifier-pairs-roc.png")) is not None


@pytest.mark.shared
def test_liveness_section_on_one_photo(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    faces_dir = shared_faces()
    liveness = pipeline.liveness
    report = LivenessReport(operating_threshold=liveness.threshold)
    observer = Observer(pipeline.faces, tmp_path / "cache", "test")
    evaluate_attacks(observer, liveness.judge, attack_photos(faces_dir, 1, seed=0), 0, report=report)
    video = faces_dir / "videos" / "face_recognition_short_hamilton_clip.mp4"
    evaluate_live_video(observer, liveness.judge, video, 0, report=report, frames=range(100, 112))
    section = liveness_section(report, 1, tmp_path)
    body = section.body
    for row in ("| print_flat | 1 |", "| print_bent | 1 |", "| screen | 1 |", "| live video |"):
        assert row in body
    assert "APCER, worst attack type" in body and "BPCER at APCER ≤ 1%" in body
    assert "3-D masks" in body and "Injected frames" in body
    page = render([section])
    assert "## Liveness" in page
