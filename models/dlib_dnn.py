"""Parse a dlib DNN file (``net_type`` serialized with dlib::serialize) into plain records.

Layout (dlib/dnn/core.h): the loss record, one version integer per wrapper (add_layer,
tag, skip), the input layer record, then each computational layer from the input outward:
its details record, three bools, and its trailing tensors. Tags, skips and the tag an
``add_prev`` refers to are not stored, so the converters own the architecture; this module
only turns bytes into records and proves the file was consumed to its last byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.dlib_format import DlibFormatError, DlibReader

INPUT_TAGS = ("input_rgb_image_sized", "input_rgb_image_pyramid")


@dataclass
class Layer:
    """One computational layer: its dlib tag and parsed fields."""

    tag: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class DnnFile:
    loss: dict[str, Any]
    wrapper_versions: list[int]
    input: dict[str, Any]
    layers: list[Layer]  # from the input outward

    def tags(self) -> list[str]:
        return [layer.tag for layer in self.layers]


def _read_loss(r: DlibReader) -> dict[str, Any]:
    tag = r.string()
    if tag == "loss_metric_2":
        return {"tag": tag, "margin": r.float(), "distance_threshold": r.float()}
    if tag == "loss_mmod_":
        return {"tag": tag, **_read_mmod_options(r)}
    raise DlibFormatError(f"{r.name}: unsupported loss layer {tag!r}")


def _read_mmod_options(r: DlibReader) -> dict[str, Any]:
    version = r.int()
    if version not in (1, 3, 4):
        raise DlibFormatError(f"{r.name}: unsupported mmod_options version {version}")
    windows = []
    if version == 1:  # one detector window stored as width, height
        windows.append({"width": r.int(), "height": r.int(), "label": ""})
    else:  # detector_windows: vector of (width, height[, label])
        for _ in range(r.int()):
            width = r.int()
            height = r.int()
            label = r.string() if version >= 4 else ""
            windows.append({"width": width, "height": height, "label": label})
    opts: dict[str, Any] = {"version": version, "detector_windows": windows}
    opts["loss_per_false_alarm"] = r.float()
    opts["loss_per_missed_target"] = r.float()
    opts["truth_match_iou_threshold"] = r.float()
    opts["overlaps_nms"] = {"iou_thresh": r.float(), "percent_covered_thresh": r.float()}
    opts["overlaps_ignore"] = {"iou_thresh": r.float(), "percent_covered_thresh": r.float()}
    if version >= 4:
        opts["use_bounding_box_regression"] = r.bool()
        opts["bbr_lambda"] = r.float()
    return opts


def _read_input(r: DlibReader) -> dict[str, Any]:
    tag = r.string()
    if tag not in INPUT_TAGS:
        raise DlibFormatError(f"{r.name}: unsupported input layer {tag!r}")
    out: dict[str, Any] = {"tag": tag, "mean_rgb": [r.float(), r.float(), r.float()]}
    if tag == "input_rgb_image_sized":
        out["nr"] = r.int()
        out["nc"] = r.int()
    return out


def _read_details(r: DlibReader) -> Layer:
    tag = r.string()
    f: dict[str, Any] = {}
    if tag in {"con_4", "con_5"}:
        params = r.tensor()
        f["num_filters"] = r.int()
        f["nr"] = r.int()
        f["nc"] = r.int()
        f["stride_y"] = r.int()
        f["stride_x"] = r.int()
        f["pad_y"] = r.int()
        f["pad_x"] = r.int()
        f["filters_alias"] = r.alias_tensor()
        f["biases_alias"] = r.alias_tensor()
        f["lr_mults"] = [r.float() for _ in range(4)]
        if tag == "con_5":
            f["use_bias"] = r.bool()
        f["params"] = params.reshape(-1)
    elif tag == "affine_":
        params = r.tensor()
        f["gamma_alias"] = r.alias_tensor()
        f["beta_alias"] = r.alias_tensor()
        f["mode"] = r.int()
        f["params"] = params.reshape(-1)
    elif tag == "bn_con2":
        params = r.tensor()
        f["gamma_alias"] = r.alias_tensor()
        f["beta_alias"] = r.alias_tensor()
        f["means"] = r.tensor().reshape(-1)
        f["invstds"] = r.tensor().reshape(-1)
        f["running_means"] = r.tensor().reshape(-1)
        f["running_variances"] = r.tensor().reshape(-1)
        f["num_updates"] = r.int()
        f["running_stats_window_size"] = r.int()
        f["lr_mults"] = [r.float() for _ in range(4)]
        f["eps"] = r.float()
        f["params"] = params.reshape(-1)
    elif tag in ("relu_", "add_prev_"):
        pass
    elif tag in ("max_pool_2", "avg_pool_2"):
        f["nr"] = r.int()
        f["nc"] = r.int()
        f["stride_y"] = r.int()
        f["stride_x"] = r.int()
        f["pad_y"] = r.int()
        f["pad_x"] = r.int()
    elif tag == "fc_2":
        f["num_outputs"] = r.int()
        f["num_inputs"] = r.int()
        f["params"] = r.tensor().reshape(-1)
        f["weights_alias"] = r.alias_tensor()
        f["biases_alias"] = r.alias_tensor()
        f["bias_mode"] = r.int()
        f["lr_mults"] = [r.float() for _ in range(4)]
    else:
        raise DlibFormatError(f"{r.name}: unsupported layer record {tag!r} at byte {r.pos}")
    return Layer(tag, f)


def read_dnn(path: Path) -> DnnFile:
    """Read a whole dlib DNN file; raises DlibFormatError unless every byte is consumed."""
    r = DlibReader(path.read_bytes(), name=str(path))
    loss_version = r.int()
    if loss_version != 1:
        raise DlibFormatError(f"{path}: expected add_loss_layer version 1, found {loss_version}")
    loss = _read_loss(r)
    versions: list[int] = []
    while not any(r.peek_string_is(t) for t in INPUT_TAGS):
        versions.append(r.int())
        if len(versions) > 10_000:
            raise DlibFormatError(f"{path}: no input layer record found")
    inp = _read_input(r)
    layers: list[Layer] = []
    n_add_layers = sum(1 for v in versions if v in (2, 3))
    for index in range(n_add_layers):
        layer = _read_details(r)
        layer.fields["flags"] = (r.bool(), r.bool(), r.bool())
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        r.tensor()  # params_grad, or grad_final for the input-side layer
        if index == 0:
            layer.fields["sample_expansion_factor"] = r.int()
        layers.append(layer)
    r.expect_end()
    return DnnFile(loss=loss, wrapper_versions=versions, input=inp, layers=layers)


def conv_params(layer: Layer) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Split a con_ layer's flat params into OIHW filters and biases."""
    f = layer.fields
    n_in = f["filters_alias"][1]
    o, kh, kw = f["num_filters"], f["nr"], f["nc"]
    n_w = o * n_in * kh * kw
    params: NDArray[np.float32] = f["params"]
    if params.size != n_w + o:
        raise DlibFormatError(f"con_ layer has {params.size} params, expected {n_w + o}")
    return params[:n_w].reshape(o, n_in, kh, kw), params[n_w:].copy()
