"""Convert dlib's ResNet face encoder (dlib_face_recognition_resnet_model_v1.dat) to ONNX.

The file stores layers but not the wiring (tags, skips, which tag an add_prev adds), so the
architecture of dlib's ``anet_type`` (dnn_face_recognition_ex.cpp) is written out here and
checked against the file record by record: a file of another shape fails loudly.

Graph: uint8 NHWC RGB chips [N,150,150,3] → (x - mean) / 256 → 29 convolutions with the
affine layers folded in → 14 residual additions → global average → 128-d (not normalized).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from models.dlib_dnn import DnnFile, Layer, conv_params, read_dnn
from models.onnx_graph import FLOAT, UINT8, GraphBuilder, rename_output, tensor_info

# (kind, channels) from the input outward: dlib's alevel4 .. alevel0.
STAGES: list[tuple[str, int]] = (
    [("res", 32)] * 3
    + [("down", 64)]
    + [("res", 64)] * 3
    + [("down", 128)]
    + [("res", 128)] * 2
    + [("down", 256)]
    + [("res", 256)] * 2
    + [("down", 256)]
)
EMBEDDING_SIZE = 128
CHIP_SIZE = 150


class EncoderFileError(ValueError):
    """The encoder file does not have the architecture this converter knows."""


@dataclass
class _Tensor:
    name: str
    channels: int
    size: int  # square feature maps: rows == cols


class _LayerStream:
    def __init__(self, layers: list[Layer]) -> None:
        self._it: Iterator[Layer] = iter(layers)
        self.consumed = 0

    def take(self, tag: str) -> Layer:
        layer = next(self._it, None)
        if layer is None:
            raise EncoderFileError(f"file ended early: expected {tag} after {self.consumed} layers")
        if layer.tag != tag:
            raise EncoderFileError(f"layer {self.consumed}: expected {tag}, found {layer.tag}")
        self.consumed += 1
        return layer

    def expect_done(self) -> None:
        if next(self._it, None) is not None:
            raise EncoderFileError(f"more layers than the architecture has ({self.consumed} used)")


def _out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


class _EncoderGraph:
    def __init__(self, builder: GraphBuilder, stream: _LayerStream) -> None:
        self.b = builder
        self.s = stream

    def conv_affine(self, x: _Tensor, channels: int, k: int, stride: int, relu: bool) -> _Tensor:
        conv = self.s.take("con_4")
        f = conv.fields
        want = (channels, k, k, stride, stride)
        got = (f["num_filters"], f["nr"], f["nc"], f["stride_y"], f["stride_x"])
        if got != want or f["filters_alias"][1] != x.channels:
            raise EncoderFileError(
                f"conv layer {self.s.consumed}: expected {want} from {x.channels} channels, got {got}"
            )
        w, bias = conv_params(conv)
        affine = self.s.take("affine_")
        gamma, beta = np.split(affine.fields["params"], 2)
        # Fold y = gamma * conv(x) + beta into the convolution itself.
        w_f = (w * gamma[:, None, None, None]).astype(np.float32)
        b_f = (bias * gamma + beta).astype(np.float32)
        pad = f["pad_y"]
        y = self.b.op(
            "Conv",
            [x.name, self.b.const("w", w_f), self.b.const("b", b_f)],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )
        if relu:
            self.s.take("relu_")
            y = self.b.op("Relu", [y])
        return _Tensor(y, channels, _out_size(x.size, k, stride, pad))

    def pad_to(self, x: _Tensor, channels: int, size: int) -> str:
        """dlib adds tensors of different shapes by zero-filling at the end of each axis."""
        if (x.channels, x.size) == (channels, size):
            return x.name
        extra = [0, channels - x.channels, size - x.size, size - x.size]
        pads = np.array([0, 0, 0, 0, *extra], dtype=np.int64)
        return self.b.op("Pad", [x.name, self.b.const("pads", pads)], mode="constant")

    def residual(self, x: _Tensor, channels: int, down: bool) -> _Tensor:
        stride = 2 if down else 1
        h = self.conv_affine(x, channels, 3, stride, relu=True)
        h = self.conv_affine(h, channels, 3, 1, relu=False)
        shortcut = x
        if down:
            pool = self.s.take("avg_pool_2").fields
            if (pool["nr"], pool["nc"], pool["stride_y"], pool["pad_y"]) != (2, 2, 2, 0):
                raise EncoderFileError(f"layer {self.s.consumed}: unexpected shortcut pool {pool}")
            name = self.b.op("AveragePool", [x.name], kernel_shape=[2, 2], strides=[2, 2])
            shortcut = _Tensor(name, x.channels, _out_size(x.size, 2, 2, 0))
        self.s.take("add_prev_")
        channels_out = max(h.channels, shortcut.channels)
        size_out = max(h.size, shortcut.size)
        main = self.pad_to(h, channels_out, size_out)
        y = self.b.op("Add", [main, self.pad_to(shortcut, channels_out, size_out)])
        self.s.take("relu_")
        return _Tensor(self.b.op("Relu", [y]), channels_out, size_out)


def build_encoder_graph(dnn: DnnFile) -> onnx.ModelProto:
    if dnn.loss.get("tag") != "loss_metric_2":
        raise EncoderFileError(f"expected a loss_metric network, found {dnn.loss.get('tag')}")
    inp = dnn.input
    if inp["tag"] != "input_rgb_image_sized" or (inp["nr"], inp["nc"]) != (CHIP_SIZE, CHIP_SIZE):
        raise EncoderFileError(f"expected a {CHIP_SIZE}x{CHIP_SIZE} RGB input, found {inp}")
    b = GraphBuilder()
    stream = _LayerStream(dnn.layers)
    g = _EncoderGraph(b, stream)

    mean = np.array(inp["mean_rgb"], dtype=np.float32).reshape(1, 1, 1, 3)
    x = b.op("Cast", ["chips"], to=FLOAT)
    x = b.op("Sub", [x, b.const("mean", mean)])
    x = b.op("Mul", [x, b.const("scale", np.array(1.0 / 256.0, dtype=np.float32))])
    x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
    t = _Tensor(x, 3, CHIP_SIZE)

    t = g.conv_affine(t, 32, 7, 2, relu=True)
    pool = stream.take("max_pool_2").fields
    if (pool["nr"], pool["stride_y"], pool["pad_y"]) != (3, 2, 0):
        raise EncoderFileError(f"unexpected stem pool {pool}")
    pooled_stem = b.op("MaxPool", [t.name], kernel_shape=[3, 3], strides=[2, 2])
    t = _Tensor(pooled_stem, 32, _out_size(t.size, 3, 2, 0))
    for kind, channels in STAGES:
        t = g.residual(t, channels, down=kind == "down")

    gap = stream.take("avg_pool_2").fields
    if (gap["nr"], gap["nc"]) != (0, 0):
        raise EncoderFileError(f"expected a global average pool, found {gap}")
    pooled = b.op("GlobalAveragePool", [t.name])
    flat = b.op("Flatten", [pooled], axis=1)
    fc = stream.take("fc_2").fields
    if (fc["num_inputs"], fc["num_outputs"], fc["bias_mode"]) != (t.channels, EMBEDDING_SIZE, 1):
        raise EncoderFileError(f"unexpected fc layer {fc}")
    weights = fc["params"].reshape(fc["num_inputs"], fc["num_outputs"])  # y = x @ W
    out = b.op("MatMul", [flat, b.const("fc", weights)])
    stream.expect_done()
    rename_output(b, out, "embedding")
    return b.model(
        [tensor_info("chips", UINT8, ["batch", CHIP_SIZE, CHIP_SIZE, 3])],
        [tensor_info("embedding", FLOAT, ["batch", EMBEDDING_SIZE])],
        "dlib_resnet_v1_encoder",
        "dlib face recognition ResNet v1 (CC0), converted by facegate",
    )


def convert_encoder(dat_path: Path, out_path: Path) -> dict[str, Any]:
    """Write the encoder ONNX file; return its manifest entry (without checksum)."""
    dnn = read_dnn(dat_path)
    model = build_encoder_graph(dnn)
    onnx.save(model, str(out_path))
    return {
        "input": {
            "name": "chips",
            "layout": "NHWC",
            "dtype": "uint8",
            "color": "RGB",
            "size": [CHIP_SIZE, CHIP_SIZE],
            "normalization": "(rgb - mean_rgb) / 256, inside the graph",
            "mean_rgb": [float(v) for v in dnn.input["mean_rgb"]],
        },
        "output": {"name": "embedding", "size": EMBEDDING_SIZE, "metric": "euclidean", "normalized": False},
        "default_tau": round(float(dnn.loss["distance_threshold"]), 6),
        "chip": {"size": CHIP_SIZE, "padding": 0.25},
        "layers": {"conv": 29, "residual_add": 14},
    }
