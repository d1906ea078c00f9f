"""Reading uploaded images and running inference on them, with errors mapped to HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import UploadFile

from app.api.errors import ApiError
from app.services.container import BusyError, Services
from app.vision.imageio import ImageError

T = TypeVar("T")


async def read_upload(upload: UploadFile, max_bytes: int, field: str) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(
            413,
            "image_too_large",
            f"{field}{f' ({upload.filename})' if upload.filename else ''} is over the {max_bytes}-byte limit",
        )
    if not data:
        raise ApiError(422, "not_an_image", f"{field} is empty")
    return data


async def run_inference(services: Services, fn: Callable[..., T], *args: object) -> T:
    try:
        return await services.infer(fn, *args)
    except ImageError as exc:
        status = 413 if exc.code == "image_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from exc
    except BusyError as exc:
        raise ApiError(
            503, "busy", "too many requests are waiting for face inference; retry shortly"
        ) from exc
