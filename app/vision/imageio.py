"""Decode uploaded bytes into an OpenCV BGR image, refusing what is not a sane image.

The header is read before decoding so a small file that claims a gigantic image (a
decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from numpy.typing import NDArray


class ImageError(ValueError):
    """An input image we refuse; ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, or None for other formats."""
    return _png_size(data) or _jpeg_size(data)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = 40_000_000,
    apply_exif_orientation: bool = False,
) -> NDArray[np.uint8]:
    """Bytes -> HxWx3 uint8 BGR. Alpha is dropped, grey becomes 3 channels, 16-bit becomes 8-bit.

    EXIF orientation is ignored by default so pixel coordinates match dlib's loaders.
    """
    if not data:
        raise ImageError("not_an_image", "the upload is empty")
    size = image_size_from_header(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(
            "image_too_large",
            f"the image is {size[0]}x{size[1]} pixels; the limit is {max_pixels} pixels",
        )
    # libjpeg decodes a truncated JPEG into a half-grey picture with only a warning.
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < 4:
        raise ImageError("not_an_image", "the JPEG is truncated (no end-of-image marker)")
    flags = cv2.IMREAD_COLOR if apply_exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ImageError("not_an_image", "the file is not a readable JPEG, PNG, BMP, WebP or TIFF image")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(
            "image_too_large",
            f"the image is {image.shape[1]}x{image.shape[0]} pixels; the limit is {max_pixels} pixels",
        )
    return np.ascontiguousarray(image, dtype=np.uint8)
