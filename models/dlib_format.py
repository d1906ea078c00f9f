"""Reader for dlib's binary serialization format (dlib/serialize.h).

Only what the three face models need: integers, strings, bools, floats stored as
(mantissa, exponent), tensors, matrices and vectors. Every reader checks what it reads
so a truncated or foreign file fails with a message instead of yielding garbage.
"""

from __future__ import annotations

import builtins

import numpy as np
from numpy.typing import NDArray


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization where we expected them to."""


class DlibReader:
    """Sequential cursor over a dlib-serialized byte string."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = data
        self.name = name
        self.pos = 0

    # -- primitives -----------------------------------------------------------------
    def _fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos}")

    def int(self) -> builtins.int:
        """One integer: a control byte (low 4 bits = byte count, 0x80 = negative), LE bytes."""
        if self.pos >= len(self.data):
            raise self._fail("unexpected end of file reading an integer")
        control = self.data[self.pos]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self._fail(f"bad integer control byte 0x{control:02x}")
        start = self.pos + 1
        end = start + size
        if end > len(self.data):
            raise self._fail("unexpected end of file inside an integer")
        value = int.from_bytes(self.data[start:end], "little")
        self.pos = end
        return -value if control & 0x80 else value

    def peek_int(self) -> builtins.int:
        saved = self.pos
        try:
            return self.int()
        finally:
            self.pos = saved

    def string(self) -> str:
        length = self.int()
        if length < 0 or self.pos + length > len(self.data):
            raise self._fail(f"bad string length {length}")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self._fail("string is not ASCII") from exc

    def expect_string(self, expected: str) -> None:
        start = self.pos
        got = self.string()
        if got != expected:
            self.pos = start
            raise self._fail(f"expected record {expected!r}, found {got!r}")

    def peek_string_is(self, expected: str) -> builtins.bool:
        """True when the next item is the string ``expected`` (cursor unchanged)."""
        saved = self.pos
        try:
            length = self.int()
            return length == len(expected) and self.data[self.pos : self.pos + length] == expected.encode()
        except DlibFormatError:
            return False
        finally:
            self.pos = saved

    def bool(self) -> builtins.bool:
        if self.pos >= len(self.data):
            raise self._fail("unexpected end of file reading a bool")
        byte = self.data[self.pos : self.pos + 1]
        if byte not in (b"0", b"1"):
            raise self._fail(f"bad bool byte {byte!r}")
        self.pos += 1
        return byte == b"1"

    def float(self) -> builtins.float:
        """dlib float_details: int64 mantissa and int16 exponent; value = m * 2**e."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32767:  # dlib encodes inf/nan with special exponents
            raise self._fail("non-finite float")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def floats(self, count: builtins.int) -> NDArray[np.float32]:
        return np.array([self.float() for _ in range(count)], dtype=np.float32)

    def tensor(self) -> NDArray[np.float32]:
        """A resizable_tensor: version 2, n, k, nr, nc, then raw little-endian float32."""
        version = self.int()
        if version != 2:
            raise self._fail(f"expected tensor version 2, found {version}")
        n, k, nr, nc = (self.int() for _ in range(4))
        count = n * k * nr * nc
        nbytes = count * 4
        if count < 0 or self.pos + nbytes > len(self.data):
            raise self._fail(f"tensor of shape {(n, k, nr, nc)} runs past the end of the file")
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += nbytes
        return arr.reshape(n, k, nr, nc).astype(np.float32)

    def alias_tensor(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:
        version = self.int()
        if version != 1:
            raise self._fail(f"expected alias_tensor version 1, found {version}")
        n, k, nr, nc = (self.int() for _ in range(4))
        return (n, k, nr, nc)

    def matrix_f32(self) -> NDArray[np.float32]:
        """A dlib::matrix<float>: -rows, -cols, then row-major elements as floats."""
        rows = -self.int()
        cols = -self.int()
        if rows < 0 or cols < 0:
            raise self._fail(f"bad matrix size {rows}x{cols}")
        return self.floats(rows * cols).reshape(rows, cols)

    def at_end(self) -> builtins.bool:
        return self.pos == len(self.data)

    def expect_end(self) -> None:
        if not self.at_end():
            raise self._fail(f"{len(self.data) - self.pos} unread bytes after the last record")
