"""W3C Trace Context: every call carries a `traceparent` to its function.

An incoming valid `traceparent` keeps its trace id and flags, and the gateway,
being a hop of its own, gives it a new parent (span) id; a missing or invalid
one is replaced by a new trace. Handlers read it from `event.headers`.
"""

from __future__ import annotations

import random
import re

from runtime.invocation import RawHeaders

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
HEADER = b"traceparent"
_random = random.Random()
"""Trace and span ids need to be unique, not secret: no system call per request for them."""


def propagate(headers: RawHeaders) -> tuple[RawHeaders, str]:
    """The headers with a `traceparent` for the next hop, and the trace id."""
    incoming = next((value for key, value in headers if key == HEADER), None)
    match = _TRACEPARENT.fullmatch(incoming.strip().lower()) if incoming else None
    version, trace_id, flags = b"00", b"", b"01"
    if match and match.group(1) != b"ff" and set(match.group(2)) != {ord("0")}:
        version, trace_id, _, flags = match.groups()
    if not trace_id:
        trace_id = b"%032x" % _random.getrandbits(128)
    value = b"-".join((version, trace_id, b"%016x" % _random.getrandbits(64), flags))
    kept = [(key, v) for key, v in headers if key != HEADER]  # tracestate passes untouched
    return [*kept, (HEADER, value)], trace_id.decode()
