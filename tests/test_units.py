"""`facegate visualize units`: receptive fields computed from ONNX graphs, and the top-patch grid.

The walk is checked on small hand-built graphs with answers worked out by hand, and on the real
encoders against what actually changes when one input pixel changes (ONNX Runtime runs both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from app.cli import cli
from app.evaluation.receptive_field import (
    ReceptiveField,
    ReceptiveFieldError,
    receptive_field,
    spatial_tensors,
)
from app.evaluation.units import CELL, LayerProbe, grid_size, render_grid, top_patches, with_output
from app.settings import Settings, get_settings
from app.vision.explain import largest_chips
from app.vision.pipeline import FacePipeline
from app.vision.runtime import create_session
from tests.conftest import SHARED_FACES

RNG = np.random.default_rng(7)


def _weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.normal(0.0, 1.0, shape).astype(np.float32), name)


def _model(
    nodes: list[onnx.NodeProto], inputs: list[Any], output: tuple[str, list[int | None]], inits: list[Any]
) -> Any:
    out = helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1])
    graph = helper.make_graph(nodes, "hand", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _branchy() -> Any:
    """x [1,1,32,32] -> conv 3x3/1 pad 1 -> maxpool 2x2/2 -> conv 3x3/1 pad 1 dilation 2 ---\\
                     \\-> conv 5x5/2 (no pad) --------------------------------------------- Add
       -> Pad (1 before, 0 after, on H and W) -> conv 3x3/2 (VALID) = y [1,1,7,7]"""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], dilations=[2, 2]),  # kernel from w2
        helper.make_node("Conv", ["x", "wb"], ["b"], kernel_shape=[5, 5], strides=[2, 2]),
        helper.make_node("Add", ["c2", "b"], ["sum"]),
        helper.make_node("Pad", ["sum", "pads"], ["padded"], mode="constant"),
        helper.make_node(
            "Conv", ["padded", "w3"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"
        ),
    ]
    inits = [
        _weight("w1", (2, 1, 3, 3)),
        _weight("w2", (2, 2, 3, 3)),
        _weight("wb", (2, 1, 5, 5)),
        _weight("w3", (1, 2, 3, 3)),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 0, 0], np.int64), "pads"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32, 32])],
        ("y", [1, 1, 7, 7]),
        inits,
    )


def _changed_units(
    session: Any, field: ReceptiveField, feed: NDArray[Any], *, pixel: tuple[int, int], axes: tuple[int, int]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which units change when input pixel (y, x) changes, and which the field says can."""
    name = session.get_inputs()[0].name
    base = np.asarray(session.run(None, {name: feed})[0])[0]
    other = feed.copy()
    y, x = pixel
    index = [0] * feed.ndim
    index[axes[0]], index[axes[1]] = y, x
    if feed.dtype == np.uint8:
        other[tuple(index[:3])] = 255 - other[tuple(index[:3])]  # NHWC: every channel of the pixel
    else:
        other[tuple(index)] += 1000.0
    changed = np.abs(np.asarray(session.run(None, {name: other})[0])[0] - base).max(axis=0) > 0
    h, w = changed.shape
    predicted = np.array([[field.sees(r, c, y, x) for c in range(w)] for r in range(h)])
    return changed, predicted


def test_receptive_field_of_a_hand_built_graph(tmp_path: Path) -> None:
    model = _branchy()
    f = receptive_field(model, "y")
    # By hand: c1 (-1..1, jump 1); p1 (-1..2, jump 2); c2, dilation 2 so an effective 5x5 with pad 1:
    # (-1 - 2 .. 2 + 3 * 2) = (-3..8); b: (0..4, jump 2); Add: the union (-3..8); Pad 1 before:
    # (-5..6); VALID 3x3/2: (-5..6 + 2 * 2) = (-5..10), jump 4; 15 units -> 7.
    for axis in (f.height, f.width):
        assert (axis.size, axis.jump, axis.first, axis.last, axis.extent, axis.start) == (
            7,
            4,
            -5,
            10,
            16,
            2.5,
        )
        # Every input pixel reaches y: c1, p1 and the pad keep all of them.
        assert (axis.lo, axis.hi) == (0, 31)
    assert f.box(1, 2) == (3, -1, 18, 14)
    assert f.path == ("Conv", "MaxPool", "Conv", "Add", "Pad", "Conv")
    # A node's name stands for its output; intermediate tensors have their own fields.
    b = receptive_field(model, "b")
    assert (b.height.size, b.height.jump, b.height.first, b.height.last, b.height.hi) == (14, 2, 0, 4, 30)
    assert [t.tensor for t in spatial_tensors(model)] == ["c1", "p1", "c2", "b", "sum", "padded", "y"]
    # ONNX Runtime agrees: a pixel changes at most the units whose field holds it, and (where the
    # dilated kernel leaves no hole) exactly those.
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))
    session = create_session(path, providers=("CPUExecutionProvider",))
    feed = RNG.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)
    for y, x in ((0, 0), (16, 9), (31, 31), (3, 28)):
        changed, predicted = _changed_units(session, f, feed, pixel=(y, x), axes=(2, 3))
        assert changed.any() and not (changed & ~predicted).any()
        rows, cols = np.nonzero(predicted)
        got_rows, got_cols = np.nonzero(changed)
        assert (got_rows.min(), got_rows.max(), got_cols.min(), got_cols.max()) == (
            rows.min(),
            rows.max(),
            cols.min(),
            cols.max(),
        )


def test_same_padding_transposed_input_and_a_global_pool() -> None:
    """uint8 NHWC [1,20,20,3] -> Cast -> Transpose -> conv 5x5/2 SAME_UPPER (or LOWER) -> global
    average pool -> Reshape: ceil(20/2) = 10 units, total padding (10-1)*2 + 5 - 20 = 3."""

    def model(auto_pad: str) -> Any:
        nodes = [
            helper.make_node("Cast", ["chips"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
            helper.make_node(
                "Conv", ["t", "w"], ["c"], kernel_shape=[5, 5], strides=[2, 2], auto_pad=auto_pad
            ),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Reshape", ["g", "shape"], ["flat"]),
        ]
        inits = [_weight("w", (4, 3, 5, 5)), numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
        inputs = [helper.make_tensor_value_info("chips", TensorProto.UINT8, [None, 20, 20, 3])]
        return _model(nodes, inputs, ("flat", [None, None]), inits)

    upper, lower = model("SAME_UPPER"), model("SAME_LOWER")
    u, low = receptive_field(upper, "r"), receptive_field(lower, "r")
    assert (u.height.size, u.width.jump, u.height.first, u.height.last) == (10, 2, -1, 3)  # 1 before, 2 after
    assert (low.height.first, low.height.last) == (-2, 2)  # 2 before, 1 after
    g = receptive_field(upper, "g")
    assert (g.height.size, g.height.first, g.height.last) == (1, -1, 3 + 9 * 2)
    with pytest.raises(ReceptiveFieldError, match="Reshape"):
        receptive_field(upper, "flat")
    with pytest.raises(ReceptiveFieldError, match="no tensor"):
        receptive_field(upper, "nothing")
    with pytest.raises(ReceptiveFieldError, match="no tensor"):
        with_output(upper, "nothing")


@pytest.mark.parametrize(
    "case",
    [
        ("sface.onnx", "conv_8_relu", 112, 14, 47, 8, 111),  # SFace, mid-network
        ("encoder.onnx", "relu_38", 150, 35, 59, 4, 146),  # dlib's ResNet after its 32-channel stage
    ],
)
def test_real_encoder_layers_fields_match_what_one_pixel_changes(
    model_dir: Path, case: tuple[str, str, int, int, int, int, int]
) -> None:
    file, layer, size, units, extent, jump, reach = case
    probe = LayerProbe(model_dir / file, layer, providers=("CPUExecutionProvider",), threads=1)
    f = probe.field
    assert (f.height.size, f.height.extent, f.height.jump, f.height.hi) == (units, extent, jump, reach)
    assert f.width == f.height
    # dlib's 7x7/2 conv and 3x3/2 max pool (no padding) never read the chip's last rows and columns.
    chip = RNG.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    for y, x in ((0, 0), (size // 2, size // 3), (size - 1, size - 1), (5, size - 3)):
        changed, predicted = _changed_units(probe._session, f, chip, pixel=(y, x), axes=(1, 2))
        assert np.array_equal(changed, predicted), (y, x)


# --- the grid -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chips(settings: Settings, astronaut: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """SFace chips of real faces: a few LFW photos when ../shared is there, and the astronaut."""
    pipeline = FacePipeline.load(settings, profile="fusion")
    images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1])]
    if SHARED_FACES.is_dir():
        for name in ("Aaron_Sorkin/Aaron_Sorkin_0001.jpg", "Jelena_Dokic/Jelena_Dokic_0001.jpg"):
            bgr = cv2.imread(str(SHARED_FACES / "lfw-dev" / "images" / name))
            images.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    found = [largest_chips(pipeline, rgb) for rgb in images]
    assert all(c is not None and len(c) == 2 for c in found)
    return np.stack([c[0] for c in found if c is not None])


def test_the_unit_grid_has_one_row_per_unit_of_top_patches(model_dir: Path, chips: NDArray[np.uint8]) -> None:
    probe = LayerProbe(
        model_dir / "sface.onnx", "conv_6_relu", providers=("CPUExecutionProvider",), threads=1
    )
    units, k = [0, 5, 200], 3
    result = top_patches(probe, chips, units, k)
    assert (result.layer, result.channels, result.images, result.units) == (
        "conv_6_relu",
        256,
        len(chips),
        units,
    )
    assert [len(row) for row in result.top] == [k] * 3
    assert all(p.shape == (CELL, CELL, 3) and p.dtype == np.uint8 for row in result.patches for p in row)
    maps = probe.run(chips)
    for unit, row in zip(units, result.top, strict=True):
        values = [p.value for p in row]
        assert values == sorted(values, reverse=True)
        assert len({p.chip for p in row}) == k  # one patch per face
        for p in row:  # each is that face's strongest response of the unit, where it says
            assert p.value == pytest.approx(float(maps[p.chip, unit].max()))
            assert maps[p.chip, unit, p.row, p.col] == pytest.approx(p.value)
    # How much of a unit's choice is position: per unit, the share of faces at its commonest place.
    assert result.position_share.shape == (256,) and result.map_positions == 28 * 28
    assert np.all(result.position_share >= 1 / len(chips)) and np.all(result.position_share <= 1)
    assert result.position_share[5] == pytest.approx(
        np.bincount(maps[:, 5].reshape(len(chips), -1).argmax(axis=1)).max() / len(chips)
    )
    grid = render_grid(result, "test")
    assert grid.shape == (grid_size(3, k)[1], grid_size(3, k)[0], 3)
    with pytest.raises(ValueError, match="256 units"):
        top_patches(probe, chips, [256], k)


def test_visualize_units_cli_writes_the_grid(
    model_dir: Path, tmp_path: Path, astronaut: NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, scale in enumerate((1.0, 0.8, 0.6)):
        img = cv2.resize(astronaut, None, fx=scale, fy=scale)
        assert cv2.imwrite(
            str(folder / f"a{i}.jpg"), cv2.cvtColor(img[:, :: 1 - 2 * (i % 2)], cv2.COLOR_RGB2BGR)
        )
    out = tmp_path / "units.png"
    monkeypatch.setenv("FACEGATE_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        args = ["visualize", "units", "--encoder", "dlib", "--layer", "relu_38", "--folder", str(folder)]
        result = runner.invoke(cli, [*args, "--units", "4", "--top", "2", "--out", str(out)])
        listed = runner.invoke(cli, ["visualize", "units", "--encoder", "sface", "--list"])
        bad = runner.invoke(cli, ["visualize", "units", "--layer", "embedding", "--folder", str(folder)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "relu_38: 35x35 units, receptive field 59x59 px, jump 4x4 px" in result.output
    assert "unit 3: top at map positions (" in result.output and "(1 in 1225 if position" in result.output
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape == (grid_size(4, 2)[1], grid_size(4, 2)[0], 3)
    assert listed.exit_code == 0 and "conv_8_relu: 14x14 units, receptive field 47x47 px" in listed.output
    assert bad.exit_code == 2 and "Flatten" in bad.output  # past the flatten: no spatial field
