"""`facegate eval verify | openset | report` on small real subsets of LFW (needs ../shared/faces)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO, shared_faces


@pytest.mark.shared
def test_eval_verify_on_a_few_lfw_pairs(model_dir: Path, tmp_path: Path) -> None:
    pairs = shared_faces() / "lfw-dev" / "pairs.csv"
    env = {**os.environ, "FACEGATE_MODEL_DIR": str(model_dir), "FACEGATE_DATA_DIR": str(tmp_path)}
    plots = tmp_path / "plots"
    cmd = [sys.executable, "-m", "app.cli", "eval", "verify", "--pairs", str(pairs), "--limit", "12"]
    cmd += ["--plots", str(plots)]
    first = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    assert "pairs 12, images" in first.stdout
    # The default profile, at its reference operating point (no FACEGATE_TAU pinned).
    assert first.stdout.startswith("profile fusion (fused distance), templates fusion-v1:")
    accuracy = float(re.search(r"accuracy at tau=0\.647: ([\d.]+)%", first.stdout).group(1))  # type: ignore[union-attr]
    assert accuracy >= 90.0
    # The 12 pairs all come from fold 1, so cross-validation splits them into 10 folds.
    assert "over 10 folds split from the single fold of the CSV" in first.stdout
    assert re.search(r"TAR at FAR=0\.01: [\d.]+% \(tau=", first.stdout)
    assert re.search(r"equal error rate: [\d.]+% at tau=", first.stdout)
    for name in ("verify-pairs-roc.png", "verify-pairs-distances.png"):
        assert cv2.imread(str(plots / name)) is not None
    # Encodings are cached by image hash and model version: a rerun reads them back.
    assert list((tmp_path / "cache").glob("embeddings-fusion-v1_*.npz"))
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.stdout == first.stdout


def _run(args: list[str], data_dir: Path, model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEGATE_MODEL_DIR": str(model_dir), "FACEGATE_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "app.cli", "eval", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def _openset_files() -> list[str]:
    lfw = shared_faces() / "lfw-dev"
    return ["--gallery", str(lfw / "openset_gallery.csv"), "--probes", str(lfw / "openset_probes.csv")]


@pytest.mark.shared
def test_eval_openset_on_a_few_people(model_dir: Path, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    args = ["openset", *_openset_files(), "--shots", "3", "--limit", "4", "--plots", str(plots)]
    run = _run(args, tmp_path, model_dir)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    # 4 people x 3 photos; their later photos as mated probes and 4 people never enrolled.
    assert "shots 3: 4 people enrolled with 12 templates, gallery photos with no face 0" in out
    mated = int(re.search(r"probes: (\d+) enrolled, 4 not enrolled", out).group(1))  # type: ignore[union-attr]
    assert mated >= 4
    assert float(re.search(r"rank-1 identification rate: ([\d.]+)%", out).group(1)) >= 75.0  # type: ignore[union-attr]
    for fpir in ("1%", "0.3%", "0.1%"):
        assert f"FNIR at FPIR={fpir}: " in out
    # The door figures use the τ the service would apply to this gallery.
    assert re.search(r"operating point at tau=[\d.]+ \(calibrated \((prior|gallery), FAR 0\.001\)\): ", out)
    png = cv2.imread(str(plots / "openset-shots3-det.png"))
    assert png is not None and png.shape[2] == 3


@pytest.mark.shared
def test_eval_verify_dlib_profile_at_dlibs_operating_point(model_dir: Path, tmp_path: Path) -> None:
    pairs = shared_faces() / "lfw-dev" / "pairs.csv"
    run = _run(["verify", "--pairs", str(pairs), "--limit", "6", "--profile", "dlib"], tmp_path, model_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("profile dlib (l2 distance), templates dlib-resnet-v1:")
    assert re.search(r"accuracy at tau=0\.600: [\d.]+%", run.stdout)
    bad = _run(["verify", "--pairs", str(pairs), "--profile", "facenet"], tmp_path, model_dir)
    assert bad.returncode == 2 and "unknown profile 'facenet'" in bad.stderr


@pytest.mark.shared
def test_eval_openset_refuses_half_a_protocol(model_dir: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery.csv"
    gallery.write_text("identity,file,min_shots\nA,a.jpg,1\n")
    probes = tmp_path / "probes.csv"
    probes.write_text("file,true_identity,is_enrolled\nb.jpg,B,1\n")
    run = _run(["openset", "--gallery", str(gallery), "--probes", str(probes)], tmp_path, model_dir)
    assert run.returncode == 2
    assert "marked enrolled but not in the gallery" in run.stderr


@pytest.mark.shared
def test_eval_report_writes_one_page_with_its_charts(model_dir: Path, tmp_path: Path) -> None:
    pairs = shared_faces() / "lfw-dev" / "pairs.csv"
    out = tmp_path / "report"
    args = ["report", "--pairs", str(pairs), *_openset_files(), "--limit", "3", "--out", str(out)]
    run = _run(args, tmp_path, model_dir)
    assert run.returncode == 0, run.stderr
    page = (out / "report.md").read_text()
    assert page.index("## Verification (1:1)") < page.index("## Open-set identification (1:N)")
    assert "| 1 shot | 3 shots |" in page and "| people / templates | 3 / 3 | 3 / 9 |" in page
    assert page.index("## Open-set identification (1:N)") < page.index("## Threshold calibration")
    assert "Not in this report: Liveness." in page  # --liveness-attacks 0
    images = set(re.findall(r"!\[[^]]*\]\(([^)]+)\)", page))
    expected = {"verify-pairs-roc.png", "verify-pairs-distances.png", "openset-det.png"}
    expected.add("calibration-far.png")
    # The pair classifier's ROC when var/models-extra holds a head trained on these encodings.
    assert images - expected <= {"pair-classifier-pairs-roc.png"} and expected <= images
    for name in images:
        assert cv2.imread(str(out / name)) is not None
