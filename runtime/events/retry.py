"""What happens after a delivery attempt: done, retried later, or dead-lettered.

Pure: the attempt's status, the policy, the function's `Retry-After` and a
random jitter fraction go in, a decision comes out.

- 2xx and 3xx: done.
- A status in `retry.retry_on` (by default 408, 429, 500, 502, 503, 504;
  a timeout counts as 504, an unreachable replica as 502) with attempts
  left: retried after a backoff. Otherwise: dead-lettered, to be replayed
  once the cause is fixed (`faas dlq replay`).
- Backoff: `backoff * 2^(attempt-1)` capped at `max_backoff`, then scaled
  by a jitter into its upper half, so retries of a burst spread out while
  still growing. With backoff 1s, max 5m: ~1s, ~2s, ~4s, ... 5m.
- A `Retry-After` from the function replaces the backoff (capped at
  `max_backoff` too, so a function cannot park work for a day).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from enum import StrEnum

from runtime.spec import RetryPolicy


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0
    """Seconds until the next attempt (RETRY only)."""
    reason: str = ""


def succeeded(status: int) -> bool:
    return 200 <= status < 400


def backoff(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); `jitter` in [0, 1)."""
    exponent = min(attempt - 1, 62)  # 2**62 seconds is past any cap
    delay = min(cap, base * 2.0**exponent)
    return delay * (0.5 + jitter / 2)


def decide(
    status: int,
    attempt: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    jitter: float = 0.0,
) -> Decision:
    if succeeded(status):
        return Decision(Verdict.DONE)
    if status not in policy.retry_on:
        return Decision(Verdict.DEAD, reason=f"status {status} is not retried (retry.retry_on)")
    if attempt >= policy.max_attempts:
        return Decision(
            Verdict.DEAD,
            reason=f"status {status} on attempt {attempt} of {policy.max_attempts} "
            "(retry.max_attempts)",
        )
    if retry_after is not None:
        delay = min(max(retry_after, 0.0), policy.max_backoff)
        return Decision(Verdict.RETRY, delay, f"status {status}, Retry-After {retry_after:g}s")
    delay = backoff(attempt, policy.backoff, policy.max_backoff, jitter)
    return Decision(Verdict.RETRY, delay, f"status {status}, backoff {delay:.3g}s")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
