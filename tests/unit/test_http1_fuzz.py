"""Differential fuzzing of the replica-answer parser against h11.

Whatever runtime/http1.py accepts as an answer must mean the same to h11: the
same status, headers and body, and nothing left over. The strategies build
answers the way a hostile function would: well-formed ones, then byte-level
mutations of them (framing headers, bodyless statuses, smuggled answers,
control bytes), delivered split at arbitrary points.
"""

from __future__ import annotations

import asyncio
import itertools

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_http1 import exchange

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
value = st.binary(max_size=16).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
status_codes = st.sampled_from([100, 101, 199, 200, 201, 204, 301, 304, 404, 500, 599, 600, 0])
bodies = st.binary(max_size=64)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    status = draw(status_codes)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    body = draw(bodies)
    headers = [(draw(token).encode(), draw(value)) for _ in range(draw(st.integers(0, 3)))]
    framing = draw(st.sampled_from(["length", "chunked", "none", "length+chunked", "wrong"]))
    if framing in ("length", "length+chunked"):
        headers.append((b"content-length", str(len(body)).encode()))
    if framing == "wrong":
        delta = draw(st.sampled_from([b"+", b" ", b"0", b"1_", b"-"]))
        headers.append((b"content-length", delta + str(len(body)).encode()))
    if framing in ("chunked", "length+chunked"):
        headers.append((b"transfer-encoding", b"chunked"))
        encoded = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]) if part
        )
        body = encoded + b"0\r\n\r\n"
    head = version + b" %03d OK\r\n" % status
    head += b"".join(name + b": " + val + b"\r\n" for name, val in headers)
    raw = head + b"\r\n" + body
    raw += draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nX"]))
    return raw


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(answers()))
    for _ in range(draw(st.integers(0, 3))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 43, 44, 48, 58, 95, 127, 255]))
        if kind == "flip":
            raw[at] = byte
        elif kind == "insert":
            raw.insert(at, byte)
        else:
            del raw[at]
    return bytes(raw)


def reference(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes, bytes] | None:
    """h11's reading of `raw` as the answer to a GET: status, headers, body, leftover."""
    client = h11.Connection(our_role=h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "r")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    status, headers, body = None, [], b""
    try:
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.InformationalResponse):
                return None
            if isinstance(event, h11.Response):
                status, headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert status is not None
                return status, headers, body, client.trailing_data[0]
    except h11.RemoteProtocolError:
        return None
    return None


def ours(raw: bytes, cuts: list[int]) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    pieces = [raw[a:b] for a, b in itertools.pairwise(points) if b > a]
    outcome = asyncio.run(exchange(pieces))
    if outcome.head is None or outcome.body is None or outcome.error is not None:
        return None
    if outcome.transport.aborted:
        return None
    return outcome.head[0], outcome.head[1], outcome.body


def same_meaning(raw: bytes, cuts: list[int]) -> None:
    accepted = ours(raw, cuts)
    if accepted is None:
        return
    expected = reference(raw)
    assert expected is not None, f"we accepted what h11 rejects: {raw!r}"
    status, headers, body, leftover = expected
    assert leftover == b"", f"we accepted an answer with bytes after it: {raw!r}"
    assert accepted[0] == status
    assert [(n.lower(), v) for n, v in accepted[1]] == [(n, v) for n, v in headers]
    assert accepted[2] == body
    assert 200 <= status <= 599


@FUZZ
@given(answers(), st.lists(st.integers(0, 10_000), max_size=4))
def test_accepted_answers_mean_the_same_to_h11(raw: bytes, cuts: list[int]) -> None:
    same_meaning(raw, cuts)


@FUZZ
@given(mutated(), st.lists(st.integers(0, 10_000), max_size=4))
def test_accepted_mutations_mean_the_same_to_h11(raw: bytes, cuts: list[int]) -> None:
    same_meaning(raw, cuts)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_or_mean_the_same(raw: bytes) -> None:
    same_meaning(raw, [])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(200, 599).filter(lambda s: s not in (204, 304)), bodies)
def test_well_formed_answers_are_accepted(status: int, body: bytes) -> None:
    """The converse on the answers the watchdog writes: nothing valid is refused."""
    raw = b"HTTP/1.1 %d X\r\ncontent-length: %d\r\ncontent-type: a/b\r\n\r\n" % (status, len(body))
    assert ours(raw + body, []) == (
        status,
        [(b"content-length", b"%d" % len(body)), (b"content-type", b"a/b")],
        body,
    )
