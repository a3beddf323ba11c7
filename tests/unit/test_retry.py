from __future__ import annotations

import email.utils

import pytest

from runtime.events.retry import Verdict, backoff, decide, parse_retry_after
from runtime.spec import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, backoff=1.0, max_backoff=10.0)


@pytest.mark.parametrize(
    ("status", "attempt", "verdict", "delay", "reason"),
    [
        (200, 1, Verdict.DONE, 0.0, ""),
        (204, 4, Verdict.DONE, 0.0, ""),
        (302, 1, Verdict.DONE, 0.0, ""),
        (500, 1, Verdict.RETRY, 1.0, "backoff"),
        (503, 2, Verdict.RETRY, 2.0, "backoff"),
        (504, 3, Verdict.RETRY, 4.0, "backoff"),
        (500, 4, Verdict.DEAD, 0.0, "attempt 4 of 4"),
        (429, 1, Verdict.RETRY, 1.0, "backoff"),
        (408, 1, Verdict.RETRY, 1.0, "backoff"),
        (502, 1, Verdict.RETRY, 1.0, "backoff"),
        (400, 1, Verdict.DEAD, 0.0, "not retried"),
        (404, 1, Verdict.DEAD, 0.0, "not retried"),
        (422, 2, Verdict.DEAD, 0.0, "not retried"),
        (501, 1, Verdict.DEAD, 0.0, "not retried"),
    ],
)
def test_decisions(status: int, attempt: int, verdict: Verdict, delay: float, reason: str) -> None:
    # jitter 1.0 (its top) leaves the exponential delay itself
    decision = decide(status, attempt, POLICY, jitter=1.0)
    assert decision.verdict is verdict
    assert decision.delay == pytest.approx(delay)
    assert reason in decision.reason


def test_retry_on_is_configurable() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(409,))
    assert decide(409, 1, policy).verdict is Verdict.RETRY
    assert decide(500, 1, policy).verdict is Verdict.DEAD


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(3.0, 3.0), (0.0, 0.0), (3600.0, 10.0), (-5.0, 0.0)],  # capped at max_backoff
)
def test_retry_after_replaces_the_backoff(retry_after: float, delay: float) -> None:
    decision = decide(503, 1, POLICY, retry_after=retry_after, jitter=0.0)
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == delay
    assert "Retry-After" in decision.reason


def test_retry_after_does_not_extend_attempts() -> None:
    assert decide(503, 4, POLICY, retry_after=1.0).verdict is Verdict.DEAD


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 0.5, 1.5),
        (3, 1.0, 4.0),
        (4, 1.0, 8.0),
        (5, 1.0, 10.0),  # capped
        (50, 0.0, 5.0),  # capped, then the lower half of the jitter
        (10_000, 1.0, 10.0),  # no overflow
    ],
)
def test_backoff_grows_with_jitter_in_the_upper_half(
    attempt: int, jitter: float, expected: float
) -> None:
    assert backoff(attempt, 1.0, 10.0, jitter) == pytest.approx(expected)


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-1", now) is None
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now) == 0.0
