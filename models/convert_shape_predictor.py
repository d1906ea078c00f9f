"""Convert dlib's serialized ``shape_predictor`` (5- or 68-point landmarks) into a compact ``.npz``.

Layout (dlib/image_processing/shape_predictor.h, serialize):
    int version (1)
    matrix<float,0,1> initial_shape          -- x0, y0, x1, y1, ... normalized to the face box
    vector<vector<regression_tree>> forests  -- cascades x trees; a tree is
        vector<split_feature> splits         -- (unsigned long idx1, unsigned long idx2, float thresh)
        vector<matrix<float,0,1>> leaf_values
    vector<vector<unsigned long>> anchor_idx -- per cascade: the shape part each feature pixel hangs on
    vector<vector<vector<float,2>>> deltas   -- per cascade: offset of each feature pixel from its anchor

The file is ~3 million dlib integers. Every item is a self-delimiting integer (one control
byte whose low 4 bits give the byte count, then little-endian bytes; floats are a mantissa
and an exponent integer), so we find all token boundaries in one tight pass, decode the values
with numpy, and read the (perfectly regular) forests by reshaping instead of a per-item loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.dlib_format import DlibFormatError

PART_ORDER = {
    5: (
        "dlib 5-point: 0 outer and 1 inner corner of the eye on the image's right (the subject's left eye), "
        "2 outer and 3 inner corner of the eye on the image's left, 4 base of the nose"
    ),
    68: "iBUG 300-W 68-point: 0-16 jaw, 17-26 brows, 27-35 nose, 36-41 and 42-47 eyes, 48-67 mouth",
}
_FLOAT_SPECIAL_EXPONENT = 32000  # dlib float_details: 32000 inf, 32001 -inf, 32002 nan


def _token_starts(data: bytes, name: str) -> NDArray[np.int64]:
    """Start offsets of every dlib integer in ``data`` (which must hold nothing else)."""
    starts: list[int] = []
    append = starts.append
    pos = 0
    end = len(data)
    while pos < end:  # the only per-token Python loop: boundaries depend on the previous token
        append(pos)
        pos += 1 + (data[pos] & 0x0F)
    if pos != end:
        raise DlibFormatError(f"{name}: the last integer runs {pos - end} bytes past the end of the file")
    return np.asarray(starts, dtype=np.int64)


def _decode_tokens(data: bytes, name: str) -> NDArray[np.int64]:
    """All integers in the file, in order."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = _token_starts(data, name)
    control = buf[starts]
    sizes = (control & 0x0F).astype(np.int64)
    if np.any(sizes > 8) or np.any(control & 0x70):
        bad = int(starts[np.argmax((sizes > 8) | ((control & 0x70) != 0))])
        raise DlibFormatError(f"{name}: bad integer control byte 0x{data[bad]:02x} at byte {bad}")
    values = np.zeros(len(starts), dtype=np.uint64)
    for k in range(8):  # little-endian bytes, at most 8 per integer
        has = sizes > k
        values[has] |= buf[starts[has] + 1 + k].astype(np.uint64) << np.uint64(8 * k)
    if np.any(values[sizes == 8] >= np.uint64(1) << np.uint64(63)):
        raise DlibFormatError(f"{name}: integer does not fit in int64")
    signed = values.astype(np.int64)
    return np.where(control & 0x80, -signed, signed)


def _floats(mantissa: NDArray[np.int64], exponent: NDArray[np.int64], name: str) -> NDArray[np.float32]:
    """dlib float_details pairs -> float32 (exact: the values were float32 when saved)."""
    if np.any(exponent >= _FLOAT_SPECIAL_EXPONENT):
        raise DlibFormatError(f"{name}: non-finite float in the model")
    values = np.ldexp(mantissa.astype(np.float64), exponent.astype(np.int32))
    out = values.astype(np.float32)
    if not np.array_equal(out.astype(np.float64), values):
        raise DlibFormatError(f"{name}: a stored float is not exactly a float32")
    return out


class _Cursor:
    """Walks the decoded integer stream with checks that name what was expected."""

    def __init__(self, tokens: NDArray[np.int64], name: str) -> None:
        self.t = tokens
        self.pos = 0
        self.name = name

    def take(self, n: int, what: str) -> NDArray[np.int64]:
        if n < 0 or self.pos + n > len(self.t):
            raise DlibFormatError(f"{self.name}: file ends inside {what}")
        out = self.t[self.pos : self.pos + n]
        self.pos += n
        return out

    def integer(self, what: str) -> int:
        return int(self.take(1, what)[0])

    def expect(self, value: int, what: str) -> None:
        got = self.integer(what)
        if got != value:
            raise DlibFormatError(
                f"{self.name}: expected {what} = {value}, found {got} at token {self.pos - 1}"
            )

    def float_block(self, n: int, what: str) -> NDArray[np.float32]:
        pairs = self.take(2 * n, what).reshape(n, 2)
        return _floats(pairs[:, 0], pairs[:, 1], self.name)


def _column_vector(c: _Cursor, what: str) -> NDArray[np.float32]:
    rows = -c.integer(f"{what} rows")
    c.expect(-1, f"{what} columns (stored negated)")
    if rows < 0:
        raise DlibFormatError(f"{c.name}: bad {what} size")
    return c.float_block(rows, what)


def read_shape_predictor(data: bytes, name: str = "<shape_predictor>") -> dict[str, NDArray[Any]]:
    """Parse a serialized dlib shape_predictor into arrays; the whole file must be consumed."""
    c = _Cursor(_decode_tokens(data, name), name)
    c.expect(1, "shape_predictor version")
    initial_shape = _column_vector(c, "initial_shape")
    parts2 = initial_shape.size

    cascades = c.integer("number of cascades")
    trees = c.integer("trees in cascade 0")
    splits = c.integer("splits in tree 0")
    c.pos -= 2  # peeked: every cascade is re-read below with these sizes checked
    leaves = splits + 1
    if cascades <= 0 or trees <= 0 or splits <= 0 or leaves & (leaves - 1):
        raise DlibFormatError(f"{name}: unexpected forest sizes {cascades}x{trees}, {splits} splits")
    # One tree = nsplits, 3 numbers per split (idx1, idx2, thresh as 2 ints), nleaves,
    # and per leaf -rows, -cols and the floats. The forests are regular, so reshape.
    tree_len = 1 + 4 * splits + 1 + leaves * (2 + 2 * parts2)
    idx1 = np.empty((cascades, trees, splits), dtype=np.int64)
    idx2 = np.empty_like(idx1)
    thresh = np.empty((cascades, trees, splits), dtype=np.float32)
    leaf_values = np.empty((cascades, trees, leaves, parts2), dtype=np.float32)
    for k in range(cascades):
        c.expect(trees, f"trees in cascade {k}")
        block = c.take(trees * tree_len, f"cascade {k}").reshape(trees, tree_len)
        if np.any(block[:, 0] != splits) or np.any(block[:, 1 + 4 * splits] != leaves):
            raise DlibFormatError(f"{name}: cascade {k} has trees of different sizes")
        split_part = block[:, 1 : 1 + 4 * splits].reshape(trees, splits, 4)
        idx1[k], idx2[k] = split_part[..., 0], split_part[..., 1]
        thresh[k] = _floats(split_part[..., 2], split_part[..., 3], name)
        leaf_part = block[:, 2 + 4 * splits :].reshape(trees, leaves, 2 + 2 * parts2)
        if np.any(leaf_part[..., 0] != -parts2) or np.any(leaf_part[..., 1] != -1):
            raise DlibFormatError(f"{name}: cascade {k} has a leaf vector of the wrong size")
        flat = leaf_part[..., 2:].reshape(trees, leaves, parts2, 2)
        leaf_values[k] = _floats(flat[..., 0], flat[..., 1], name)

    c.expect(cascades, "number of anchor_idx vectors")
    num_pixels = c.integer("feature pixels in cascade 0")
    c.pos -= 1
    anchors = np.empty((cascades, num_pixels), dtype=np.int64)
    for k in range(cascades):
        c.expect(num_pixels, f"feature pixels in cascade {k}")
        anchors[k] = c.take(num_pixels, f"anchor_idx of cascade {k}")
    c.expect(cascades, "number of delta vectors")
    deltas = np.empty((cascades, num_pixels, 2), dtype=np.float32)
    for k in range(cascades):
        c.expect(num_pixels, f"deltas in cascade {k}")
        deltas[k] = c.float_block(2 * num_pixels, f"deltas of cascade {k}").reshape(num_pixels, 2)
    if c.pos != len(c.t):
        raise DlibFormatError(f"{name}: {len(c.t) - c.pos} unread integers after the last record")

    num_parts = parts2 // 2
    if np.any((idx1 < 0) | (idx1 >= num_pixels) | (idx2 < 0) | (idx2 >= num_pixels)):
        raise DlibFormatError(f"{name}: split feature index out of range")
    if np.any((anchors < 0) | (anchors >= num_parts)):
        raise DlibFormatError(f"{name}: anchor index out of range")
    return {
        "initial_shape": initial_shape.reshape(num_parts, 2),
        "split_idx1": idx1.astype(np.int16),
        "split_idx2": idx2.astype(np.int16),
        "split_thresh": thresh,
        "leaf_values": leaf_values.reshape(cascades, trees, leaves, num_parts, 2),
        "anchor_idx": anchors.astype(np.int8),
        "deltas": deltas,
    }


def convert_shape_predictor(dat_path: Path, out_path: Path) -> dict[str, Any]:
    """Read dlib's shape_predictor ``dat_path``, write ``out_path`` (.npz), return manifest facts."""
    arrays = read_shape_predictor(Path(dat_path).read_bytes(), Path(dat_path).name)
    with open(out_path, "wb") as fh:  # a file object keeps numpy from appending ".npz"
        np.savez_compressed(fh, allow_pickle=False, **arrays)
    cascades, trees, splits = arrays["split_thresh"].shape
    num_parts = int(arrays["initial_shape"].shape[0])
    if num_parts not in PART_ORDER:
        raise DlibFormatError(f"{dat_path}: {num_parts} landmarks; expected one of {sorted(PART_ORDER)}")
    return {
        "num_parts": num_parts,
        "cascades": int(cascades),
        "trees_per_cascade": int(trees),
        "tree_depth": int(splits + 1).bit_length() - 1,
        "feature_pixels": int(arrays["deltas"].shape[1]),
        "part_order": PART_ORDER[num_parts],
    }
