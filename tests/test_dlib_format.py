"""The dlib serialization reader on hand-made bytes and on the real files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from models.dlib_dnn import read_dnn
from models.dlib_format import DlibFormatError, DlibReader


def enc_int(v: int) -> bytes:
    mag = abs(v)
    body = mag.to_bytes(max(1, (mag.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def test_integers_zero_negative_and_multibyte() -> None:
    r = DlibReader(b"\x01\x00" + enc_int(-10) + enc_int(150) + enc_int(70000) + enc_int(-(2**40)))
    assert [r.int() for _ in range(5)] == [0, -10, 150, 70000, -(2**40)]
    r.expect_end()


def test_float_is_mantissa_times_two_to_exponent() -> None:
    # 0.04 as dlib writes it in the encoder's loss record: mantissa 0xa3d70a, exponent -28.
    r = DlibReader(enc_int(0xA3D70A) + enc_int(-28) + enc_int(-3) + enc_int(1))
    assert r.float() == pytest.approx(0.04, rel=1e-7)
    assert r.float() == -6.0


def test_string_bool_tensor() -> None:
    data = np.arange(6, dtype="<f4")
    blob = enc_int(5) + b"con_4" + b"1" + b"0" + enc_int(2) + b"".join(enc_int(v) for v in (1, 2, 3, 1))
    r = DlibReader(blob + data.tobytes())
    assert r.string() == "con_4"
    assert r.bool() is True and r.bool() is False
    t = r.tensor()
    assert t.shape == (1, 2, 3, 1) and t.ravel().tolist() == data.tolist()
    r.expect_end()


@pytest.mark.parametrize(
    ("blob", "method", "message"),
    [
        (b"", "int", "end of file"),
        (b"\x02\x01", "int", "inside an integer"),
        (b"\x31\x01", "int", "control byte"),
        (enc_int(10) + b"abc", "string", "string length"),
        (b"x", "bool", "bool"),
        (
            enc_int(2) + b"".join(enc_int(v) for v in (1, 1, 1, 100)) + struct.pack("<f", 1.0),
            "tensor",
            "past the end",
        ),
        (enc_int(3), "tensor", "tensor version"),
    ],
)
def test_malformed_input_fails_with_name_and_position(blob: bytes, method: str, message: str) -> None:
    r = DlibReader(blob, name="bad.dat")
    with pytest.raises(DlibFormatError, match=message) as info:
        getattr(r, method)()
    assert "bad.dat" in str(info.value) and "at byte" in str(info.value)


def test_unread_bytes_are_an_error() -> None:
    r = DlibReader(b"\x01\x00\x00", name="x.dat")
    r.int()
    with pytest.raises(DlibFormatError, match="1 unread bytes"):
        r.expect_end()


def test_truncated_real_file_is_refused(dlib_source: Path, tmp_path: Path) -> None:
    data = (dlib_source / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(DlibFormatError):
        read_dnn(cut)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x01\x00")
    with pytest.raises(DlibFormatError, match="unread bytes"):
        read_dnn(extra)
