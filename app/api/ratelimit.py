"""Per-key rate limits: a token bucket per API key, in this process.

Each replica keeps its own buckets (no shared state, no SQL on the request path), so with R
replicas behind a balancer a key may make up to R times its rate in all; size the rates for one
replica's share. A key past its rate gets 429 ``rate_limited`` with Retry-After (seconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.api.errors import ApiError, error_body
from app.settings import Settings


class RateLimitedError(ApiError):
    def __init__(self, role: str, rate: float, retry_after_s: float) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"this key made more than its {rate:g} requests per second ({role} keys); retry after "
            f"{retry_after_s:.1f} s",
        )
        self.retry_after_s = retry_after_s


class TokenBuckets:
    """One bucket per key id: ``burst`` tokens, refilled at ``rate`` per second (0: no limit)."""

    def __init__(
        self,
        rates: dict[str, float],
        bursts: dict[str, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = dict(rates)
        self.bursts = dict(bursts)
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key_id: int, role: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        rate = self.rates.get(role, 0.0)
        if rate <= 0.0:
            return 0.0
        burst = float(self.bursts.get(role, 1))
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / rate

    def check(self, key_id: int, role: str) -> None:
        wait = self.take(key_id, role)
        if wait > 0.0:
            raise RateLimitedError(role, self.rates[role], wait)


def check_rate(request: Request, key_id: int, role: str) -> None:
    """Raise RateLimitedError when the key is over its rate (no-op for an app without buckets)."""
    buckets: TokenBuckets | None = getattr(request.app.state, "rate_limits", None)
    if buckets is not None:
        buckets.check(key_id, role)


def install_rate_limits(app: FastAPI, settings: Settings) -> None:
    rates: dict[str, float] = {str(role): rate for role, rate in settings.rate_limit_per_s.items()}
    bursts: dict[str, int] = {str(role): size for role, size in settings.rate_limit_burst.items()}
    app.state.rate_limits = TokenBuckets(rates, bursts)

    async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RateLimitedError):  # registered for RateLimitedError only
            raise exc
        return JSONResponse(
            error_body(exc.code, exc.message, request),
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
        )

    app.add_exception_handler(RateLimitedError, _rate_limited)
