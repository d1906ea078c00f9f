"""The 1:K gallery: a FAISS index derived from SQL, and the match decision.

Knows nothing of HTTP, SQL or images: arrays in, per-person hits and decisions out.
"""

from app.gallery.index import FaceIndex, IndexKind
from app.gallery.matching import (
    Decision,
    FrameMatch,
    FrameOutcome,
    PersonHit,
    Reason,
    decide_claim,
    decide_frame,
    fuse_burst,
    fuse_frames,
)

__all__ = [
    "Decision",
    "FaceIndex",
    "FrameMatch",
    "FrameOutcome",
    "IndexKind",
    "PersonHit",
    "Reason",
    "decide_claim",
    "decide_frame",
    "fuse_burst",
    "fuse_frames",
]
