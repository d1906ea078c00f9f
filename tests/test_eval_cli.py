"""`facegate eval verify` on a small real subset of the LFW pairs (needs ../shared/faces)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_faces


@pytest.mark.shared
def test_eval_verify_on_a_few_lfw_pairs(model_dir: Path, tmp_path: Path) -> None:
    pairs = shared_faces() / "lfw-dev" / "pairs.csv"
    env = {**os.environ, "FACEGATE_MODEL_DIR": str(model_dir), "FACEGATE_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "app.cli", "eval", "verify", "--pairs", str(pairs), "--limit", "12"]
    first = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    assert "pairs 12, images" in first.stdout
    accuracy = float(re.search(r"accuracy at tau=0\.600: ([\d.]+)%", first.stdout).group(1))  # type: ignore[union-attr]
    assert accuracy >= 90.0
    # Encodings are cached by image hash and model version: a rerun reads them back.
    assert list((tmp_path / "cache").glob("embeddings-dlib-resnet-v1_*.npz"))
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.stdout == first.stdout
