"""Convert dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) to ONNX.

The network is dlib's ``cnn_face_detection_model_v1`` net type::

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>
    downsampler = 3 x [con 5x5/2 no pad -> bn -> relu] (16, 32, 32 filters)
    rcon5       =     [con 5x5/1 pad 2  -> bn -> relu] (45 filters)

The file stores ``bn_con`` layers; dlib turns each into an ``affine_`` layer with the
*running* statistics when it loads the test-time net, so they fold into the preceding
convolution. The ONNX graph is only the fully convolutional part: the tiled image pyramid
(input) and the sliding-window decoding + NMS (output) live in ``app.vision.detector``,
driven by the manifest this converter returns. By default the graph is rewritten, without
changing what it computes, into a shape onnxruntime's CPU kernels run ~15% faster
(``_emit_graph``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from models.dlib_dnn import DnnFile, Layer, conv_params, read_dnn
from models.dlib_format import DlibFormatError

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime >= 1.14

# (filters, kernel, stride, pad) of each convolution, input side first; bn + relu follow all but the last.
ARCHITECTURE: tuple[tuple[int, int, int, int], ...] = (
    (16, 5, 2, 0),
    (32, 5, 2, 0),
    (32, 5, 2, 0),
    (45, 5, 1, 2),
    (45, 5, 1, 2),
    (45, 5, 1, 2),
    (1, 9, 1, 4),
)

# dlib's input_rgb_image_pyramid deserializer fills these for the version-1 tag, which does
# not store them ("input_rgb_image_pyramid2" does).
DEFAULT_PYRAMID_PADDING = 10
DEFAULT_PYRAMID_OUTER_PADDING = 11
# The net type's pyramid_down<6>: each level is 5/6 of the previous one. Not stored in the file.
PYRAMID_N = 6
# compute_tiled_image_pyramid_details() stops below this level height (a constant in dlib).
PYRAMID_MIN_LEVEL_HEIGHT = 5


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise DlibFormatError(f"mmod detector: {what}")


def _fold_bn(
    filters: NDArray[np.float32], biases: NDArray[np.float32], bn: Layer
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Fold bn_con (as dlib's affine_(bn_) does: running statistics) into the convolution."""
    f = bn.fields
    n = filters.shape[0]
    params: NDArray[np.float32] = f["params"]
    _expect(params.size == 2 * n, f"bn_con2 has {params.size} params for {n} channels")
    for key in ("running_means", "running_variances"):
        _expect(f[key].size == n, f"bn_con2 {key} has {f[key].size} values for {n} channels")
    gamma, beta = params[:n], params[n:]
    # dlib computes g and b in float32; folding in float64 keeps the rounding small.
    g = gamma.astype(np.float64) / np.sqrt(f["running_variances"].astype(np.float64) + float(f["eps"]))
    b = beta.astype(np.float64) - g * f["running_means"].astype(np.float64)
    w = filters.astype(np.float64) * g[:, None, None, None]
    bias = biases.astype(np.float64) * g + b
    return w.astype(np.float32), bias.astype(np.float32)


def _check_layers(dnn: DnnFile) -> list[tuple[Layer, Layer | None]]:
    """Pair each con_4 with its bn_con2, checking the layer sequence against ARCHITECTURE."""
    expected_tags: list[str] = []
    for i in range(len(ARCHITECTURE)):
        expected_tags += ["con_4"] if i == len(ARCHITECTURE) - 1 else ["con_4", "bn_con2", "relu_"]
    _expect(dnn.tags() == expected_tags, f"layer sequence {dnn.tags()} is not {expected_tags}")
    pairs: list[tuple[Layer, Layer | None]] = []
    pos = 0
    for i in range(len(ARCHITECTURE)):
        last = i == len(ARCHITECTURE) - 1
        pairs.append((dnn.layers[pos], None if last else dnn.layers[pos + 1]))
        pos += 1 if last else 3
    return pairs


def _receptive_mapping(convs: list[tuple[int, int, int]]) -> tuple[int, int]:
    """dlib's output_tensor_to_input_tensor for a conv stack: p_in = stride * p_out + offset.

    Each con_ maps p -> p * stride - pad + kernel // 2, applied from the output inward.
    """
    stride, offset = 1, 0
    for kernel, s, pad in reversed(convs):
        # compose: p_in = (stride * p + offset) * s - pad + kernel // 2
        stride, offset = stride * s, offset * s - pad + kernel // 2
    return stride, offset


def _min_input_size(convs: list[tuple[int, int, int]]) -> int:
    """Smallest tiled-image side every conv can still cover (dlib refuses smaller inputs)."""
    for n0 in range(1, 10_000):
        n = n0
        for kernel, s, pad in convs:
            if n + 2 * pad < kernel:
                break
            n = (n + 2 * pad - kernel) // s + 1
        else:
            return n0
    raise DlibFormatError("mmod detector: no input size fits the network")


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def _emit_graph(
    layers: list[tuple[NDArray[np.float32], NDArray[np.float32], int, int]], channel_block: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Conv (+ Relu) nodes for folded layers (filters, biases, stride, pad), input side first.

    With ``channel_block`` > 1 the graph is rewritten for onnxruntime's CPU kernels without
    changing its values: channel counts are zero-padded to a multiple of the block (45 -> 48;
    MLAS only runs its fast blocked-layout convolution when they divide evenly, and the padded
    filters are all zero, so relu(0 + 0) = 0 adds nothing downstream), and the final 9x9 conv
    to a single map becomes a depthwise 9x9 conv plus a 1x1 sum over channels (a one-output
    conv wastes 15/16 of a blocked kernel). Only the float summation order differs: ~1e-6.
    """
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def conv(i: int, x: str, w: NDArray[np.float32], b: NDArray[np.float32], out: str, **attrs: Any) -> str:
        inits.extend([numpy_helper.from_array(w, f"conv{i}_w"), numpy_helper.from_array(b, f"conv{i}_b")])
        k = w.shape[2]
        nodes.append(
            helper.make_node(
                "Conv", [x, f"conv{i}_w", f"conv{i}_b"], [out], name=f"conv{i}", kernel_shape=[k, k], **attrs
            )
        )
        return out

    x, padded_in = "input", 3
    last = len(layers) - 1
    for i, (filters, biases, s, pad) in enumerate(layers):
        w, b = filters, biases
        n_out, n_in = w.shape[:2]
        if channel_block > 1:
            n_out_p = n_out if i == last else _round_up(n_out, channel_block)
            w = np.pad(w, ((0, n_out_p - n_out), (0, padded_in - n_in), (0, 0), (0, 0)))
            b = np.pad(b, (0, n_out_p - n_out))
            n_out = n_out_p
        if i == last and channel_block > 1 and n_out == 1:
            depthwise = np.ascontiguousarray(w.transpose(1, 0, 2, 3))  # (C, 1, k, k)
            zeros = np.zeros(w.shape[1], dtype=np.float32)
            y = conv(i, x, depthwise, zeros, "depthwise", strides=[s, s], pads=[pad] * 4, group=w.shape[1])
            ones = np.ones((1, w.shape[1], 1, 1), dtype=np.float32)
            conv(i + 1, y, ones, b, "scores")
            break
        y = conv(i, x, w, b, "scores" if i == last else f"conv{i}", strides=[s, s], pads=[pad] * 4)
        if i != last:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
        padded_in = n_out
    return nodes, inits


def convert_detector(dat_path: Path, out_path: Path, *, channel_block: int = 16) -> dict[str, Any]:
    """Write the MMOD network as ONNX (bn folded) to ``out_path``; return its manifest entry.

    ``channel_block=1`` writes the layers exactly as dlib has them; the default rewrites them
    for onnxruntime's blocked CPU convolutions (same function, see ``_emit_graph``).
    """
    if channel_block < 1:
        raise ValueError(f"channel_block must be >= 1, got {channel_block}")
    dnn = read_dnn(dat_path)  # raises unless the file is consumed to its last byte

    loss = dnn.loss
    _expect(loss["tag"] == "loss_mmod_", f"loss layer is {loss['tag']!r}, not loss_mmod_")
    _expect(not loss.get("use_bounding_box_regression", False), "bounding box regression is not supported")
    windows = loss["detector_windows"]
    _expect(len(windows) == 1, f"{len(windows)} detector windows; exactly one is supported")
    inp = dnn.input
    _expect(inp["tag"] == "input_rgb_image_pyramid", f"input layer is {inp['tag']!r}")

    in_channels = 3
    geometry: list[tuple[int, int, int]] = []
    folded: list[tuple[NDArray[np.float32], NDArray[np.float32], int, int]] = []
    for i, ((conv, bn), (n_out, k, s, pad)) in enumerate(zip(_check_layers(dnn), ARCHITECTURE, strict=True)):
        f = conv.fields
        got = (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"], f["pad_y"], f["pad_x"])
        _expect(got == (n_out, k, k, s, s, pad, pad), f"conv {i}: (filters, kh, kw, sy, sx, py, px) = {got}")
        w, b = conv_params(conv)
        _expect(w.shape == (n_out, in_channels, k, k), f"conv {i}: filters shaped {w.shape}")
        _expect(b.shape == (n_out,), f"conv {i}: biases shaped {b.shape}")
        if bn is not None:
            w, b = _fold_bn(w, b, bn)
        folded.append((w, b, s, pad))
        in_channels = n_out
        geometry.append((k, s, pad))
    nodes, inits = _emit_graph(folded, channel_block)

    graph = helper.make_graph(
        nodes,
        "mmod_human_face_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, "out_height", "out_width"])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facegate",
        doc_string=f"dlib MMOD CNN face detector converted from {dat_path.name}; bn folded into conv",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))

    stride, offset = _receptive_mapping(geometry)
    nms = loss["overlaps_nms"]
    return {
        "input": {
            "name": "input",
            "layout": "NCHW",
            "dtype": "float32",
            "shape": [1, 3, "height", "width"],
            "normalization": "(rgb - mean_rgb) / 256, built into a tiled pyramid by app.vision.detector",
            "mean_rgb": [float(v) for v in inp["mean_rgb"]],
        },
        "output": {
            "name": "scores",
            "shape": [1, 1, "out_height", "out_width"],
            # A score > threshold at output (c, r) is a window centred on input (stride*c+offset, ...).
            "stride": stride,
            "offset": offset,
            "threshold": 0.0,
        },
        # A tiled pyramid smaller than this on either side has no score map (dlib throws).
        "min_input_size": _min_input_size(geometry),
        "window": [int(windows[0]["width"]), int(windows[0]["height"])],
        "nms_overlap": float(nms["iou_thresh"]),
        "nms_percent_covered": float(nms["percent_covered_thresh"]),
        "pyramid": {
            "downsample": f"{PYRAMID_N - 1}/{PYRAMID_N}",
            "padding": int(inp.get("pyramid_padding", DEFAULT_PYRAMID_PADDING)),
            "outer_padding": int(inp.get("pyramid_outer_padding", DEFAULT_PYRAMID_OUTER_PADDING)),
            "min_level_height": PYRAMID_MIN_LEVEL_HEIGHT,
        },
    }
