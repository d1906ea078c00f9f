"""The operator-supplied PAD model: upstream crop rule, import checks, scores on real NUAA frames."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper
from typer.testing import CliRunner

from app.cli import cli
from app.vision.manifest import MANIFEST_NAME, ModelArtifactError, load_manifest
from app.vision.pad import PadModel, fuse_scores, pad_crop, pad_crop_box, upstream_bbox
from models.import_pad import KNOWN_PAD_MODELS, PadImportError, existing_pad_entry, import_pad
from tests.conftest import REPO

SILENT_FACE = REPO.parent / "shared" / "models" / "silent_face"
LIVENESS = REPO.parent / "shared" / "faces" / "liveness"


def silent_face() -> Path:
    if not all((SILENT_FACE / name).is_file() for name in KNOWN_PAD_MODELS):
        pytest.skip("../shared/models/silent_face is absent")
    return SILENT_FACE


def coordinate_image(h: int = 100, w: int = 200) -> NDArray[np.uint8]:
    """Each pixel says where it is, so a crop can be checked against a slice."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx % 256, yy % 256, (xx * 7 + yy * 13) % 256]).astype(np.uint8)


# Hand-computed with upstream's rule on a 100 x 200 (h x w) image: src_h - 1 = 99, src_w - 1 = 199.
@pytest.mark.parametrize(
    ("box", "scale", "expected"),
    [
        # interior: centre (90.5, 38.5), 56.7 x 45.9; truncation, not rounding
        ((80, 30, 21, 17), 2.7, (62, 15, 118, 61)),
        # left border: centre (15, 50), 54 x 54 window starts at x=-12 -> shifted right by 12
        ((5, 40, 20, 20), 2.7, (0, 23, 54, 77)),
        # right border: window 168..222 -> shifted left by 23
        ((185, 40, 20, 20), 2.7, (145, 23, 199, 77)),
        # top border: window rows -15..39 -> shifted down by 15
        ((90, 2, 20, 20), 2.7, (73, 0, 127, 54)),
        # bottom border: window rows 61..115 -> shifted up by 16
        ((90, 78, 20, 20), 2.7, (73, 45, 127, 99)),
        # 4.0 x 60 px does not fit 100 rows: scale drops to 99/60 = 1.65, window 99 x 99, shifted down
        ((50, 10, 60, 60), 4.0, (30, 0, 129, 99)),
        # fractional window on two borders at once: 56.7 x 45.9 from (-6.85, -1.45)
        ((11, 13, 21, 17), 2.7, (0, 0, 56, 45)),
    ],
)
def test_crop_window_follows_upstream(
    box: tuple[int, int, int, int], scale: float, expected: tuple[int, int, int, int]
) -> None:
    assert pad_crop_box(100, 200, box, scale) == expected
    image = coordinate_image()
    x0, y0, x1, y1 = expected
    want = cv2.resize(image[y0 : y1 + 1, x0 : x1 + 1], (80, 80))
    np.testing.assert_array_equal(pad_crop(image, box, scale), want)


def test_border_crop_is_shifted_not_clipped() -> None:
    inside = pad_crop_box(100, 200, (90, 40, 20, 20), 2.7)
    for box in [(5, 40, 20, 20), (185, 40, 20, 20), (90, 2, 20, 20), (90, 78, 20, 20)]:
        x0, y0, x1, y1 = pad_crop_box(100, 200, box, 2.7)
        assert (x1 - x0, y1 - y0) == (inside[2] - inside[0], inside[3] - inside[1])  # same size
        assert x0 >= 0 and x1 <= 199 and y0 >= 0 and y1 <= 99


def test_box_conversion_and_invalid_input() -> None:
    assert upstream_bbox((10, 20, 29, 39)) == (10, 20, 20, 20)  # inclusive -> width 20
    assert upstream_bbox((10, 20, 29, 39), (1.0, 1.3)) == (10, 17, 20, 26)  # taller, same centre
    with pytest.raises(ValueError, match="no area"):
        upstream_bbox((10, 20, 9, 39))
    with pytest.raises(ValueError, match="no area"):
        pad_crop_box(100, 200, (0, 0, 0, 5), 2.7)
    with pytest.raises(ValueError, match="BGR"):
        pad_crop(np.zeros((10, 10), np.uint8), (0, 0, 5, 5), 2.7)


def test_fusion_rules() -> None:
    scores = [0.9, 0.1, 0.8, 0.7]
    assert fuse_scores(scores, "mean") == pytest.approx(0.625)
    assert fuse_scores(scores, "median") == pytest.approx(0.75)
    assert fuse_scores(scores, "min") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no frame"):
        fuse_scores([], "mean")
    with pytest.raises(ValueError, match="finite"):
        fuse_scores([0.5, float("nan")], "mean")
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse_scores(scores, "max")


# --- import -----------------------------------------------------------------------------------


@pytest.fixture
def built_dir(model_dir: Path, tmp_path: Path) -> Path:
    """A private model folder: the built manifest and links to the built artifacts."""
    target = tmp_path / "models"
    target.mkdir()
    manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    for entry in manifest["models"].values():
        (target / entry["file"]).symlink_to(model_dir / entry["file"])
    manifest["models"].pop("pad", None)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


def test_import_refuses_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "model.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(PadImportError, match="not a valid ONNX model"):
        import_pad([junk], tmp_path)


def test_import_refuses_truncated_copy(tmp_path: Path) -> None:
    source = silent_face() / "2.7_80x80_MiniFASNetV2.onnx"
    cut = tmp_path / source.name
    cut.write_bytes(source.read_bytes()[:-1000])
    with pytest.raises(PadImportError, match="not a valid ONNX model"):
        import_pad([cut, silent_face() / "4_0_0_80x80_MiniFASNetV1SE.onnx"], tmp_path)
    assert not (tmp_path / "4_0_0_80x80_MiniFASNetV1SE.onnx").exists()  # nothing copied


def test_import_refuses_unknown_onnx_naming_the_expected_hashes(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    other = tmp_path / "2.7_80x80_MiniFASNetV2.onnx"  # the right name does not make it the right file
    onnx.save(helper.make_model(graph), other)
    with pytest.raises(PadImportError) as info:
        import_pad([other], tmp_path)
    for known in KNOWN_PAD_MODELS.values():
        assert known.sha256 in str(info.value)


def test_import_needs_both_networks(tmp_path: Path) -> None:
    with pytest.raises(PadImportError, match="MiniFASNetV1SE"):
        import_pad([silent_face() / "2.7_80x80_MiniFASNetV2.onnx"], tmp_path)


@pytest.mark.shared
def test_import_records_a_verified_entry(built_dir: Path) -> None:
    before = json.loads((built_dir / MANIFEST_NAME).read_text())
    manifest = import_pad([silent_face()], built_dir)
    assert load_manifest(built_dir).models.keys() == manifest.models.keys()
    entry = manifest.entry("pad")
    details = manifest.details("pad")
    assert entry.file == "2.7_80x80_MiniFASNetV2.onnx" and entry.kind == "onnx"
    assert entry.version.startswith("minifasnet-v2+v1se:")
    assert [(f["file"], f["scale"]) for f in details["files"]] == [
        ("2.7_80x80_MiniFASNetV2.onnx", 2.7),
        ("4_0_0_80x80_MiniFASNetV1SE.onnx", 4.0),
    ]
    assert details["real_index"] == 1 and details["licence"] == "Apache-2.0"
    after = json.loads((built_dir / MANIFEST_NAME).read_text())
    assert {k: v for k, v in after.items() if k != "models"} == {
        k: v for k, v in before.items() if k != "models"
    }
    assert {k: v for k, v in after["models"].items() if k != "pad"} == before["models"]
    assert existing_pad_entry(built_dir) == after["models"]["pad"]


@pytest.mark.shared
def test_changed_second_network_is_refused_at_load(built_dir: Path) -> None:
    manifest = import_pad([silent_face()], built_dir)
    second = built_dir / "4_0_0_80x80_MiniFASNetV1SE.onnx"
    second.write_bytes(second.read_bytes()[:-10])  # load_manifest checks only the entry's `file`
    with pytest.raises(ModelArtifactError, match=r"4_0_0_80x80_MiniFASNetV1SE\.onnx"):
        PadModel.from_manifest(built_dir, manifest)
    assert existing_pad_entry(built_dir) is None


@pytest.mark.shared
@pytest.mark.slow
def test_forced_rebuild_keeps_the_import(built_dir: Path) -> None:
    from models.build import build_models

    imported = import_pad([silent_face()], built_dir).entry("pad")
    rebuilt = build_models(built_dir, force=True)  # replaces the links, not the cached artifacts
    assert rebuilt.entry("pad") == imported


@pytest.mark.shared
def test_cli_import_pad(built_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 100)
    refused = runner.invoke(cli, ["models", "import-pad", "--model-dir", str(built_dir), str(junk)])
    assert refused.exit_code == 2
    assert "error:" in refused.output
    ok = runner.invoke(cli, ["models", "import-pad", "--model-dir", str(built_dir), str(silent_face())])
    assert ok.exit_code == 0, ok.output
    assert "MiniFASNetV1SE" in ok.output and "pad" in load_manifest(built_dir).models


# --- scores on real frames ----------------------------------------------------------------------


@pytest.fixture
def pad_model(built_dir: Path, pipeline) -> Iterator[PadModel]:  # type: ignore[no-untyped-def]
    import_pad([silent_face()], built_dir)
    # The box scale that matches the detector whose boxes the test feeds it.
    model = PadModel.from_manifest(built_dir, load_manifest(built_dir), detector=pipeline.profile.detector)
    yield model
    model.close()


def nuaa_rows(kind: str) -> list[dict[str, str]]:
    """One frame per NUAA subject, from the middle of that subject's frames of this kind."""
    if not (LIVENESS / "manifest.csv").is_file():
        pytest.skip("../shared/faces/liveness is absent")
    by_subject: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader((LIVENESS / "manifest.csv").open()):
        if row["path"].startswith(f"nuaa/{kind}/"):
            by_subject.setdefault(row["subject"], []).append(row)
    return [rows[len(rows) // 2] for rows in by_subject.values()]


@pytest.mark.shared
@pytest.mark.slow
def test_real_nuaa_live_high_print_low(pad_model: PadModel, pipeline) -> None:  # type: ignore[no-untyped-def]
    scores = {}
    for kind in ("live", "print"):
        frames: list[NDArray[np.uint8]] = []
        boxes = []
        for row in nuaa_rows(kind):
            bgr = np.asarray(cv2.imread(str(LIVENESS / row["path"])), dtype=np.uint8)
            faces = pipeline.faces(bgr)
            assert faces, row["path"]
            frames.append(bgr)
            boxes.append(max((f.box for f in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))
        scores[kind] = pad_model.score_frames(frames, boxes)
        assert len(scores[kind]) == 7
    assert scores["live"].min() > 0.5, scores["live"]
    assert scores["print"].max() < 0.5, scores["print"]
    # dev-set means with these boxes: 0.96 live, 0.001 print (scripts/measure_pad.py)
    assert pad_model.fuse(scores["live"]) > 0.8
    assert pad_model.fuse(scores["print"]) < 0.05
    one = pad_model.score_frames(frames[:1], boxes[:1])
    assert one[0] == pytest.approx(scores["print"][0], abs=1e-6)  # a burst is per-frame scores


def test_no_frames_no_scores_and_mismatch(pad_model: PadModel) -> None:
    assert pad_model.score_frames([], []).shape == (0,)
    with pytest.raises(ValueError, match="boxes"):
        pad_model.score_frames([np.zeros((50, 50, 3), np.uint8)], [])
