"""Pictures for pages: an enrolment photo scaled down for a list or a detail page."""

from __future__ import annotations

import cv2
import numpy as np

# Longest side of a face picture in the console (CSS shows them at most 160 px wide).
PREVIEW_PX = 320


def downscale_jpeg(data: bytes, longest: int) -> bytes | None:
    """The image re-encoded as a JPEG whose longest side is at most ``longest`` pixels; None when
    it cannot be decoded. Decoding is bounded by the enrolment limits the photo already passed."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale < 1:
        image = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None
