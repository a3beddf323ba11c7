"""Differential fuzzing of the watchdog's request parser against h11 and httptools.

The rule: every request that runtime/watchdog/protocol.py accepts means the same to both
references (method, target, version, headers with lower-cased names and stripped values,
body, keep-alive, `100 Continue`, and where each message ends in a pipelined stream);
everything else is refused with an error status (the connection then answers it and
closes). The strategies build requests at the byte level: well-formed ones with hostile
parts (framing headers, chunk lines, names, values, line endings, request lines), then
byte mutations of them, fed whole and split at arbitrary points.

Each message ours accepts is cut out of the stream at the offsets ours consumed and given
to a fresh reference parser, which must read exactly one message from exactly those
bytes. Three documented allowances: the watchdog does not require Host in HTTP/1.1 (h11
is then given one), it skips empty lines before a request line (RFC 9112 2.2, as
httptools does; they are stripped before h11 reads), and httptools only knows a fixed
list of methods (h11 alone judges the others, and upgrades). HTTP/1.0 keep-alive, which
h11 does not offer, is compared with httptools only.

`python tests/unit/test_watchdog_parser_fuzz.py BASELINE.py` times parsing a typical
gateway request with this protocol.py against BASELINE.py (e.g. `git show
REV:runtime/watchdog/protocol.py`), alternating in one run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import unquote

import h11
import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.watchdog import protocol
from runtime.watchdog.protocol import MAX_HEAD, Connection, HttpError, Request, RequestParser

MAX_BODY = 4096
T = TypeVar("T")

FUZZ = settings(
    max_examples=350,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- what a parser made of it


@dataclass(frozen=True)
class Message:
    """What a request means: the fields the watchdog hands to a handler."""

    method: str
    path: str
    query: str
    http11: bool
    headers: tuple[tuple[str, str], ...]  # sorted (lower-case name, values joined by ", ")
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Outcome:
    """Ours on a whole stream: messages with the offset each ends at, then an error or not."""

    messages: tuple[tuple[Message, int, bool], ...]  # (message, end offset, 100-continue)
    error: int | None  # the status refused with, or None when waiting for more bytes


def _joined(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    merged: dict[str, str] = {}
    for name, value in pairs:
        if name == "transfer-encoding":  # h11 lower-cases it; "Chunked" means "chunked"
            value = value.lower()
        merged[name] = value if name not in merged else f"{merged[name]}, {value}"
    return tuple(sorted(merged.items()))


def _ours_message(request: Request) -> Message:
    pairs = list(request.headers.items()) + list(request.faas.items())
    return Message(
        request.method,
        request.path,
        request.query_string,
        request.http11,
        _joined(pairs),
        request.body,
        request.keep_alive,
    )


def ours(data: bytes, cuts: list[int] | None = None) -> Outcome:
    """Feed `data` (in pieces at `cuts`) and take every request out after each piece."""
    parser = RequestParser(MAX_BODY)
    bounds = [0, *sorted(set(cuts or [])), len(data)]
    messages: list[tuple[Message, int, bool]] = []
    fed = 0
    for start, stop in itertools.pairwise(bounds):
        if start == stop:
            continue
        parser.feed(data[start:stop])
        fed = stop
        try:
            while (request := parser.next()) is not None:
                messages.append((_ours_message(request), fed - parser.buffered, False))
        except HttpError as exc:
            return Outcome(tuple(messages), exc.status)
    return Outcome(tuple(messages), None)


def ours_continue(segment: bytes) -> bool:
    """Whether ours asks for the body of this (accepted) message with `100 Continue`."""
    parser = RequestParser(MAX_BODY)
    parser.feed(segment[: segment.index(b"\r\n\r\n", _blank_prefix(segment)) + 4])
    parser.next()
    return parser.take_continue()


def has_body_phase(message: Message) -> bool:
    """Whether ours waits for a body after the head (chunked, or a length above 0)."""
    headers = dict(message.headers)
    return "transfer-encoding" in headers or int(headers.get("content-length", "0")) > 0


def _blank_prefix(data: bytes) -> int:
    at = 0
    while data[at : at + 2] == b"\r\n":
        at += 2
    return at


_RFC3986 = re.compile(r"(([^:/?#]+):)?(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?")


def target_meaning(target: bytes) -> tuple[str, str]:
    """(path, query) of a request target read independently: RFC 3986 appendix B."""
    text = target.decode("latin-1")
    if text == "*":
        return "*", ""
    if text.startswith("/"):  # origin-form
        path, _, query = text.partition("?")
    else:  # absolute-form
        match = _RFC3986.fullmatch(text)
        assert match is not None
        path, query = match[5] or "/", match[7] or ""
    return unquote(path), query


@dataclass(frozen=True)
class Reading:
    """A reference's reading of one segment: the message, or why it has none."""

    message: Message | None
    problem: str = ""
    expects_continue: bool | None = None
    keep_alive_known: bool = True


def h11_reading(segment: bytes) -> Reading:
    data = segment[_blank_prefix(segment) :]
    reading = _h11(data)
    if "Missing mandatory Host" in reading.problem:  # allowed: give h11 a Host to read
        eol = data.index(b"\r\n") + 2
        reading = _h11(data[:eol] + b"Host: added-for-h11\r\n" + data[eol:], added_host=True)
    return reading


def _h11(data: bytes, added_host: bool = False) -> Reading:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD * 2)
    conn.receive_data(data)
    request: Any = None
    body = b""
    expects_continue = None
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return Reading(None, "h11 wants more bytes than the segment holds")
            if isinstance(event, h11.Request):
                request = event
                expects_continue = conn.they_are_waiting_for_100_continue
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return Reading(None, f"h11 refused it: {exc}")
    leftover = conn.trailing_data[0]
    if leftover:
        return Reading(None, f"h11 ended the message {len(leftover)} bytes early")
    pairs = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
    if added_host:
        pairs = [(n, v) for n, v in pairs if n != "host"]
    path, query = target_meaning(request.target)
    state = conn.their_state
    return Reading(
        Message(
            request.method.decode("latin-1"),
            path,
            query,
            request.http_version == b"1.1",
            _joined(pairs),
            body,
            state is not h11.MUST_CLOSE,
        ),
        expects_continue=expects_continue,
        keep_alive_known=state in (h11.DONE, h11.MUST_CLOSE),
    )


class _Recorder:
    """httptools callbacks, collecting one message (and noticing a second one starting)."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.begun = 0
        self.completed = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.in_trailers = False
        self.method = b""
        self.version = ""
        self.keep_alive = False

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_trailers:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_trailers = True
        self.method = self.parser.get_method()
        self.version = self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.completed += 1
        self.keep_alive = self.parser.should_keep_alive()


def httptools_reading(segment: bytes) -> Reading | None:
    """None when httptools has no opinion: a method it does not know, or an upgrade."""
    recorder = _Recorder()
    parser = httptools.HttpRequestParser(recorder)
    recorder.parser = parser
    try:
        parser.feed_data(segment)
    except httptools.HttpParserInvalidMethodError:
        return None
    except httptools.HttpParserUpgrade:
        return None
    except httptools.HttpParserError as exc:
        return Reading(None, f"httptools refused it: {exc!r}")
    if recorder.completed != 1 or recorder.begun != 1:
        return Reading(None, f"httptools saw {recorder.begun} begun, {recorder.completed} done")
    if recorder.version not in ("1.0", "1.1"):
        return Reading(None, f"httptools read version {recorder.version}")
    pairs = [
        (n.decode("latin-1").lower(), v.decode("latin-1").strip(" \t")) for n, v in recorder.headers
    ]
    path, query = target_meaning(recorder.url)
    return Reading(
        Message(
            recorder.method.decode("latin-1"),
            path,
            query,
            recorder.version == "1.1",
            _joined(pairs),
            recorder.body,
            recorder.keep_alive,
        )
    )


def check_against_references(data: bytes) -> Outcome:
    """Every message ours accepts from `data` means the same to h11 and httptools."""
    outcome = ours(data)
    start = 0
    for message, end, _ in outcome.messages:
        segment = data[start:end]
        start = end
        reading = h11_reading(segment)
        assert reading.message is not None, (segment, reading.problem)
        expected = reading.message
        if message.http11:
            if reading.keep_alive_known:
                assert message == expected, segment
            else:
                assert message == _with_keep_alive(expected, message.keep_alive), segment
        else:  # h11 closes every HTTP/1.0 connection; httptools judges keep-alive below
            assert message == _with_keep_alive(expected, message.keep_alive), segment
        if has_body_phase(message):
            assert ours_continue(segment) == reading.expects_continue, segment
        other = httptools_reading(segment)
        if other is not None:
            assert other.message is not None, (segment, other.problem)
            if message.http11:
                assert message == other.message, segment
            else:  # ours may close where httptools keeps alive ("close, keep-alive"), not reverse
                assert message == _with_keep_alive(other.message, message.keep_alive), segment
                assert other.message.keep_alive or not message.keep_alive, segment
    return outcome


def _with_keep_alive(message: Message, keep_alive: bool) -> Message:
    return Message(
        message.method,
        message.path,
        message.query,
        message.http11,
        message.headers,
        message.body,
        keep_alive,
    )


# ---------------------------------------------------------------- strategies

# Each part of a request has well-formed choices and hostile ones; a request is well formed
# or goes wrong in one or two parts, so that both outcomes stay common.
METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"M-SEARCH"]
ODD_METHODS = [b"get", b"FOO", b"G\x00T", b"GE T", b"", b"G(T", b"\xc3\x89T", b"GET\t"]
TARGETS = [b"/", b"/echo", b"/a%20b/c?x=1&y=2", b"/a?b?c", b"//x/y", b"/%zz", b"*"]
TARGETS += [b"http://h/p?q=1", b"http://h", b"/p;x=1,y", b"/?", b"/a/../b"]
ODD_TARGETS = [b"/a#b", b"/\xff", b"/\x7f", b"/a b", b"", b"h:80", b"/\t", b"http://h#x/p"]
ODD_TARGETS += [b"1http://h/", b"a", b"/\x00"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]
ODD_VERSIONS = [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.10", b"HTTP/1.1 "]
ODD_VERSIONS += [b"HTTP/1", b"HTTP/\xd9\xa1.1"]
SEPARATORS = [b" "]
ODD_SEPARATORS = [b"  ", b"\t", b""]
EOLS = [b"\r\n"]
ODD_EOLS = [b"\n", b"\r", b"\r\r\n", b"\n\r"]
NAMES = [b"Host", b"Content-Type", b"X-Faas-Token", b"x-faas-call-id", b"X-Custom", b"Accept"]
NAMES += [b"Set-Cookie", b"Upgrade", b"x_y", b"!#$%&'*+-.^_`|~09AZaz"]
ODD_NAMES = [b"X(Y", b"X/Y", b"X\x00Y", b"\xc4", b"X Y", b"X\tY", b"", b"X{", b"X\x7f", b"X;"]
ODD_NAMES += [b"Host ", b" X", b"X\x0b"]
VALUE_BYTES = list(b'abcAB 0129,;="\\\t\x80\xa0\xff')
ODD_VALUE_BYTES = list(b"\x00\x01\x0b\x0c\x1f\x7f\r\n")
COLONS = [b": ", b":", b":\t", b":  "]
ODD_COLONS = [b" :", b"", b"\t:"]
CONNECTIONS = [b"close", b"keep-alive", b"Keep-Alive, foo", b"closed", b"not-keep-alive"]
CONNECTIONS += [b"Close", b"close, keep-alive", b"upgrade", b" keep-alive , x", b"x,,close"]
EXPECTS = [b"100-continue", b"100-Continue", b"100-continue, foo", b"200-ok", b"100-continue "]
LENGTHS = ["exact", " pad ", "zeros"]
ODD_LENGTHS = ["+", "_", "0x", "-", "many zeros", "twice", "twice differ", "list", "unicode"]
ODD_LENGTHS += ["empty", "huge", "short", "long", "inner space"]
SIZES = ["lower", "upper", "zeros"]
ODD_SIZES = ["0x", "lead space", "trail space", "+", "-", "many zeros", "underscore", "tab"]
ODD_SIZES += ["overflow", "empty", "unicode"]
EXTENSIONS = [b"", b";a", b";a=b", b';a="b c"', b";a=b;c", b';a="\\"x"', b';a="\xff\t"']
ODD_EXTENSIONS = [b"; a", b";a =b", b";", b";a\nb", b";a\x00", b";a=b ", b"\t", b";\xff"]
ODD_EXTENSIONS += [b';a="b', b";a=b\r", b" ;a"]
TRAILERS = [b"", b"X-Trailer: 1\r\n", b"X:\t\xff\r\n", b"A: 1\r\nB: 2\r\n"]
ODD_TRAILERS = [b"X: a\x01\r\n", b"Bad Name: v\r\n", b" folded\r\n", b"X: a\nY: b\r\n"]
ODD_TRAILERS += [b"garbage\r\n", b"X: 1\n", b": v\r\n"]
CODINGS = [b"chunked", b"Chunked", b" chunked"]
ODD_CODINGS = [b"gzip", b"gzip, chunked", b"chunked, chunked", b"identity", b"xchunked"]
PARTS = ["method", "target", "version", "separator", "eol", "name", "value", "colon", "fold"]
PARTS += ["length", "size", "extension", "trailer", "coding", "chunk end", "host"]


class Faults:
    """Which parts of one request go wrong."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        count = draw(st.sampled_from([0, 0, 0, 1, 1, 2]))
        self.parts = set(draw(st.lists(st.sampled_from(PARTS), min_size=count, max_size=count)))

    def pick(self, part: str, good: list[T], bad: list[T]) -> T:
        """A well-formed choice, or (if `part` goes wrong) sometimes a hostile one."""
        if part in self.parts and self.draw(st.booleans()):
            return self.draw(st.sampled_from(bad))
        return self.draw(st.sampled_from(good))


def _content_length(faults: Faults, size: int) -> list[bytes]:
    n = str(size).encode()
    values = {
        "exact": [n],
        " pad ": [b" " + n + b"\t"],
        "zeros": [b"000" + n],
        "+": [b"+" + n],
        "_": [n[:1] + b"_" + n[1:]],
        "0x": [b"0x" + b"%x" % size],
        "-": [b"-" + n],
        "many zeros": [b"0" * 20 + n],
        "twice": [n, n],
        "twice differ": [n, str(size + 1).encode()],
        "list": [n + b", " + n],
        "unicode": ["\u0661".encode() + n],
        "empty": [b""],
        "huge": [b"9" * 25],
        "short": [str(max(0, size - 1)).encode()],
        "long": [str(size + 3).encode()],
        "inner space": [n[:1] + b" " + n[1:]],
    }[faults.pick("length", LENGTHS, ODD_LENGTHS)]
    return [b"Content-Length: " + value for value in values]


def _chunked(faults: Faults, body: bytes) -> bytes:
    draw = faults.draw
    parts: list[bytes] = []
    rest = body
    while rest:
        take = draw(st.integers(1, len(rest)))
        parts.append(rest[:take])
        rest = rest[take:]
    out = b""
    for part in [*parts, b""]:
        n = len(part)
        size = {
            "lower": b"%x" % n,
            "upper": b"%X" % n,
            "zeros": b"00%x" % n,
            "0x": b"0x%x" % n,
            "lead space": b" %x" % n,
            "trail space": b"%x " % n,
            "+": b"+%x" % n,
            "-": b"-%x" % n,
            "many zeros": b"0" * 17 + b"%x" % n,
            "underscore": b"%x_0" % n,
            "tab": b"%x\t" % n,
            "overflow": b"1" + b"0" * 16 + b"%x" % n,
            "empty": b"",
            "unicode": "\u0661".encode() + b"%x" % n,
        }[faults.pick("size", SIZES, ODD_SIZES)]
        ext = faults.pick("extension", EXTENSIONS, ODD_EXTENSIONS)
        end = faults.pick("chunk end", [b"\r\n"], [b"\n", b"", b"\r\nX", b"X\r\n"])
        out += size + ext + b"\r\n" + part + (end if part else b"")
    return out + faults.pick("trailer", TRAILERS, ODD_TRAILERS) + b"\r\n"


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request: well formed, or gone wrong in one or two parts."""
    faults = Faults(draw)
    pick = faults.pick
    eol = pick("eol", EOLS, ODD_EOLS)
    sep = pick("separator", SEPARATORS, ODD_SEPARATORS)
    lines = [
        pick("method", METHODS, ODD_METHODS)
        + sep
        + pick("target", TARGETS, ODD_TARGETS)
        + b" "
        + pick("version", VERSIONS, ODD_VERSIONS)
    ]
    hosts = pick("host", [0, 1, 1, 1], [2, 2, 0])
    lines += [b"Host: " + draw(st.sampled_from([b"h", b"10.0.0.5:8080"])) for _ in range(hosts)]
    for _ in range(draw(st.integers(0, 3))):
        before = draw(st.lists(st.sampled_from(VALUE_BYTES), max_size=6))
        after = draw(st.lists(st.sampled_from(VALUE_BYTES), max_size=3))
        value = bytes([*before, pick("value", VALUE_BYTES, ODD_VALUE_BYTES), *after])
        lines.append(pick("name", NAMES, ODD_NAMES) + pick("colon", COLONS, ODD_COLONS) + value)
        if "fold" in faults.parts and draw(st.booleans()):
            lines.append(draw(st.sampled_from([b" ", b"\t", b"  "])) + b"folded")
    if draw(st.integers(0, 4)) == 0:
        lines.append(b"Connection: " + draw(st.sampled_from(CONNECTIONS)))
    body = draw(st.binary(max_size=20))
    framing = draw(st.sampled_from(["none", "length", "length", "chunked", "chunked"]))
    if "length" in faults.parts or "coding" in faults.parts:
        framing = draw(st.sampled_from([framing, "both"]))
    if framing != "none" and draw(st.integers(0, 3)) == 0:
        lines.append(b"Expect: " + draw(st.sampled_from(EXPECTS)))
    if framing in ("length", "both"):
        lines += _content_length(faults, len(body))
    if framing in ("chunked", "both"):
        lines.append(b"Transfer-Encoding: " + pick("coding", CODINGS, ODD_CODINGS))
    order = draw(st.permutations(range(1, len(lines))))
    head = b"".join(line + eol for line in [lines[0]] + [lines[i] for i in order]) + eol
    if framing in ("chunked", "both"):
        return head + _chunked(faults, body)
    return head + (body if framing == "length" else b"")


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """One to three pipelined requests, sometimes with empty lines before one."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 7)) == 0:
            parts.append(draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n"])))
        parts.append(draw(requests()))
    return b"".join(parts)


MUTATION_BYTES = list(b'\x00\t\n\r "#(+,-/0159:;=AaFfXx_\x7f\x80\xff')


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A stream with a few bytes replaced, inserted, deleted or duplicated."""
    data = bytearray(draw(streams()))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        byte = draw(st.sampled_from(MUTATION_BYTES))
        if kind == "replace":
            data[at] = byte
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "delete":
            del data[at]
        else:
            stop = draw(st.integers(at, min(len(data), at + 40)))
            data[at:at] = data[at:stop]
    return bytes(data)


@st.composite
def with_cuts(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> tuple[bytes, list[int]]:
    data = draw(source)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8)) if data else []
    if draw(st.integers(0, 7)) == 0:
        cuts = list(range(len(data)))  # byte by byte
    return data, cuts


# ---------------------------------------------------------------- properties


@FUZZ
@given(streams())
def test_well_formed_and_hostile_streams_match_the_references(data: bytes) -> None:
    check_against_references(data)


@FUZZ
@given(mutated())
def test_mutated_streams_match_the_references(data: bytes) -> None:
    check_against_references(data)


@FUZZ
@given(with_cuts(st.one_of(streams(), mutated())))
def test_reads_split_anywhere_give_the_same_outcome(case: tuple[bytes, list[int]]) -> None:
    """Also with the head and chunk-line limits shrunk to sizes the strategies reach."""
    data, cuts = case
    assert ours(data, cuts) == ours(data)
    with (
        mock.patch.object(protocol, "MAX_HEAD", 60),
        mock.patch.object(protocol, "_MAX_CHUNK_LINE", 6),
    ):
        assert ours(data, cuts) == ours(data)


def test_the_strategies_reach_both_outcomes() -> None:
    """The fuzzing above is only worth something if many inputs are accepted and refused."""
    accepted = refused = 0

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(st.one_of(streams(), mutated()))
    def count(data: bytes) -> None:
        nonlocal accepted, refused
        outcome = ours(data)
        accepted += len(outcome.messages)
        refused += outcome.error is not None

    count()
    assert accepted > 60 and refused > 40, (accepted, refused)


# ---------------------------------------------------------------- a connection, fake transport


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class EchoApp:
    """A dispatcher that answers each request at once with its method and path."""

    draining = False
    max_body = MAX_BODY

    def __init__(self) -> None:
        self.seen: list[Request] = []

    def opened(self, conn: Connection) -> None:
        pass

    def closed(self, conn: Connection) -> None:
        pass

    def dispatch(self, conn: Connection, request: Request) -> None:
        self.seen.append(request)
        conn.respond(200, b"ok", "text/plain", "call")


def serve(data: bytes, cuts: list[int]) -> tuple[EchoApp, FakeTransport]:
    app = EchoApp()
    transport = FakeTransport()
    conn = Connection(app)
    conn.connection_made(transport)
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, stop in itertools.pairwise(bounds):
        if start != stop and not transport.closed:
            conn.data_received(data[start:stop])
    return app, transport


@FUZZ
@given(with_cuts(st.one_of(streams(), mutated())))
def test_a_connection_answers_what_the_parser_accepts_then_refuses(
    case: tuple[bytes, list[int]],
) -> None:
    data, cuts = case
    outcome = ours(data)
    app, transport = serve(data, cuts)
    answers = [w for w in transport.writes if not w.startswith(b"HTTP/1.1 100 ")]
    # requests are dispatched until one closes the connection or the stream turns bad
    expected = []
    for message, _, _ in outcome.messages:
        expected.append(message)
        if not message.keep_alive:
            break
    assert [_ours_message(r) for r in app.seen] == expected
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers[: len(expected)])
    closed_by_request = bool(expected) and not expected[-1].keep_alive
    if outcome.error is not None and not closed_by_request:
        assert len(answers) == len(expected) + 1
        assert answers[-1].startswith(b"HTTP/1.1 %d " % outcome.error)
        assert b"\r\nConnection: close\r\n" in answers[-1]
        assert transport.closed
    else:
        assert len(answers) == len(expected)
        assert transport.closed == closed_by_request


# ---------------------------------------------------------------- each bug found, as a plain case

GET = b"GET / HTTP/1.1\r\nHost: h\r\n"
POST_CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

REFUSED = [
    # chunk sizes: int(x, 16) also takes "0x", spaces around, and any number of leading zeros
    pytest.param(POST_CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400, id="chunk-size-0x"),
    pytest.param(POST_CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400, id="chunk-size-leading-space"),
    pytest.param(POST_CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400, id="chunk-size-trailing-space"),
    pytest.param(POST_CHUNKED + b"5\t;a\r\nhello\r\n0\r\n\r\n", 400, id="chunk-size-tab"),
    pytest.param(POST_CHUNKED + b"0" * 17 + b"5\r\nhello\r\n0\r\n\r\n", 400, id="chunk-size-17"),
    # chunk extensions: a bare LF or control inside, or not `;name[=value]`
    pytest.param(POST_CHUNKED + b"5;a\nb\r\nhello\r\n0\r\n\r\n", 400, id="chunk-ext-bare-lf"),
    pytest.param(POST_CHUNKED + b"5;a\x00\r\nhello\r\n0\r\n\r\n", 400, id="chunk-ext-nul"),
    pytest.param(POST_CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400, id="chunk-ext-empty"),
    pytest.param(POST_CHUNKED + b"5;a b\r\nhello\r\n0\r\n\r\n", 400, id="chunk-ext-space"),
    # trailers were skipped unread
    pytest.param(POST_CHUNKED + b"0\r\ngarbage\r\n\r\n", 400, id="trailer-no-colon"),
    pytest.param(POST_CHUNKED + b"0\r\nX: a\nY: b\r\n\r\n", 400, id="trailer-bare-lf"),
    pytest.param(POST_CHUNKED + b"0\r\nX: a\x01\r\n\r\n", 400, id="trailer-control"),
    pytest.param(POST_CHUNKED + b"0\r\n folded\r\n\r\n", 400, id="trailer-fold"),
    pytest.param(POST_CHUNKED + b"0\r\n" + b"X: y\r\n" * 11000 + b"\r\n", 431, id="trailer-size"),
    # field names that are not tokens, values with controls
    pytest.param(GET + b"X(Y: v\r\n\r\n", 400, id="name-paren"),
    pytest.param(GET + b"X\x00Y: v\r\n\r\n", 400, id="name-nul"),
    pytest.param(GET + b"\xc4: v\r\n\r\n", 400, id="name-obs-text"),
    pytest.param(GET + b"X/Y: v\r\n\r\n", 400, id="name-slash"),
    pytest.param(GET + b"X: a\x00b\r\n\r\n", 400, id="value-nul"),
    pytest.param(GET + b"X: a\x01b\r\n\r\n", 400, id="value-control"),
    pytest.param(GET + b"X: a\x0bb\r\n\r\n", 400, id="value-vt"),
    pytest.param(GET + b"X: a\x7fb\r\n\r\n", 400, id="value-del"),
    # request line: obs-text, DEL or a fragment in the target; HTTP/1.2 read as 1.1
    pytest.param(b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="target-obs-text"),
    pytest.param(b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="target-fragment"),
    pytest.param(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, id="version-1.2"),
    # Host twice; Content-Length with 21+ digits; chunked in HTTP/1.0
    pytest.param(GET + b"Host: other\r\n\r\n", 400, id="host-twice"),
    pytest.param(
        b"POST / HTTP/1.1\r\nContent-Length: " + b"0" * 20 + b"5\r\n\r\nhello", 400, id="cl-21"
    ),
    pytest.param(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="te-http10"
    ),
    # kept: the checks that were right already
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400, id="cl-plus"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n0123456789", 400, id="cl-1_0"),
    pytest.param(
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        id="cl-twice",
    ),
    pytest.param(GET + b"X: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\nHost: h\n\n", 400, id="bare-lf-head"),
]


@pytest.mark.parametrize(("data", "status"), REFUSED)
def test_refused(data: bytes, status: int) -> None:
    assert ours(data).error == status
    assert ours(data, list(range(len(data)))).error == status


def test_content_length_padded_with_whitespace_is_accepted() -> None:
    (message,) = check_against_references(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \t 5 \t\r\n\r\nhello"
    ).messages
    assert message[0].body == b"hello"


@pytest.mark.parametrize(
    ("connection", "http11", "keep_alive"),
    [
        (b"closed", True, True),  # "close" only as a whole token
        (b"foo, Close", True, False),
        (b"not-keep-alive", False, False),  # "keep-alive" only as a whole token
        (b"Keep-Alive", False, True),
        (b"keep-alive, close", False, False),
    ],
)
def test_connection_is_read_as_tokens(connection: bytes, http11: bool, keep_alive: bool) -> None:
    version = b"1.1" if http11 else b"1.0"
    data = b"GET / HTTP/%s\r\nHost: h\r\nConnection: %s\r\n\r\n" % (version, connection)
    (message,) = ours(data).messages
    assert message[0].keep_alive is keep_alive


def test_expect_continue_is_ignored_in_http10_and_read_as_tokens() -> None:
    head = b"POST / HTTP/%s\r\nHost: h\r\nContent-Length: 5\r\nExpect: %s\r\n\r\n"
    assert ours_continue(head % (b"1.1", b"100-continue, foo"))
    assert not ours_continue(head % (b"1.0", b"100-continue"))


def test_a_head_is_refused_at_its_first_bare_lf_not_waited_on() -> None:
    parser = RequestParser(MAX_BODY)
    parser.feed(b"GET / HTTP/1.1\nHost: h\n")
    with pytest.raises(HttpError) as info:
        parser.next()
    assert info.value.status == 400


@pytest.mark.parametrize("partial", [0, 1, 2, 3])
def test_the_head_limit_does_not_depend_on_how_the_head_arrives(partial: int) -> None:
    """A head of exactly MAX_HEAD bytes is accepted however it is split; one more is 431."""
    line = b"GET / HTTP/1.1\r\nX: "
    data = line + b"a" * (MAX_HEAD - len(line)) + b"\r\n\r\n"
    assert ours(data).error is None
    assert ours(data, [len(data) - 4 + partial]).error is None  # part of CRLFCRLF first
    assert ours(data, list(range(len(data) - 8, len(data)))).error is None
    over = line + b"a" * (MAX_HEAD + 1 - len(line)) + b"\r\n\r\n"
    assert ours(over).error == 431
    assert ours(over, [len(over) - 4 + partial]).error == 431


def test_the_chunk_line_limit_does_not_depend_on_how_it_arrives() -> None:
    ext = b";a=" + b"b" * (4096 - 4)
    data = POST_CHUNKED + b"5" + ext + b"\r\nhello\r\n0\r\n\r\n"
    assert ours(data).error is None and ours(data, list(range(len(data)))).error is None
    longer = POST_CHUNKED + b"5" + ext + b"b\r\nhello\r\n0\r\n\r\n"
    assert ours(longer).error == 400 and ours(longer, list(range(len(longer)))).error == 400


def test_100_continue_only_to_http11_requests_that_ask() -> None:
    head = b"POST / HTTP/%s\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    for version, continues in ((b"1.1", True), (b"1.0", False)):
        app, transport = serve(head % version + b"ok", [len(head % version)])
        assert len(app.seen) == 1
        assert (transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n") is continues


def test_a_slow_head_is_scanned_once() -> None:
    """Byte-by-byte heads are not rescanned from the start on every read (quadratic)."""
    parser = RequestParser(MAX_BODY)
    parser.feed(b"GET / HTTP/1.1\r\nX: ")
    for _ in range(20000):
        parser.feed(b"a")
        assert parser.next() is None
    assert parser._scan > 19000  # the resume point is what is tested
    parser.feed(b"\r\n\r\n")
    request = parser.next()
    assert request is not None and len(request.headers["x"]) == 20000


# ---------------------------------------------------------------- every byte boundary

CORPUS = [
    GET + b"\r\n",
    b"POST /echo?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    POST_CHUNKED + b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
    b"\r\n" + GET + b"\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok" + GET,
]


@pytest.mark.parametrize("data", CORPUS)
def test_every_split_point_gives_the_same_requests(data: bytes) -> None:
    whole = check_against_references(data)
    assert whole.error is None and whole.messages
    for at in range(len(data) + 1):
        assert ours(data, [at]) == whole, at
    assert ours(data, list(range(len(data)))) == whole


# ---------------------------------------------------------------- speed, side by side


def _load_baseline(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("runtime.watchdog._baseline_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TYPICAL = (
    b"POST /hello?x=1 HTTP/1.1\r\nhost: 172.18.0.5:8080\r\n"
    b"x-faas-token: 0123456789abcdef0123456789abcdef\r\n"
    b"x-faas-call-id: 01HZX3V8Q2M4N6P8R0S2T4V6X8\r\n"
    b"x-faas-timeout: 30\r\nuser-agent: python-httpx/0.27.0\r\naccept: */*\r\n"
    b"accept-encoding: gzip, deflate\r\ncontent-type: application/json\r\n"
    b'content-length: 26\r\n\r\n{"name": "world", "n": 42}'
)
READY = b"GET /_/ready HTTP/1.1\r\nhost: 172.18.0.5:8080\r\nx-faas-token: 0123456789abcdef\r\n\r\n"


def _per_request(module: ModuleType, data: bytes, n: int = 2000) -> float:
    import time

    parser_class = module.RequestParser
    start = time.perf_counter()
    for _ in range(n):
        parser = parser_class(1 << 20)
        parser.feed(data)
        parser.next()
    return (time.perf_counter() - start) / n * 1e6


def main(baseline_path: str, rounds: int = 200) -> None:
    baseline = _load_baseline(baseline_path)
    for label, data in (("typical POST", TYPICAL), ("readiness GET", READY)):
        before, after = [], []
        for _ in range(rounds):
            before.append(_per_request(baseline, data))
            after.append(_per_request(protocol, data))
        before.sort()
        after.sort()
        q = rounds // 4
        print(
            f"{label}: before {before[0]:.2f} us (p25 {before[q]:.2f}), "
            f"after {after[0]:.2f} us (p25 {after[q]:.2f}), "
            f"after/before {after[0] / before[0]:.2f} (min) {after[q] / before[q]:.2f} (p25)"
        )


if __name__ == "__main__":
    main(sys.argv[1])
