"""MediaPipe's face landmark model (468 points with relative depth, Apache-2.0) converted to ONNX.

The .tflite ships only inside the `mediapipe==0.10.21` wheel. That wheel is never installed (it
needs numpy<2, opencv-contrib and jax): `pip download` fetches it at build time into a cache
folder, its sha256 and the .tflite's sha256 are checked, and the .tflite is read out of the zip.

`tflite2onnx` crashes on this model, so a minimal TFLite flatbuffer reader (the schema fields the
model uses, through the `flatbuffers` runtime) and a converter for its seven op types live here:
DEQUANTIZE (fp16 weights, folded into fp32 constants), CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD,
MAX_POOL_2D, PAD. The ONNX graph runs NCHW inside and takes uint8 NHWC RGB pixels: the Cast and
the division by 255 (MediaPipe feeds [0, 1], see CROP_CONVENTION) are part of the graph.

What MediaPipe does around the model (read from the graph configs compiled into the wheel's
`_framework_bindings` library: FaceLandmarkCpu, FaceDetectionFrontDetectionToRoi,
FaceLandmarkLandmarksToRoi):
- ImageToTensorCalculator: 192x192, output_tensor_float_range [0, 1], bilinear, the default
  border mode (replicate);
- the crop is a square rotated rectangle: the face box's long side x 1.5 around the box centre,
  rotated so that the line from keypoint 0 to keypoint 1 (the eye on the image's left to the eye
  on its right) is horizontal; when tracking, the box of the previous frame's 468 points and the
  line from point 33 to point 263 replace the detection;
- TensorsToLandmarksCalculator: 468 points, input 192x192; z is divided by the input width like
  x, and LandmarkProjectionCalculator multiplies it by the crop's width like x, so z is in the
  same units as x (smaller = nearer the camera);
- TensorsToFloatsCalculator with SIGMOID on the second output, ThresholdingCalculator at 0.5:
  the face presence score.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers.number_types as fb_types
import numpy as np
import onnx
from flatbuffers.table import Table
from numpy.typing import NDArray

from app.vision.manifest import ModelArtifactError, sha256_file
from models.onnx_graph import FLOAT, OPSET, UINT8, GraphBuilder, rename_output, tensor_info

MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_WHEEL = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
MEDIAPIPE_WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
FACE_LANDMARK_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
FACE_LANDMARK_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
PIP_DOWNLOAD_ARGS = (
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--platform",
    "manylinux_2_28_x86_64",
    f"mediapipe=={MEDIAPIPE_VERSION}",
)
PIP_TIMEOUT_S = 900

INPUT_NAME = "image"
LANDMARKS_NAME = "landmarks"
FACE_LOGIT_NAME = "face_logit"
FACE_SCORE_NAME = "face_score"
INPUT_SIZE = 192
NUM_LANDMARKS = 468

CROP_CONVENTION: dict[str, Any] = {
    "size": INPUT_SIZE,
    "scale": 1.5,  # RectTransformationCalculator scale_x = scale_y = 1.5
    "square": "long side",  # square_long: true
    "rotation": "eye line horizontal: angle of the vector from the eye on the image's left to the other",
    "detection_keypoints": [0, 1],  # BlazeFace: right eye, left eye (of the subject)
    "tracking_landmarks": [33, 263],  # FaceLandmarkLandmarksToRoi: outer eye corners
    "tracking_box": "bounding box of the previous frame's 468 points (x, y)",
    "interpolation": "bilinear",
    "border": "replicate",
    "input_range": [0.0, 1.0],  # output_tensor_float_range; the ONNX graph does pixel / 255
    "presence_threshold": 0.5,
}


class WheelDownloadError(ModelArtifactError):
    """pip could not fetch the wheel (no index reachable, no such file): nothing to check yet."""


def _pip_command(cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pip", *PIP_DOWNLOAD_ARGS, "-d", str(cache_dir)]


def fetch_mediapipe_wheel(cache_dir: Path, *, expected_sha256: str = MEDIAPIPE_WHEEL_SHA256) -> Path:
    """The mediapipe wheel in cache_dir, downloaded with pip unless a copy with the pinned sha256
    is already there (a copy with another checksum is replaced)."""
    wheel = cache_dir / MEDIAPIPE_WHEEL
    if wheel.is_file() and sha256_file(wheel) == expected_sha256:
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheel.unlink(missing_ok=True)  # pip keeps a file that is already there, whatever its content
    command = _pip_command(cache_dir)
    shown = " ".join(command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelDownloadError(f"`{shown}` failed to run: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise WheelDownloadError(f"`{shown}` exited with {done.returncode}: {' | '.join(tail)}")
    if not wheel.is_file():
        raise ModelArtifactError(f"`{shown}` did not write {wheel.name} into {cache_dir}")
    actual = sha256_file(wheel)
    if actual != expected_sha256:
        raise ModelArtifactError(
            f"{wheel}: sha256 {actual} is not the pinned {expected_sha256} (from `{shown}`); "
            "the index serves a different file"
        )
    return wheel


def read_face_landmark_tflite(
    wheel: Path,
    *,
    wheel_sha256: str = MEDIAPIPE_WHEEL_SHA256,
    tflite_sha256: str = FACE_LANDMARK_SHA256,
) -> bytes:
    """face_landmark.tflite out of the wheel, both checksums checked."""
    if not wheel.is_file():
        raise ModelArtifactError(f"{wheel}: no such wheel; fetch it with fetch_mediapipe_wheel")
    actual = sha256_file(wheel)
    if actual != wheel_sha256:
        raise ModelArtifactError(f"{wheel}: sha256 {actual} is not the pinned {wheel_sha256}")
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(FACE_LANDMARK_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelArtifactError(f"{wheel}: cannot read {FACE_LANDMARK_MEMBER} ({exc})") from exc
    _check_tflite(data, tflite_sha256, f"{wheel}:{FACE_LANDMARK_MEMBER}")
    return data


def _check_tflite(data: bytes, expected: str, where: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelArtifactError(f"{where}: sha256 {actual} is not the pinned {expected}")


# --- a minimal TFLite flatbuffer reader (schema.fbs, the fields this model uses) -------------------

# TensorType -> numpy dtype
_TENSOR_TYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    7: np.int16,
    9: np.int8,
}
# BuiltinOperator codes this converter knows
ADD, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, MAX_POOL_2D, PAD, PRELU = 0, 3, 4, 6, 17, 34, 54
_OP_NAMES = {
    ADD: "ADD",
    CONV_2D: "CONV_2D",
    DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
    DEQUANTIZE: "DEQUANTIZE",
    MAX_POOL_2D: "MAX_POOL_2D",
    PAD: "PAD",
    PRELU: "PRELU",
}
# Options tables: field name -> (field index in the table, default)
_OPTION_FIELDS: dict[int, dict[str, tuple[int, int]]] = {
    CONV_2D: {"padding": (0, 0), "stride_w": (1, 0), "stride_h": (2, 0), "activation": (3, 0),
              "dilation_w": (4, 1), "dilation_h": (5, 1)},
    DEPTHWISE_CONV_2D: {"padding": (0, 0), "stride_w": (1, 0), "stride_h": (2, 0), "depth_multiplier": (3, 0),
                        "activation": (4, 0), "dilation_w": (5, 1), "dilation_h": (6, 1)},
    MAX_POOL_2D: {"padding": (0, 0), "stride_w": (1, 0), "stride_h": (2, 0), "filter_w": (3, 0),
                  "filter_h": (4, 0), "activation": (5, 0)},
    ADD: {"activation": (0, 0)},
}  # fmt: skip
# The 32-bit fields are ints; padding and activation are bytes.
_BYTE_OPTIONS = {"padding", "activation"}
PADDING_SAME, PADDING_VALID = 0, 1
ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 3


class _Node:
    """One flatbuffer table: fields by their index in the schema."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.table = Table(buf, pos)

    def _offset(self, field: int) -> int:
        return int(self.table.Offset(4 + 2 * field))

    def scalar(self, field: int, flags: Any, default: int) -> int:
        off = self._offset(field)
        return default if off == 0 else int(self.table.Get(flags, self.table.Pos + off))

    def string(self, field: int) -> str:
        off = self._offset(field)
        return "" if off == 0 else bytes(self.table.String(self.table.Pos + off)).decode()

    def child(self, field: int) -> _Node | None:
        off = self._offset(field)
        return None if off == 0 else _Node(self.buf, int(self.table.Indirect(self.table.Pos + off)))

    def _vector(self, field: int) -> tuple[int, int]:
        off = self._offset(field)
        if off == 0:
            return 0, 0
        return int(self.table.Vector(off)), int(self.table.VectorLen(off))

    def tables(self, field: int) -> list[_Node]:
        start, n = self._vector(field)
        return [_Node(self.buf, int(self.table.Indirect(start + 4 * i))) for i in range(n)]

    def array(self, field: int, dtype: type[np.generic]) -> NDArray[Any]:
        start, n = self._vector(field)
        return np.frombuffer(self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=start)


@dataclass(frozen=True)
class TfliteTensor:
    name: str
    shape: tuple[int, ...]
    dtype: type[np.generic]
    buffer: int
    scale: NDArray[np.float32]  # empty when not quantised
    zero_point: NDArray[np.int64]
    quantized_dimension: int


@dataclass(frozen=True)
class TfliteOperator:
    code: int
    inputs: tuple[int, ...]  # -1 = optional input left out
    outputs: tuple[int, ...]
    options: dict[str, int]

    @property
    def name(self) -> str:
        return _OP_NAMES.get(self.code, f"builtin operator {self.code}")


@dataclass(frozen=True)
class TfliteGraph:
    """The first subgraph of a .tflite, with its buffers."""

    tensors: list[TfliteTensor]
    operators: list[TfliteOperator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: list[bytes]

    def constant(self, index: int) -> NDArray[Any] | None:
        """A tensor's stored value (None for activations); int8/uint8 with a scale are dequantised."""
        t = self.tensors[index]
        raw = self.buffers[t.buffer] if t.buffer < len(self.buffers) else b""
        if not raw:
            return None
        value = np.frombuffer(raw, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(t.shape)
        if t.scale.size and t.dtype in (np.int8, np.uint8, np.int16):
            axis_shape = [1] * len(t.shape)
            if t.scale.size > 1:
                axis_shape[t.quantized_dimension] = t.scale.size
            scale = t.scale.reshape(axis_shape).astype(np.float32)
            zero = t.zero_point.reshape(axis_shape).astype(np.float32)
            return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
        return value


def read_tflite(data: bytes) -> TfliteGraph:
    """Parse a .tflite flatbuffer (schema version 3)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelArtifactError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = _Node(data, int.from_bytes(data[0:4], "little"))
    buffers: list[bytes] = []
    for b in model.tables(4):  # Model.buffers
        inline = b.array(0, np.uint8)
        offset, size = b.scalar(1, fb_types.Uint64Flags, 0), b.scalar(2, fb_types.Uint64Flags, 0)
        if offset > 1:  # large models keep their buffers after the flatbuffer
            buffers.append(data[offset : offset + size])
        else:
            buffers.append(inline.tobytes())
    codes = []
    for c in model.tables(1):  # Model.operator_codes: max(deprecated_builtin_code, builtin_code)
        codes.append(max(c.scalar(0, fb_types.Int8Flags, 0), c.scalar(3, fb_types.Int32Flags, 0)))
    subgraphs = model.tables(2)
    if len(subgraphs) != 1:
        raise ModelArtifactError(f"expected one TFLite subgraph, found {len(subgraphs)}")
    sub = subgraphs[0]
    tensors = []
    for t in sub.tables(0):
        type_code = t.scalar(1, fb_types.Int8Flags, 0)
        if type_code not in _TENSOR_TYPES:
            raise ModelArtifactError(f"TFLite tensor {t.string(3)!r} has unsupported type {type_code}")
        q = t.child(4)
        tensors.append(
            TfliteTensor(
                name=t.string(3),
                shape=tuple(int(v) for v in t.array(0, np.int32)),
                dtype=_TENSOR_TYPES[type_code],
                buffer=t.scalar(2, fb_types.Uint32Flags, 0),
                scale=(q.array(2, np.float32) if q else np.zeros(0, np.float32)).copy(),
                zero_point=(q.array(3, np.int64) if q else np.zeros(0, np.int64)).copy(),
                quantized_dimension=q.scalar(6, fb_types.Int32Flags, 0) if q else 0,
            )
        )
    operators = []
    for op in sub.tables(3):
        code = codes[op.scalar(0, fb_types.Uint32Flags, 0)]
        options: dict[str, int] = {}
        table = op.child(4)
        for key, (field, default) in _OPTION_FIELDS.get(code, {}).items():
            flags = fb_types.Int8Flags if key in _BYTE_OPTIONS else fb_types.Int32Flags
            options[key] = table.scalar(field, flags, default) if table else default
        operators.append(
            TfliteOperator(
                code=code,
                inputs=tuple(int(v) for v in op.array(1, np.int32)),
                outputs=tuple(int(v) for v in op.array(2, np.int32)),
                options=options,
            )
        )
    return TfliteGraph(
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(v) for v in sub.array(1, np.int32)),
        outputs=tuple(int(v) for v in sub.array(2, np.int32)),
        buffers=buffers,
    )


# --- TFLite (NHWC) -> ONNX (NCHW) --------------------------------------------------------------


def _same_pads(size: int, out: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding: the extra pixel goes at the end."""
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Converter:
    def __init__(self, graph: TfliteGraph) -> None:
        self.graph = graph
        self.b = GraphBuilder()
        self.names: dict[int, str] = {}  # TFLite tensor -> ONNX value (NCHW for rank 4)
        self.folded: dict[int, NDArray[np.float32]] = {}  # dequantised constants

    def value(self, index: int) -> NDArray[np.float32]:
        if index in self.folded:
            return self.folded[index]
        v = self.graph.constant(index)
        if v is None:
            raise ModelArtifactError(f"TFLite tensor {self.graph.tensors[index].name!r} should be constant")
        return v.astype(np.float32)

    def activation(self, out: str, act: int, where: str) -> str:
        if act == ACT_NONE:
            return out
        if act == ACT_RELU:
            return self.b.op("Relu", [out])
        if act == ACT_RELU6:
            return self.b.op(
                "Clip",
                [
                    out,
                    self.b.const("lo", np.array(0, np.float32)),
                    self.b.const("hi", np.array(6, np.float32)),
                ],
            )
        raise ModelArtifactError(f"{where}: unsupported fused activation {act}")

    def spatial_pads(self, op: TfliteOperator, kh: int, kw: int) -> list[int]:
        if op.options["padding"] == PADDING_VALID:
            return [0, 0, 0, 0]
        _, h, w, _ = self.graph.tensors[op.inputs[0]].shape
        _, oh, ow, _ = self.graph.tensors[op.outputs[0]].shape
        top, bottom = _same_pads(h, oh, kh, op.options["stride_h"], op.options.get("dilation_h", 1))
        left, right = _same_pads(w, ow, kw, op.options["stride_w"], op.options.get("dilation_w", 1))
        return [top, left, bottom, right]

    def convert(self, op: TfliteOperator) -> None:
        where = f"{op.name} -> {self.graph.tensors[op.outputs[0]].name!r}"
        if op.code == DEQUANTIZE:
            v = self.graph.constant(op.inputs[0])
            if v is None:
                raise ModelArtifactError(f"{where}: only constant tensors can be dequantised")
            self.folded[op.outputs[0]] = v.astype(np.float32)
            return
        x = self.names[op.inputs[0]]
        if op.code in (CONV_2D, DEPTHWISE_CONV_2D):
            w = self.value(op.inputs[1])
            if op.code == CONV_2D:  # OHWI -> OIHW
                kernel, group = w.transpose(0, 3, 1, 2), 1
            else:  # 1HW(C*m) -> (C*m)1HW, one group per input channel
                kernel = w.transpose(3, 0, 1, 2)
                group = self.graph.tensors[op.inputs[0]].shape[3]
                if op.options["depth_multiplier"] not in (0, 1):
                    raise ModelArtifactError(f"{where}: depth multiplier {op.options['depth_multiplier']}")
            inputs = [x, self.b.const("w", np.ascontiguousarray(kernel))]
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                inputs.append(self.b.const("b", self.value(op.inputs[2])))
            out = self.b.op(
                "Conv",
                inputs,
                kernel_shape=list(kernel.shape[2:]),
                strides=[op.options["stride_h"], op.options["stride_w"]],
                dilations=[op.options["dilation_h"], op.options["dilation_w"]],
                pads=self.spatial_pads(op, kernel.shape[2], kernel.shape[3]),
                group=group,
            )
            out = self.activation(out, op.options["activation"], where)
        elif op.code == PRELU:
            alpha = self.value(op.inputs[1])
            alpha = alpha.reshape((1,) * (3 - alpha.ndim) + alpha.shape).transpose(2, 0, 1)  # HWC -> CHW
            out = self.b.op("PRelu", [x, self.b.const("alpha", np.ascontiguousarray(alpha))])
        elif op.code == ADD:
            if self.graph.constant(op.inputs[1]) is not None or op.inputs[1] in self.folded:
                raise ModelArtifactError(f"{where}: adding a constant is not supported")
            out = self.b.op("Add", [x, self.names[op.inputs[1]]])
            out = self.activation(out, op.options["activation"], where)
        elif op.code == MAX_POOL_2D:
            kh, kw = op.options["filter_h"], op.options["filter_w"]
            out = self.b.op(
                "MaxPool",
                [x],
                kernel_shape=[kh, kw],
                strides=[op.options["stride_h"], op.options["stride_w"]],
                pads=self.spatial_pads(op, kh, kw),
            )
            out = self.activation(out, op.options["activation"], where)
        elif op.code == PAD:
            p = self.graph.constant(op.inputs[1])
            if p is None or p.shape != (4, 2):
                raise ModelArtifactError(f"{where}: expected constant NHWC paddings [4, 2]")
            nchw = p[[0, 3, 1, 2]].astype(np.int64)
            pads = np.concatenate([nchw[:, 0], nchw[:, 1]])
            out = self.b.op("Pad", [x, self.b.const("pads", pads)], mode="constant")
        else:
            raise ModelArtifactError(f"{where}: TFLite op not supported by this converter")
        self.names[op.outputs[0]] = out


def _find_output(graph: TfliteGraph, last_dim: int) -> int:
    found = [i for i in graph.outputs if graph.tensors[i].shape[-1] == last_dim]
    if len(found) != 1:
        shapes = [graph.tensors[i].shape for i in graph.outputs]
        raise ModelArtifactError(f"face landmark model: no single output of width {last_dim} in {shapes}")
    return found[0]


def build_face_mesh_onnx(graph: TfliteGraph) -> onnx.ModelProto:
    """uint8 NHWC RGB [N,192,192,3] -> landmarks [N,468,3] (crop pixels), face_logit, face_score [N]."""
    if len(graph.inputs) != 1 or graph.tensors[graph.inputs[0]].shape != (1, INPUT_SIZE, INPUT_SIZE, 3):
        raise ModelArtifactError("face landmark model: expected one input [1, 192, 192, 3]")
    conv = _Converter(graph)
    b = conv.b
    pixels = b.op("Cast", [INPUT_NAME], to=FLOAT)
    scaled = b.op("Mul", [pixels, b.const("inv255", np.array(1.0 / 255.0, np.float32))])  # MediaPipe's [0, 1]
    conv.names[graph.inputs[0]] = b.op("Transpose", [scaled], perm=[0, 3, 1, 2])
    for op in graph.operators:
        conv.convert(op)
    mesh = conv.names[_find_output(graph, NUM_LANDMARKS * 3)]
    flag = conv.names[_find_output(graph, 1)]
    # [N, 1404, 1, 1] -> [N, 468, 3]: channel k = point k // 3, coordinate k % 3 (x, y, z)
    landmarks = b.op("Reshape", [mesh, b.const("mesh_shape", np.array([-1, NUM_LANDMARKS, 3], np.int64))])
    rename_output(b, landmarks, LANDMARKS_NAME)
    logit = b.op("Reshape", [flag, b.const("flag_shape", np.array([-1], np.int64))])
    rename_output(b, logit, FACE_LOGIT_NAME)
    score = b.op("Sigmoid", [FACE_LOGIT_NAME])
    rename_output(b, score, FACE_SCORE_NAME)
    return b.model(
        [tensor_info(INPUT_NAME, UINT8, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        [
            tensor_info(LANDMARKS_NAME, FLOAT, ["N", NUM_LANDMARKS, 3]),
            tensor_info(FACE_LOGIT_NAME, FLOAT, ["N"]),
            tensor_info(FACE_SCORE_NAME, FLOAT, ["N"]),
        ],
        "mediapipe_face_landmark",
        f"MediaPipe face landmark model (mediapipe {MEDIAPIPE_VERSION}, Apache-2.0), converted by facegate.",
    )


def convert_face_mesh(
    tflite_bytes: bytes, dst: Path, *, expected_sha256: str = FACE_LANDMARK_SHA256
) -> dict[str, Any]:
    """Write the ONNX face mesh to dst; the manifest details."""
    _check_tflite(tflite_bytes, expected_sha256, FACE_LANDMARK_MEMBER)
    graph = read_tflite(tflite_bytes)
    model = build_face_mesh_onnx(graph)
    dst.write_bytes(model.SerializeToString())
    ops: dict[str, int] = {}
    for op in graph.operators:
        ops[op.name] = ops.get(op.name, 0) + 1
    return {
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", INPUT_SIZE, INPUT_SIZE, 3],
            "layout": "NHWC",
            "dtype": "uint8",
            "color": "RGB",
            "range": [0, 255],  # divided by 255 inside the graph: the .tflite takes [0, 1]
        },
        "outputs": {
            "landmarks": {
                "name": LANDMARKS_NAME,
                "shape": ["N", NUM_LANDMARKS, 3],
                "units": "pixels of the 192x192 crop; z relative depth in the same units as x",
            },
            "face_logit": {"name": FACE_LOGIT_NAME, "shape": ["N"]},
            "face_score": {"name": FACE_SCORE_NAME, "shape": ["N"], "activation": "sigmoid"},
        },
        "crop": dict(CROP_CONVENTION),
        "source": {
            "package": "mediapipe",
            "version": MEDIAPIPE_VERSION,
            "wheel": MEDIAPIPE_WHEEL,
            "wheel_sha256": MEDIAPIPE_WHEEL_SHA256,
            "file": FACE_LANDMARK_MEMBER,
            "file_sha256": hashlib.sha256(tflite_bytes).hexdigest(),
        },
        "tflite_ops": ops,
        "license": "Apache-2.0",
        "opset": OPSET,
    }


def convert_face_mesh_wheel(wheel: Path, dst: Path) -> dict[str, Any]:
    """Converter-shaped entry point (source file, artifact) for `facegate models build`."""
    return convert_face_mesh(read_face_landmark_tflite(wheel), dst)
