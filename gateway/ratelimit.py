"""Per-caller rate limits: a token bucket per identity, refilled continuously.

`requests` per `per` seconds, with bursts up to `requests`. `RateLimiter` is
pure apart from the clock, which callers pass in; `check_rate` is how every
route applies it, so a limited caller gets the same 429 wherever it calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.auth import Caller, Denied
from runtime.spec import RateLimit

MAX_TRACKED = 100_000
"""Identities remembered at most; the idlest are forgotten first (they are full anyway)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, limit: RateLimit) -> None:
        self._capacity = float(limit.requests)
        self._refill = limit.requests / limit.per
        self._buckets: dict[str, _Bucket] = {}

    def take(self, identity: str, now: float) -> float:
        """0 when the call may go ahead, else the seconds until it could."""
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[identity] = _Bucket(self._capacity, now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._refill)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._refill

    def _forget_full(self, now: float) -> None:
        full_after = self._capacity / self._refill
        for identity in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[identity]
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets.clear()


def check_rate(limiter: RateLimiter | None, caller: Caller) -> None:
    """Raises a 429 `Denied` with `Retry-After` (whole seconds) when `caller` is over its limit."""
    if limiter is None or not caller.rate_limited:
        return
    wait = limiter.take(caller.identity, time.monotonic())
    if wait > 0:
        raise Denied(
            429, "rate limit exceeded; retry later", {"retry-after": str(max(1, round(wait)))}
        )
