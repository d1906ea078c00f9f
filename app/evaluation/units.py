"""What excites a unit: the face patches that most activate channels of an encoder layer.

Zeiler & Fergus (2014) showed, for a unit (a channel of a convolutional layer), the image patches
of a dataset that activate it most. Here:

1. the encoder's ONNX graph gets the chosen layer as an extra output (the graph is edited in
   memory with the ``onnx`` package; the weights are untouched);
2. a folder of photos goes through the profile's own detector and alignment, and the aligned chips
   through that graph in batches;
3. for each unit, its strongest response in each chip (the spatial argmax) is kept, and the ``k``
   chips where it is largest give the top patches;
4. each patch is the argmax unit's receptive field on the chip, computed from the graph
   (``app.evaluation.receptive_field``): kernel, stride, padding and dilation of every node from the
   input to the layer. Field parts outside the chip (the network's zero padding) are drawn grey.

Model inspection, not a measurement: a grid suggests what a unit responds to; it proves nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from numpy.typing import NDArray

from app.evaluation.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field
from app.vision.runtime import create_session

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Grid layout (pixels)
CELL = 72
GAP = 4
LABEL_W = 92
TITLE_H = 28
GREY = 128


@dataclass(frozen=True)
class UnitPatch:
    value: float  # the unit's activation at its argmax in this chip
    chip: int  # index of the chip
    row: int  # argmax position in the layer's map
    col: int


@dataclass(frozen=True)
class UnitsResult:
    layer: str
    field: ReceptiveField
    channels: int  # the layer's channel count
    units: list[int]  # the units shown
    top: list[list[UnitPatch]]  # per unit, its top patches (strongest first)
    patches: list[list[NDArray[np.uint8]]]  # per unit, the RGB patches (cell x cell)
    images: int  # chips examined
    # Per unit of the layer: the share of chips whose strongest response is at the unit's most
    # frequent map position (aligned faces put parts at fixed places: how much is position?)
    position_share: NDArray[np.float64]
    map_positions: int  # positions in the layer's map (1 / this: no preference at all)


def with_output(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """A copy of ``model`` whose only output is ``tensor`` (an intermediate activation)."""
    produced = {o for n in model.graph.node for o in n.output}
    if tensor not in produced:
        raise ReceptiveFieldError(f"the graph has no tensor {tensor!r}")
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    # The tensor's type and shape as shape inference sees them; else float32 of unknown shape
    # (every activation of these encoders is float32).
    value = onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError:
        inferred = None
    if inferred is not None:
        value = next((vi for vi in inferred.graph.value_info if vi.name == tensor), value)
    del edited.graph.output[:]
    edited.graph.output.append(value)
    return edited


class LayerProbe:
    """An ONNX Runtime session over the encoder's graph that outputs one layer (N, C, H, W)."""

    def __init__(self, model_path: Path, layer: str, *, providers: Sequence[str], threads: int) -> None:
        model = onnx.load(str(model_path))
        self.field = receptive_field(model, layer)
        self.layer = self.field.tensor
        edited = with_output(model, self.layer)
        inputs = [i for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer}]
        self.input = inputs[0].name
        with tempfile.TemporaryDirectory() as tmp:  # the one session wrapper takes a file
            path = Path(tmp) / "layer.onnx"
            onnx.save(edited, str(path))
            self._session = create_session(path, providers=providers, intra_op_threads=threads)

    def run(self, chips: NDArray[np.uint8], batch: int = 32) -> NDArray[np.float32]:
        parts = [
            np.asarray(
                self._session.run([self.layer], {self.input: np.ascontiguousarray(chips[i : i + batch])})[0]
            )
            for i in range(0, len(chips), batch)
        ]
        out = np.concatenate(parts).astype(np.float32, copy=False)
        if out.ndim != 4:
            raise ReceptiveFieldError(f"layer {self.layer} is {out.ndim}-d, not N x C x H x W")
        return out


def image_files(folder: Path, limit: int | None) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; with ``limit``, spread evenly over them."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None and len(files) > limit:
        picks = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in sorted(set(picks.tolist()))]
    return files


def strongest(maps: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Per chip and channel: the largest activation and its flat spatial position (N, C)."""
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    pos = flat.argmax(axis=2)
    return np.take_along_axis(flat, pos[..., None], axis=2)[..., 0], pos


def crop_field(
    chip: NDArray[np.uint8], box: tuple[int, int, int, int], size: int = CELL
) -> NDArray[np.uint8]:
    """The chip's pixels inside ``box`` (left, top, right, bottom, inclusive), grey where the box
    leaves the chip, scaled to size x size."""
    left, top, right, bottom = box
    h, w = chip.shape[:2]
    out = np.full((bottom - top + 1, right - left + 1, 3), GREY, dtype=np.uint8)
    y0, y1 = max(top, 0), min(bottom, h - 1)
    x0, x1 = max(left, 0), min(right, w - 1)
    if y0 <= y1 and x0 <= x1:
        out[y0 - top : y1 - top + 1, x0 - left : x1 - left + 1] = chip[y0 : y1 + 1, x0 : x1 + 1]
    return np.asarray(cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def top_patches(
    probe: LayerProbe,
    chips: NDArray[np.uint8],
    units: Sequence[int],
    k: int,
    *,
    batch: int = 32,
    cell: int = CELL,
) -> UnitsResult:
    """The ``k`` chips that excite each unit most (one patch per chip), and those patches."""
    if len(chips) == 0:
        raise ValueError("no aligned face to examine")
    values: list[NDArray[np.float32]] = []
    positions: list[NDArray[np.int64]] = []
    width = height = 0
    channels = 0
    for i in range(0, len(chips), batch):
        maps = probe.run(chips[i : i + batch], batch)
        channels, height, width = maps.shape[1], maps.shape[2], maps.shape[3]
        v, p = strongest(maps)
        values.append(v)
        positions.append(p)
    value = np.concatenate(values)
    position = np.concatenate(positions)
    bad = [u for u in units if not 0 <= u < channels]
    if bad:
        raise ValueError(f"layer {probe.layer} has {channels} units (0..{channels - 1}); no unit {bad[0]}")
    top: list[list[UnitPatch]] = []
    patches: list[list[NDArray[np.uint8]]] = []
    for u in units:
        order = np.argsort(-value[:, u], kind="stable")[: min(k, len(chips))]
        row: list[UnitPatch] = []
        for idx in order:
            r, c = divmod(int(position[idx, u]), width)
            row.append(UnitPatch(float(value[idx, u]), int(idx), r, c))
        top.append(row)
        patches.append([crop_field(chips[p.chip], probe.field.box(p.row, p.col), cell) for p in row])
    share = np.array(
        [np.bincount(position[:, c], minlength=height * width).max() for c in range(channels)], np.float64
    ) / len(chips)
    return UnitsResult(
        probe.layer, probe.field, channels, list(units), top, patches, len(chips), share, height * width
    )


def grid_size(units: int, k: int, cell: int = CELL) -> tuple[int, int]:
    """(width, height) of a grid of ``units`` rows of ``k`` patches of cell x cell pixels."""
    return LABEL_W + k * (cell + GAP) + GAP, TITLE_H + units * (cell + GAP) + GAP


def _text(img: NDArray[np.uint8], text: str, org: tuple[int, int], scale: float = 0.42) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def render_grid(result: UnitsResult, title: str) -> NDArray[np.uint8]:
    """The grid as a BGR image: one row per unit (label: unit and its top activation), k patches."""
    k = max((len(r) for r in result.patches), default=0)
    cell = next((p.shape[0] for row in result.patches for p in row), CELL)
    width, height = grid_size(len(result.units), k, cell)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    _text(img, title, (GAP, 19))
    for r, (unit, row, patches) in enumerate(zip(result.units, result.top, result.patches, strict=True)):
        y = TITLE_H + r * (cell + GAP)
        _text(img, f"unit {unit}", (GAP, y + cell // 2 - 4))
        if row:
            _text(img, f"max {row[0].value:.2f}", (GAP, y + cell // 2 + 14), 0.38)
        for c, patch in enumerate(patches):
            x = LABEL_W + c * (cell + GAP)
            img[y : y + cell, x : x + cell] = cv2.cvtColor(patch, cv2.COLOR_RGB2BGR)
    return img


def collect_chips(
    files: Sequence[Path],
    align: Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None],
    progress: Callable[[str], None] | None = None,
) -> NDArray[np.uint8]:
    """Each file's aligned chip (``align`` on its RGB pixels; None: no face), stacked."""
    chips = []
    for i, path in enumerate(files):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        chip = align(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        if chip is not None:
            chips.append(chip)
        if progress is not None and (i + 1) % 200 == 0:
            progress(f"{i + 1}/{len(files)} images, {len(chips)} faces")
    if not chips:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(chips)
