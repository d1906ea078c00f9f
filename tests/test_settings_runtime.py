"""Settings refuse unsafe values; the runtime wrapper picks providers from a preference list."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings
from app.vision.runtime import choose_providers


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEGATE_DATA_DIR", raising=False)
    monkeypatch.delenv("FACEGATE_MODEL_DIR", raising=False)
    s = Settings()
    assert s.data_dir == Path("./var") and s.models_path == Path("./var/models")
    # No pinned tau: the service applies the calibrated one; the default profile fuses SFace and dlib.
    assert s.tau is None and s.profile == "fusion" and s.detect_upsample_below_px == 600
    assert s.flip_average_for("dlib") and not s.flip_average_for("fusion")
    assert Settings(encode_flip_average=True).flip_average_for("fusion")
    assert s.onnx_providers[-1] == "CPUExecutionProvider"


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEGATE_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("FACEGATE_TAU", "0.5")
    s = Settings()
    assert s.models_path == tmp_path and s.tau == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau": 0.0},
        {"tau": 2.5},
        {"profile": "facenet"},
        {"detect_scale": 0.0},
        {"onnx_intra_op_threads": 0},
        {"onnx_providers": ("CUDAExecutionProvider",)},
        {"onnx_providers": ("TensorrtExecutionProvider", "CPUExecutionProvider")},
        {"no_such_setting": 1},
    ],
)
def test_unsafe_or_unknown_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_provider_preference_filtered_by_availability() -> None:
    pref = ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert choose_providers(pref, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(pref, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == list(pref)
    assert choose_providers(("CUDAExecutionProvider",), ["AzureExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]
