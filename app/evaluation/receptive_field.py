"""Receptive fields of an ONNX graph's tensors, computed from the graph itself.

Walks the nodes from the image input to a chosen tensor, keeping for each spatial axis of every
tensor derived from the input: its size in units, the *jump* (input pixels between two adjacent
units) and the input pixels ``first .. last`` that unit 0 sees. Unit ``i`` then sees
``first + i * jump .. last + i * jump`` (inclusive; parts may lie in the padding, outside the
image). Per node:

- Conv / MaxPool / AveragePool / LpPool (kernel k, stride s, begin padding p, dilation d):
  ``first' = first - p * jump``, ``last' = last + (d (k - 1) - p) * jump``, ``jump' = jump * s``;
  ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID and ``ceil_mode`` are honoured.
- Pad (constant): begin padding p shifts the field by ``-p * jump`` and grows the size.
- Transpose: permutes the axes (an NHWC uint8 input becomes NCHW).
- Elementwise and channel-wise ops (Relu, PRelu, Cast, Sub, Mul, Max, BatchNormalization, ...):
  unchanged; with several inputs derived from the image (a residual Add, a Max of two branches,
  a channel Concat) the union of the fields (the jumps must agree).
- GlobalAveragePool / GlobalMaxPool: one unit that sees every input unit.

Anything else between the input and the tensor (Reshape, Gemm, Resize, ...) is refused with a
message naming the node: no receptive field is ever guessed or hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import onnx
from onnx import numpy_helper

# Ops that act per position (or mix channels only): the spatial field passes through them.
POINTWISE = frozenset(
    {
        "Abs", "Add", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Div", "Dropout", "Elu",
        "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log",
        "LRN", "Max", "Mean", "Min", "Mish", "Mul", "Neg", "Pow", "PRelu", "QuantizeLinear",
        "DequantizeLinear", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Softplus",
        "Softsign", "Sqrt", "Sub", "Sum", "Tanh", "ThresholdedRelu", "Where",
    }
)  # fmt: skip
WINDOWED = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
GLOBAL = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})


class ReceptiveFieldError(ValueError):
    """The graph has no spatial receptive field for this tensor (or an op this walk cannot follow)."""


@dataclass(frozen=True)
class AxisField:
    """One spatial axis of a tensor: units, jump, and the input pixels unit 0 sees (inclusive)."""

    size: int | None  # units along the axis (None: not known from the graph's shapes)
    jump: int
    first: int
    last: int
    # The input pixels that reach this tensor at all (None: not known). A window that does not
    # fit the last input units drops them (dlib's first 7x7/2 conv never reads column 149 of 150),
    # so a field may cover pixels that in fact never reach the unit.
    lo: int | None = None
    hi: int | None = None

    @property
    def extent(self) -> int:
        """The receptive field's size along this axis, in input pixels."""
        return self.last - self.first + 1

    @property
    def start(self) -> float:
        """The centre of unit 0's field, in input pixel coordinates."""
        return (self.first + self.last) / 2.0

    def span(self, i: int) -> tuple[int, int]:
        """Input pixels (first, last) in unit ``i``'s field (padding included)."""
        return self.first + i * self.jump, self.last + i * self.jump

    def seen(self, i: int) -> tuple[int, int]:
        """The input pixels that can change unit ``i``: its field within the pixels that reach the
        tensor (first > last: none)."""
        a, b = self.span(i)
        return max(a, a if self.lo is None else self.lo), min(b, b if self.hi is None else self.hi)

    def union(self, other: AxisField) -> AxisField:
        """The field of an op that reads both tensors at the same position (Add, Max, Concat)."""
        if self.jump != other.jump:
            raise ReceptiveFieldError(f"branches with different jumps ({self.jump}, {other.jump}) meet")
        sizes = {n for n in (self.size, other.size) if n is not None}
        if len(sizes - {1}) > 1:  # a size of 1 broadcasts
            raise ReceptiveFieldError(f"branches of different sizes ({self.size}, {other.size}) meet")
        size = max(sizes) if sizes else None
        lo = None if self.lo is None or other.lo is None else min(self.lo, other.lo)
        hi = None if self.hi is None or other.hi is None else max(self.hi, other.hi)
        return AxisField(size, self.jump, min(self.first, other.first), max(self.last, other.last), lo, hi)


@dataclass(frozen=True)
class ReceptiveField:
    """A tensor's receptive field on the input image: rows (H) and columns (W)."""

    tensor: str
    height: AxisField
    width: AxisField
    path: tuple[str, ...]  # the op types walked from the input, in order (for reports)

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Unit (row, col)'s field on the input: (left, top, right, bottom), inclusive; it may
        reach past the image (the network's padding)."""
        top, bottom = self.height.span(row)
        left, right = self.width.span(col)
        return left, top, right, bottom

    def sees(self, row: int, col: int, y: int, x: int) -> bool:
        """Whether input pixel (y, x) can change unit (row, col)."""
        top, bottom = self.height.seen(row)
        left, right = self.width.seen(col)
        return top <= y <= bottom and left <= x <= right

    def describe(self) -> str:
        h, w = self.height, self.width
        size = f"{h.size}x{w.size} units" if h.size is not None else "units"
        reach = ""
        if h.lo is not None and w.lo is not None:
            reach = f"; input rows {h.lo}..{h.hi}, columns {w.lo}..{w.hi} reach it"
        return (
            f"{self.tensor}: {size}, receptive field {h.extent}x{w.extent} px, jump {h.jump}x{w.jump} px, "
            f"unit (0, 0) at rows {h.first}..{h.last}, columns {w.first}..{w.last}{reach}"
        )


@dataclass(frozen=True)
class _State:
    roles: tuple[str, ...]  # per axis: "n", "c", "h", "w" (or "?" for an axis the walk does not track)
    h: AxisField
    w: AxisField
    path: tuple[str, ...]


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _constants(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Integer initializers and Constant outputs (Pad's pads, Reshape's shapes)."""
    out: dict[str, list[int]] = {}
    for init in graph.initializer:
        if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            out[init.name] = [int(v) for v in numpy_helper.to_array(init).reshape(-1)]
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attrs(node).get("value")
            if isinstance(value, onnx.TensorProto) and value.data_type in (
                onnx.TensorProto.INT64,
                onnx.TensorProto.INT32,
            ):
                out[node.output[0]] = [int(v) for v in numpy_helper.to_array(value).reshape(-1)]
    return out


def _weight_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    return {init.name: tuple(int(d) for d in init.dims) for init in graph.initializer}


def input_state(graph: onnx.GraphProto, name: str | None = None) -> tuple[str, _State]:
    """The image input: NHWC when its last axis has 1 or 3 channels, else NCHW."""
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    chosen = [i for i in inputs if name is None or i.name == name]
    if len(chosen) != 1:
        raise ReceptiveFieldError(f"expected one image input, found {[i.name for i in inputs]}")
    value = chosen[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ReceptiveFieldError(f"input {value.name} is not 4-d (N, H, W, C or N, C, H, W)")
    roles = ("n", "h", "w", "c") if dims[3] in (1, 3) else ("n", "c", "h", "w")
    h = dims[roles.index("h")]
    w = dims[roles.index("w")]
    fields = [AxisField(n, 1, 0, 0, None if n is None else 0, None if n is None else n - 1) for n in (h, w)]
    return value.name, _State(roles, fields[0], fields[1], ())


def _ints(value: object, default: list[int]) -> list[int]:
    return [int(v) for v in value] if isinstance(value, Iterable) else default


def _window(
    field: AxisField, *, k: int, s: int, d: int, pad_begin: int, pad_end: int, auto_pad: str, ceil: bool
) -> AxisField:
    effective = d * (k - 1) + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if field.size is None:
            raise ReceptiveFieldError("auto_pad SAME needs the input's spatial size")
        out = math.ceil(field.size / s)
        total = max((out - 1) * s + effective - field.size, 0)
        pad_begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        pad_end = total - pad_begin
    elif auto_pad == "VALID":
        pad_begin = pad_end = 0
    size = None
    lo, hi = field.lo, field.hi
    if field.size is not None:
        span = field.size + pad_begin + pad_end - effective
        size = (math.ceil(span / s) if ceil else span // s) + 1
        if size < 1:
            raise ReceptiveFieldError(f"a window of {effective} does not fit {field.size} units")
        # The input units some output reads: only their pixels reach the output.
        used_lo = max(0, -pad_begin)
        used_hi = min(field.size - 1, (size - 1) * s - pad_begin + effective - 1)
        if lo is not None and hi is not None:
            lo = max(lo, field.first + used_lo * field.jump)
            hi = min(hi, field.last + used_hi * field.jump)
    return AxisField(
        size,
        field.jump * s,
        field.first - pad_begin * field.jump,
        field.last + (effective - 1 - pad_begin) * field.jump,
        lo,
        hi,
    )


def _windowed(node: onnx.NodeProto, state: _State, weights: dict[str, tuple[int, ...]]) -> _State:
    if state.roles[2:] != ("h", "w") or len(state.roles) != 4:
        raise ReceptiveFieldError(
            f"{node.op_type} {node.name!r} on a tensor that is not NCHW ({state.roles})"
        )
    a = _attrs(node)
    kernel = _ints(a.get("kernel_shape"), [])
    if not kernel and node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights:
        kernel = list(weights[node.input[1]][2:])
    if len(kernel) != 2:
        raise ReceptiveFieldError(f"{node.op_type} {node.name!r}: no 2-d kernel_shape")
    strides = _ints(a.get("strides"), [1, 1])
    dilations = _ints(a.get("dilations"), [1, 1])
    pads = _ints(a.get("pads"), [0, 0, 0, 0])
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    ceil = bool(a.get("ceil_mode", 0))
    h, w = (
        _window(
            field,
            k=kernel[i],
            s=strides[i],
            d=dilations[i],
            pad_begin=pads[i],
            pad_end=pads[i + 2],
            auto_pad=auto,
            ceil=ceil,
        )
        for i, field in enumerate((state.h, state.w))
    )
    return _State(state.roles, h, w, (*state.path, node.op_type))


def _pad(node: onnx.NodeProto, state: _State, constants: dict[str, list[int]]) -> _State:
    a = _attrs(node)
    mode = a.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else str(mode)) != "constant":
        raise ReceptiveFieldError(f"Pad {node.name!r}: only constant padding is followed")
    if "pads" in a:
        pads = _ints(a["pads"], [])
    elif len(node.input) > 1 and node.input[1] in constants:
        pads = constants[node.input[1]]
    else:
        raise ReceptiveFieldError(f"Pad {node.name!r}: its pads are not a constant of the graph")
    n = len(state.roles)
    if len(node.input) > 3 and node.input[3]:
        raise ReceptiveFieldError(f"Pad {node.name!r}: pads on chosen axes are not followed")
    if len(pads) != 2 * n:
        raise ReceptiveFieldError(f"Pad {node.name!r}: {len(pads)} pads for a {n}-d tensor")
    fields = {"h": state.h, "w": state.w}
    for axis, role in enumerate(state.roles):
        if role in fields:
            f = fields[role]
            begin, end = pads[axis], pads[axis + n]
            size = None if f.size is None else f.size + begin + end
            fields[role] = replace(f, size=size, first=f.first - begin * f.jump, last=f.last - begin * f.jump)
    return _State(state.roles, fields["h"], fields["w"], (*state.path, "Pad"))


def _global(node: onnx.NodeProto, state: _State) -> _State:
    if state.h.size is None or state.w.size is None:
        raise ReceptiveFieldError(f"{node.op_type} {node.name!r} needs the spatial size")
    h = replace(state.h, size=1, last=state.h.last + (state.h.size - 1) * state.h.jump)
    w = replace(state.w, size=1, last=state.w.last + (state.w.size - 1) * state.w.jump)
    return _State(state.roles, h, w, (*state.path, node.op_type))


def _pointwise(node: onnx.NodeProto, states: list[_State]) -> _State:
    first = states[0]
    h, w = first.h, first.w
    for other in states[1:]:
        if other.roles != first.roles:
            raise ReceptiveFieldError(f"{node.op_type} {node.name!r} joins tensors of different layouts")
        h, w = h.union(other.h), w.union(other.w)
    if node.op_type == "Concat":
        axis = int(_attrs(node).get("axis", 1))  # type: ignore[call-overload]
        if first.roles[axis] not in ("c", "n"):
            raise ReceptiveFieldError(f"Concat {node.name!r} along a spatial axis is not followed")
    longest = max(states, key=lambda s: len(s.path))
    return _State(first.roles, h, w, (*longest.path, node.op_type))


def _walk(
    model: onnx.ModelProto, input_name: str | None, stop: str | None
) -> tuple[str, dict[str, _State], dict[str, str]]:
    """Fields of every tensor derived from the input (up to ``stop``), and why others have none."""
    graph = model.graph
    name, start = input_state(graph, input_name)
    constants = _constants(graph)
    weights = _weight_shapes(graph)
    states: dict[str, _State] = {name: start}
    refused: dict[str, str] = {}  # tensors past an op the walk cannot follow: why
    for node in graph.node:
        if stop is not None and (stop in states or stop in refused):
            break
        derived = [states[i] for i in node.input if i in states]
        blocked = [refused[i] for i in node.input if i in refused]
        if not derived and not blocked:
            continue
        try:
            if blocked:
                raise ReceptiveFieldError(blocked[0])
            out = _step(node, derived, node.input[0] in states, constants, weights)
            for o in node.output:
                if o:
                    states[o] = out
        except ReceptiveFieldError as exc:
            for o in node.output:
                if o:
                    refused[o] = str(exc)
    return name, states, refused


def _step(
    node: onnx.NodeProto,
    derived: list[_State],
    data_first: bool,
    constants: dict[str, list[int]],
    weights: dict[str, tuple[int, ...]],
) -> _State:
    op = node.op_type
    if op in WINDOWED:
        if len(derived) != 1 or not data_first:
            raise ReceptiveFieldError(f"{op} {node.name!r}: its weights depend on the image")
        return _windowed(node, derived[0], weights)
    if op == "Pad":
        return _pad(node, derived[0], constants)
    if op in GLOBAL:
        return _global(node, derived[0])
    if op == "Transpose":
        s = derived[0]
        perm = _ints(_attrs(node).get("perm"), list(reversed(range(len(s.roles)))))
        return replace(s, roles=tuple(s.roles[p] for p in perm), path=(*s.path, op))
    if op in POINTWISE:
        return _pointwise(node, derived)
    raise ReceptiveFieldError(
        f"the walk from the input stops at {op} {node.name!r}: its receptive field is not spatial "
        "or this walk does not follow it"
    )


def _resolve(model: onnx.ModelProto, tensor: str) -> str:
    """A node's name stands for its first output (when no tensor has that name)."""
    outputs = {o for n in model.graph.node for o in n.output}
    if tensor not in outputs:
        for n in model.graph.node:
            if n.name == tensor and n.output:
                return str(n.output[0])
    return tensor


def receptive_field(model: onnx.ModelProto, tensor: str, input_name: str | None = None) -> ReceptiveField:
    """The receptive field of ``tensor`` (a node output, or a node's name: its first output)."""
    tensor = _resolve(model, tensor)
    name, states, refused = _walk(model, input_name, tensor)
    if tensor in refused:
        raise ReceptiveFieldError(f"{tensor}: {refused[tensor]}")
    if tensor not in states:
        raise ReceptiveFieldError(f"no tensor {tensor!r} is computed from the input {name!r}")
    s = states[tensor]
    return ReceptiveField(tensor, s.h, s.w, s.path)


def spatial_tensors(model: onnx.ModelProto, input_name: str | None = None) -> list[ReceptiveField]:
    """Every tensor with a receptive field, in graph order (the layers one may pick)."""
    _, states, _ = _walk(model, input_name, None)
    produced = [o for n in model.graph.node for o in n.output if o in states]
    return [ReceptiveField(t, states[t].h, states[t].w, states[t].path) for t in produced]
