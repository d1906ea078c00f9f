"""Decoding uploads: every refusal has a stable code and a message a person can act on."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from app.vision.imageio import ImageError, decode_image, image_size_from_header


def _encode(ext: str, image: NDArray[np.generic]) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_jpeg_png_grey_alpha_and_16_bit(astronaut: NDArray[np.uint8]) -> None:
    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    assert decode_image(_encode(".png", bgr)).tolist() == bgr.tolist()
    assert decode_image(_encode(".jpg", bgr)).shape == (512, 512, 3)
    grey = decode_image(_encode(".png", bgr[:, :, 0]))
    assert grey.shape == (512, 512, 3) and (grey[:, :, 0] == bgr[:, :, 0]).all()
    rgba = decode_image(_encode(".png", np.dstack([bgr, np.full((512, 512), 7, np.uint8)])))
    assert rgba.tolist() == bgr.tolist()
    deep = decode_image(_encode(".png", bgr.astype(np.uint16) * 257))
    assert deep.dtype == np.uint8 and deep.tolist() == bgr.tolist()


@pytest.mark.parametrize("blob", [b"", b"hello world", b"%PDF-1.4 " * 50, bytes(range(256)) * 4])
def test_not_an_image(blob: bytes) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(blob)
    assert info.value.code == "not_an_image"


def test_truncated_jpeg(astronaut: NDArray[np.uint8]) -> None:
    data = _encode(".jpg", astronaut)
    with pytest.raises(ImageError, match="truncated") as info:
        decode_image(data[: len(data) // 2])
    assert info.value.code == "not_an_image"


def test_header_bomb_is_refused_before_decoding() -> None:
    # A tiny PNG whose header claims 100000 x 100000 pixels.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    assert image_size_from_header(png) == (100_000, 100_000)
    with pytest.raises(ImageError, match="100000x100000") as info:
        decode_image(png, max_pixels=40_000_000)
    assert info.value.code == "image_too_large"


def test_pixel_limit_applies_to_jpeg(astronaut: NDArray[np.uint8]) -> None:
    data = _encode(".jpg", astronaut)
    assert image_size_from_header(data) == (512, 512)
    with pytest.raises(ImageError) as info:
        decode_image(data, max_pixels=512 * 511)
    assert info.value.code == "image_too_large"
