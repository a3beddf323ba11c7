"""Topic names and subscription patterns: pure checks and matching.

A topic is dot-separated segments of letters, digits, `_` and `-`
(`orders.created`, `billing.eu.invoice-paid`). A subscription pattern may
use two wildcards, with the semantics of NATS subjects (so a JetStream
broker can take the same patterns as they are):

- `*` matches exactly one segment: `orders.*` matches `orders.created`,
  not `orders` nor `orders.eu.created`.
- `>` matches one or more trailing segments, and only as the last segment:
  `orders.>` matches `orders.created` and `orders.eu.created`, not `orders`.

Topics under `faas.` are the platform's own (cron firings arrive as
`faas.cron`): nobody publishes to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_TOPIC_LENGTH = 255
RESERVED_PREFIX = "faas"
CRON_TOPIC = "faas.cron"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be published to, or None when it can."""
    if not topic or len(topic) > MAX_TOPIC_LENGTH:
        return f"expected a topic of 1 to {MAX_TOPIC_LENGTH} characters"
    for segment in topic.split("."):
        if not _SEGMENT.fullmatch(segment):
            return (
                "expected dot-separated segments of letters, digits, '_' and '-' "
                f"(like orders.created), got {topic!r}"
            )
    if topic.split(".")[0] == RESERVED_PREFIX:
        return f"topics under '{RESERVED_PREFIX}.' are reserved for the platform"
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be subscribed to, or None when it can."""
    if not pattern or len(pattern) > MAX_TOPIC_LENGTH:
        return f"expected a topic pattern of 1 to {MAX_TOPIC_LENGTH} characters"
    segments = pattern.split(".")
    for index, segment in enumerate(segments):
        if segment == ">" and index < len(segments) - 1:
            return f"'>' matches the rest of a topic, so it must be the last segment: {pattern!r}"
        if segment not in ("*", ">") and not _SEGMENT.fullmatch(segment):
            return (
                "expected dot-separated segments of letters, digits, '_' and '-', or the "
                f"wildcards '*' (one segment) and '>' (the rest), got {pattern!r}"
            )
    if segments[0] == RESERVED_PREFIX:
        return f"topics under '{RESERVED_PREFIX}.' are reserved for the platform"
    return None


def matches(pattern: str, topic: str) -> bool:
    """Whether a valid `pattern` matches a valid `topic`."""
    wanted, given = pattern.split("."), topic.split(".")
    for index, segment in enumerate(wanted):
        if segment == ">":
            return len(given) > index
        if index >= len(given) or (segment != "*" and segment != given[index]):
            return False
    return len(given) == len(wanted)


def subscribers(topic: str, subscriptions: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """The functions, in the order given, with a pattern matching `topic` (each once)."""
    return [
        function
        for function, patterns in subscriptions
        if any(matches(pattern, topic) for pattern in patterns)
    ]
