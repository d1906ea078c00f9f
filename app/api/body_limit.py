"""The request body, counted and (for signed requests) hashed as it streams in, in one pass.

- A total size cap for every request, chunked ones included: the Content-Length check in
  app/main.py cannot see a body sent without that header, and the multipart parser would spool
  all of it to disk before any endpoint's per-image limit ran.
- The SHA-256 of the raw body for requests that carry X-FaceGate-Signature: computed on the
  chunks as the form parser reads them, so the body is read once and never held twice in memory;
  the signature check (app/api/signing.py) runs after the form is parsed, when the digest is
  complete.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.services.signing import SIGNATURE_HEADER

BODY_DIGEST_STATE = "body_sha256"


class BodyDigest:
    """SHA-256 of a body as it streams; ``hexdigest`` is None until the last chunk arrived."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.hexdigest: str | None = None

    def update(self, chunk: bytes, more: bool) -> None:
        if self.hexdigest is not None:
            return
        self._hash.update(chunk)
        if not more:
            self.hexdigest = self._hash.hexdigest()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        digest = BodyDigest() if SIGNATURE_HEADER.lower() in Headers(scope=scope) else None
        scope.setdefault("state", {})[BODY_DIGEST_STATE] = digest
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body:
                    # FastAPI re-raises an HTTPException from the body read: the JSON error handler
                    # answers 413 payload_too_large.
                    raise HTTPException(413, f"the request body is over {self.max_body} bytes")
                if digest is not None:
                    digest.update(chunk, bool(message.get("more_body", False)))
            return message

        await self.app(scope, counted, send)
