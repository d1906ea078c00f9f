"""Badge swipes for claim doors: one line per swipe, from standard input or a file a reader writes.

A badge reader (or a test) writes one badge number per line. Each swipe is used by the next burst
only, and only while it is fresh (``claim_ttl_s``): a badge shown a minute ago must not ride along
with whoever comes to the door next.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

MAX_CLAIM_LEN = 200  # the service's limit for the claim form field


class ClaimSourceError(ValueError):
    """A --claim-from that is neither 'stdin' nor a readable file."""


class ClaimFeed:
    """Swipes in arrival order; :meth:`take` hands out the oldest fresh one and drops stale ones."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._swipes: deque[tuple[str, float]] = deque()
        self._lock = threading.Lock()

    def push(self, line: str) -> None:
        claim = line.strip()
        if not claim:
            return
        with self._lock:
            self._swipes.append((claim[:MAX_CLAIM_LEN], self.clock()))

    def take(self) -> str | None:
        now = self.clock()
        with self._lock:
            while self._swipes:
                claim, at = self._swipes.popleft()
                if now - at <= self.ttl_s:
                    return claim
        return None

    def follow(self, stream: TextIO) -> threading.Thread:
        """Read ``stream`` line by line in a daemon thread until it ends (a reader on stdin)."""

        def pump() -> None:
            for line in stream:
                self.push(line)

        thread = threading.Thread(target=pump, name="claim-feed", daemon=True)
        thread.start()
        return thread


class FileClaims(ClaimFeed):
    """Swipes from a file a badge reader appends to; lines already there count as swipes made now."""

    def __init__(self, path: Path, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl_s, clock)
        self.path = path
        self._offset = 0
        self.poll()

    def poll(self) -> None:
        """Take the lines appended since the last poll (a partial last line waits for its newline)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError as exc:
            raise ClaimSourceError(f"claim file {self.path}: {exc}") from exc
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in data[: end + 1].decode("utf-8", errors="replace").splitlines():
            self.push(line)

    def take(self) -> str | None:
        self.poll()
        return super().take()


def open_claims(spec: str, ttl_s: float) -> ClaimFeed:
    """``stdin`` (a reader piped in) or the path of a file a reader appends to."""
    if spec == "stdin":
        feed = ClaimFeed(ttl_s)
        feed.follow(sys.stdin)
        return feed
    path = Path(spec.removeprefix("file:"))
    if not path.is_file():
        raise ClaimSourceError(f"--claim-from {spec!r}: give 'stdin' or an existing file")
    return FileClaims(path, ttl_s)
