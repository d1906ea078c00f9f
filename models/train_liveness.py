"""Train the liveness classifier on simulated bursts and export it to ONNX.

A one-hidden-layer MLP (tanh) over ``app.vision.liveness_cues.FEATURE_NAMES``, trained by
full-batch Adam in numpy from fixed seeds (deterministic), with the standardisation inside the
ONNX graph. Three simulated sets from three seeds: one trains, one calibrates the threshold
(the lowest P(live) that keeps every attack type's acceptance at or under ``max_apcer``, an
abstention counting as no acceptance), one reports. Bursts without turning evidence (nose
offset and eye asymmetry changing beyond landmark noise, ``min_motion_snr``) are "undetermined"
at run time: they take no part in training, and count as rejections in ``apcer_*`` and
``bpcer_overall``.

A second, lower threshold (``spoof_threshold``) is where the geometry may call a burst a spoof:
the P(live) below which at most ``max_spoof_bpcer`` of the judged live bursts fall. Five points
cannot tell a tilted print from a head in most bursts (see ``liveness_cues``), so between the two
thresholds the verdict is "undetermined" (ask for a larger head turn), not "spoof": a spoof
verdict is an accusation that security staff act on, and an ambiguous burst is not evidence.

    .venv/bin/python -m models.train_liveness          # train, print the held-out report
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from app.vision import liveness_cues
from app.vision.liveness_cues import FEATURE_NAMES, geometry_features
from models import liveness_sim
from models.liveness_sim import ATTACKS, KINDS, simulate_set
from models.onnx_graph import FLOAT, GraphBuilder, rename_output, tensor_info

log = logging.getLogger(__name__)

PARAMS: dict[str, Any] = {
    "seeds": {"train": 20261124, "calibrate": 20261125, "test": 20261126, "init": 7},
    "counts": {"live": 4000, "flat": 1000, "bent_v": 1000, "bent_h": 1000, "screen": 1000},
    "held_out_counts": {"live": 2000, "flat": 500, "bent_v": 500, "bent_h": 500, "screen": 500},
    "hidden": 16,
    "steps": 2500,
    "learning_rate": 0.01,
    "weight_decay": 1e-4,
    "max_apcer": 0.01,
    # Live bursts the geometry alone may call a spoof (the rest of the ambiguous band abstains).
    "max_spoof_bpcer": 0.01,
    # Turning evidence (p and a changes over their noise) >= 3x what noise alone gives, else abstain.
    "min_motion_snr": 3.0,
}
VERSION_PREFIX = "facegate-liveness-mlp-v1"
INPUT_NAME = "features"
OUTPUT_NAME = "p_live"


@dataclass(frozen=True)
class Mlp:
    mean: NDArray[np.float64]  # (K,)
    scale: NDArray[np.float64]  # (K,)
    w1: NDArray[np.float64]  # (K, H)
    b1: NDArray[np.float64]  # (H,)
    w2: NDArray[np.float64]  # (H,)
    b2: float

    def predict(self, x: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """P(live) per row, in float32 operation by operation as the ONNX graph computes it."""
        f32 = np.float32
        z = (x.astype(f32) - self.mean.astype(f32)) / self.scale.astype(f32)
        h = np.tanh(z @ self.w1.astype(f32) + self.b1.astype(f32))
        logit = h @ self.w2.astype(f32).reshape(-1, 1) + f32(self.b2)
        out: NDArray[np.float32] = (f32(1.0) / (f32(1.0) + np.exp(-logit))).astype(f32)
        return out[:, 0]


@dataclass(frozen=True)
class Dataset:
    x: NDArray[np.float64]  # (N, K) features
    kinds: NDArray[np.str_]  # (N,)
    snr: NDArray[np.float64]  # (N,) rotation evidence
    rotation_deg: NDArray[np.float64]  # (N,)


def make_dataset(seed: int, counts: dict[str, int]) -> Dataset:
    bursts = simulate_set(seed, counts)
    x = np.array([geometry_features(b.landmarks, b.t) for b in bursts])
    snr = 10.0 ** x[:, FEATURE_NAMES.index("log_motion_snr")]
    return Dataset(
        x=x,
        kinds=np.array([b.kind for b in bursts]),
        snr=snr,
        rotation_deg=np.array([b.rotation_deg for b in bursts]),
    )


def train_mlp(x: NDArray[np.float64], live: NDArray[np.bool_], params: dict[str, Any]) -> Mlp:
    """Weighted logistic loss (live and attacks weigh the same in total), full-batch Adam."""
    rng = np.random.default_rng(params["seeds"]["init"])
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    z = (x - mean) / scale
    y = live.astype(np.float64)
    weight = np.where(live, 0.5 / max(int(live.sum()), 1), 0.5 / max(int((~live).sum()), 1))
    k, hidden = x.shape[1], int(params["hidden"])
    theta = [
        rng.normal(0.0, 1.0 / np.sqrt(k), size=(k, hidden)),
        np.zeros(hidden),
        rng.normal(0.0, 1.0 / np.sqrt(hidden), size=hidden),
        np.zeros(1),
    ]
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    lr, decay = float(params["learning_rate"]), float(params["weight_decay"])
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, int(params["steps"]) + 1):
        w1, b1, w2, b2 = theta
        h = np.tanh(z @ w1 + b1)
        p = 1.0 / (1.0 + np.exp(-(h @ w2 + b2[0])))
        g_logit = (p - y) * weight
        g_w2 = h.T @ g_logit + decay * w2
        g_b2 = np.array([g_logit.sum()])
        g_h = np.outer(g_logit, w2) * (1.0 - h * h)
        g_w1 = z.T @ g_h + decay * w1
        g_b1 = g_h.sum(axis=0)
        for i, g in enumerate((g_w1, g_b1, g_w2, g_b2)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**step)
            v_hat = v[i] / (1 - beta2**step)
            theta[i] = theta[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    w1, b1, w2, b2 = theta
    return Mlp(mean=mean, scale=scale, w1=w1, b1=b1, w2=w2, b2=float(b2[0]))


def choose_threshold(p: NDArray[np.float32], kinds: NDArray[np.str_], max_apcer: float) -> float:
    """The lowest threshold at which every attack type's acceptance (p >= threshold) is <= max_apcer."""
    threshold = 0.5
    worst = 0.0
    for kind in ATTACKS:
        scores = np.sort(p[kinds == kind].astype(np.float64))
        if scores.size == 0:
            continue
        allowed = int(np.floor(max_apcer * scores.size))  # attacks that may score at or above it
        # Just above the (allowed+1)-th highest score: exactly `allowed` attacks remain above.
        worst = max(worst, float(np.nextafter(scores[-(allowed + 1)], np.inf)))
    return max(threshold, worst)


def choose_spoof_threshold(p_live_judged: NDArray[np.float32], max_bpcer: float, threshold: float) -> float:
    """The highest P(live) below which at most ``max_bpcer`` of the judged live bursts fall (<= threshold)."""
    scores = np.sort(p_live_judged.astype(np.float64))
    if scores.size == 0:
        return 0.0
    allowed = int(np.floor(max_bpcer * scores.size))  # live bursts that may fall below it
    return min(float(scores[allowed]), threshold)


def error_rates(
    p: NDArray[np.float32], data: Dataset, threshold: float, min_snr: float, spoof_threshold: float = 0.0
) -> dict[str, float]:
    """APCER per attack type, BPCER, and how many bursts abstained.

    ``apcer_*``: attacks accepted over all attacks of the type (an abstention accepts nothing);
    ``apcer_*_judged``: over the judged ones only; ``spoof_*``: attacks the geometry called a
    spoof (below ``spoof_threshold``). ``bpcer``: live bursts not accepted over the judged ones;
    ``bpcer_overall``: over all live bursts, abstentions counted as rejections; ``bpcer_spoof``:
    judged live bursts called a spoof.
    """
    judged = data.snr >= min_snr
    accepted = (p >= threshold) & judged
    called_spoof = (p < spoof_threshold) & judged
    out: dict[str, float] = {}
    for kind in KINDS:
        mask = data.kinds == kind
        n_judged = max(int((judged & mask).sum()), 1)
        if kind == "live":
            out["bpcer"] = 1.0 - float((accepted & mask).sum()) / n_judged
            out["bpcer_overall"] = 1.0 - float((accepted & mask).sum()) / max(int(mask.sum()), 1)
            out["bpcer_spoof"] = float((called_spoof & mask).sum()) / n_judged
            moving = mask & (data.rotation_deg >= 10.0)
            out["bpcer_rotation_ge_10deg"] = 1.0 - float((accepted & moving).sum()) / max(
                int((judged & moving).sum()), 1
            )
        else:
            out[f"apcer_{kind}"] = float((accepted & mask).sum()) / max(int(mask.sum()), 1)
            out[f"apcer_{kind}_judged"] = float((accepted & mask).sum()) / n_judged
            out[f"spoof_{kind}_judged"] = float((called_spoof & mask).sum()) / n_judged
        out[f"abstained_{kind}"] = 1.0 - float((judged & mask).sum()) / max(int(mask.sum()), 1)
    still = (data.kinds == "live") & (data.rotation_deg < 2.0)
    out["abstained_live_rotation_lt_2deg"] = 1.0 - float((judged & still).sum()) / max(int(still.sum()), 1)
    return {k: round(v, 4) for k, v in out.items()}


@dataclass(frozen=True)
class Trained:
    model: Mlp
    threshold: float
    spoof_threshold: float
    report: dict[str, float]


def train(params: dict[str, Any] = PARAMS) -> Trained:
    seeds, counts, min_snr = params["seeds"], params["counts"], float(params["min_motion_snr"])
    data = make_dataset(int(seeds["train"]), counts)
    keep = data.snr >= min_snr
    model = train_mlp(data.x[keep], data.kinds[keep] == "live", params)
    calib = make_dataset(int(seeds["calibrate"]), params["held_out_counts"])
    # An abstention accepts nothing: it scores below any threshold (APCER over all attacks, ISO 30107-3).
    calib_p = np.where(calib.snr >= min_snr, model.predict(calib.x), np.float32(-1.0)).astype(np.float32)
    threshold = choose_threshold(calib_p, calib.kinds, float(params["max_apcer"]))
    live_judged = calib_p[(calib.kinds == "live") & (calib.snr >= min_snr)]
    spoof_threshold = choose_spoof_threshold(live_judged, float(params["max_spoof_bpcer"]), threshold)
    test = make_dataset(int(seeds["test"]), params["held_out_counts"])
    report = error_rates(model.predict(test.x), test, threshold, min_snr, spoof_threshold)
    return Trained(model=model, threshold=threshold, spoof_threshold=spoof_threshold, report=report)


def export_onnx(model: Mlp, path: Path) -> None:
    g = GraphBuilder()
    k = len(model.mean)
    z = g.op("Sub", [INPUT_NAME, g.const("mean", model.mean.astype(np.float32))])
    z = g.op("Div", [z, g.const("scale", model.scale.astype(np.float32))])
    h = g.op("MatMul", [z, g.const("w1", model.w1.astype(np.float32))])
    h = g.op("Tanh", [g.op("Add", [h, g.const("b1", model.b1.astype(np.float32))])])
    logit = g.op("MatMul", [h, g.const("w2", model.w2.astype(np.float32).reshape(-1, 1))])
    logit = g.op("Add", [logit, g.const("b2", np.array([model.b2], dtype=np.float32))])
    out = g.op("Sigmoid", [logit])
    rename_output(g, out, OUTPUT_NAME)
    onnx_model = g.model(
        [tensor_info(INPUT_NAME, FLOAT, ["batch", k])],
        [tensor_info(OUTPUT_NAME, FLOAT, ["batch", 1])],
        "facegate_liveness",
        "P(live) from per-burst geometry features (app/vision/liveness_cues.py FEATURE_NAMES)",
    )
    onnx.save(onnx_model, str(path))


def training_fingerprint(params: dict[str, Any] = PARAMS) -> str:
    """sha256 of the code and parameters that determine the classifier: a change retrains it."""
    digest = hashlib.sha256()
    for module in (liveness_cues, liveness_sim, sys.modules[__name__]):
        digest.update(inspect.getsource(module).encode())
    digest.update(json.dumps(params, sort_keys=True).encode())
    return digest.hexdigest()


def build_liveness(target: Path) -> dict[str, Any]:
    """Train, export to ``target`` and return the manifest details (features, thresholds, report)."""
    trained = train()
    export_onnx(trained.model, target)
    return {
        "input": {"name": INPUT_NAME, "features": list(FEATURE_NAMES)},
        "output": {"name": OUTPUT_NAME, "meaning": "P(live)"},
        "feature_mean": [float(v) for v in trained.model.mean],
        "threshold": trained.threshold,
        "spoof_threshold": trained.spoof_threshold,
        "min_motion_snr": float(PARAMS["min_motion_snr"]),
        "training": {
            "script": "models/train_liveness.py",
            "sha256": training_fingerprint(),
            "seeds": PARAMS["seeds"],
            "simulated_test": trained.report,
        },
    }


def main() -> None:
    trained = train()
    print(f"live at P(live) >= {trained.threshold:.4f}, spoof below {trained.spoof_threshold:.4f}")
    for key, value in trained.report.items():
        print(f"  {key}: {value:.4f}")


if __name__ == "__main__":
    main()
