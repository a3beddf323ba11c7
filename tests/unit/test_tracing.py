from __future__ import annotations

import re

import pytest

from gateway.tracing import propagate

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def value(headers: list[tuple[bytes, bytes]]) -> bytes:
    (found,) = [v for k, v in headers if k == b"traceparent"]
    return found


def test_incoming_trace_is_continued_with_a_new_span() -> None:
    headers, trace_id = propagate([(b"traceparent", VALID), (b"tracestate", b"x=1")])
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    version, trace, span, flags = value(headers).split(b"-")
    assert (version, trace, flags) == (b"00", trace_id.encode(), b"01")
    assert span != b"00f067aa0ba902b7" and len(span) == 16
    assert (b"tracestate", b"x=1") in headers


@pytest.mark.parametrize(
    "incoming",
    [None, b"garbage", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", b"ff" + VALID[2:]],
)
def test_missing_or_invalid_trace_starts_a_new_one(incoming: bytes | None) -> None:
    headers = [(b"traceparent", incoming)] if incoming else []
    out, trace_id = propagate(headers)
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", value(out))
    assert trace_id.encode() in value(out)
    assert len([k for k, _ in out if k == b"traceparent"]) == 1
