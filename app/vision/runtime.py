"""The one place that creates ONNX Runtime sessions.

Providers come from a preference list filtered by what this onnxruntime build offers (CUDA
first when present, CPU always); thread counts are explicit; every session gets one warm-up
run so the first request does not pay for lazy initialisation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

log = logging.getLogger(__name__)
_logged_choice = threading.Event()
_log_lock = threading.Lock()


def choose_providers(preference: Sequence[str], available: Sequence[str]) -> list[str]:
    """Keep the preferred providers this build has, in preference order; CPU is always last resort."""
    chosen = [p for p in preference if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _log_once(providers: list[str], intra: int, inter: int) -> None:
    with _log_lock:
        if _logged_choice.is_set():
            return
        _logged_choice.set()
    log.info(
        "onnxruntime %s: providers %s (available %s), intra_op_threads=%d inter_op_threads=%d",
        ort.__version__,
        providers,
        ort.get_available_providers(),
        intra,
        inter,
    )


def create_session(
    path: Path,
    *,
    providers: Sequence[str] = ("CUDAExecutionProvider", "CPUExecutionProvider"),
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning workers would steal the core that the numpy stages (pyramid, landmarks) need
    # between runs: measured 50 -> 47 ms per 640x480 detection on 2 cores with it off.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # onnxruntime's own warnings about unused providers are noise
    chosen = choose_providers(providers, ort.get_available_providers())
    if "CUDAExecutionProvider" in chosen and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu[cuda,cudnn] ships CUDA and cuDNN as wheels; load them before the session.
        ort.preload_dlls()
    _log_once(chosen, intra_op_threads, inter_op_threads)
    session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    active = session.get_providers()
    if active[0] != chosen[0]:
        # onnxruntime falls back to CPU when CUDA cannot start (no driver, no device): say so.
        log.warning("%s: %s unavailable at run time, running on %s", path.name, chosen[0], active[0])
    return session


def warm_up(session: ort.InferenceSession, feed: dict[str, NDArray[np.generic]]) -> None:
    """One inference so kernels, arenas and (on GPU) cuDNN plans exist before real traffic."""
    session.run(None, feed)
