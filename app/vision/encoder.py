"""The 128-d face encoder (dlib ResNet v1 converted to ONNX) over aligned 150x150 RGB chips."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from app.vision.manifest import ModelArtifactError


class OrtSession(Protocol):
    """What we use of onnxruntime.InferenceSession (lets tests fake the runtime at its edge)."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...

    def get_inputs(self) -> list[Any]: ...

    def get_outputs(self) -> list[Any]: ...


class FaceEncoder:
    def __init__(self, session: OrtSession, details: dict[str, Any], max_batch: int = 32) -> None:
        inp, out = details["input"], details["output"]
        size = tuple(inp["size"])
        ins, outs = session.get_inputs(), session.get_outputs()
        # The manifest says what the graph takes; refuse a session that disagrees.
        if (
            len(ins) != 1
            or ins[0].name != inp["name"]
            or ins[0].type != "tensor(uint8)"
            or list(ins[0].shape[1:]) != [*size, 3]
            or outs[0].name != out["name"]
            or outs[0].shape[-1] != out["size"]
        ):
            raise ModelArtifactError(
                f"encoder graph does not match its manifest entry (input {inp['name']} uint8 {size}x3, "
                f"output {out['name']}[{out['size']}]); run `facegate models build --force`"
            )
        self._session = session
        self._input = str(inp["name"])
        self._output = str(out["name"])
        self.chip_size = int(size[0])
        self.dim = int(out["size"])
        self.max_batch = max_batch

    def encode(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Chips [N, size, size, 3] uint8 RGB -> embeddings [N, dim] float32, in batches."""
        if (
            chips.ndim != 4
            or chips.shape[1:] != (self.chip_size, self.chip_size, 3)
            or chips.dtype != np.uint8
        ):
            raise ValueError(f"expected uint8 chips of shape [N, {self.chip_size}, {self.chip_size}, 3]")
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._session.run(
                [self._output], {self._input: np.ascontiguousarray(chips[i : i + self.max_batch])}
            )[0]
            for i in range(0, len(chips), self.max_batch)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def warm_up(self) -> None:
        self.encode(np.zeros((1, self.chip_size, self.chip_size, 3), dtype=np.uint8))
