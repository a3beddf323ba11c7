"""A small HTTP/1.1 server protocol: incremental request parsing and response framing.

Only what the gateway and ordinary clients need: Content-Length and chunked request
bodies, keep-alive, pipelining (answered strictly in order, one request at a time per
connection), `Expect: 100-continue`. Responses are always framed by Content-Length.

Parsing is strict (RFC 9112), so that every request accepted here means the same to h11
and to httptools (tests/unit/test_watchdog_parser_fuzz.py checks this byte by byte):
lines end in CRLF only; the request line is `method SP target SP HTTP/1.0|1.1` with a
token method and a visible-ASCII target without `#`; field names are tokens and values
hold no controls but HTAB (so no obs-fold); Content-Length is 1-20 digits, given once;
Transfer-Encoding is `chunked` only, never with Content-Length nor in HTTP/1.0; chunk
sizes are 1-16 hex digits and chunk extensions and trailers are checked, then ignored;
more than one Host is refused. Anything else answers 400 (431, 413, 501, 505) and closes,
and a head ended by bare LFs is refused as soon as it is seen rather than waited on. Two
tolerances, both harmless here: an HTTP/1.1 request without Host is accepted (the
watchdog routes nothing by Host), and empty lines before a request line are skipped
(RFC 9112 section 2.2).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Protocol

from faas.handler import JSON_TYPE

from .body import BodyPipe, RequestBodyError
from .contract import dump_json, new_call_id
from .json_log import log
from .wire import BODY_HEADER, BODY_STREAM, INTERNAL_PREFIX, MAX_BODY_HEADER

MAX_HEAD = 64 * 1024  # request line and fields, without the blank line; also the trailers
_MAX_CHUNK_LINE = 4096  # a chunk-size line or a trailer line, without its CRLF

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Visible ASCII but `#`: a fragment is never part of a request target.
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([!-\"$-~]+) HTTP/([0-9]\.[0-9])")
_FIELD_NAME = re.compile(_TOKEN)
# HTAB, SP, visible ASCII and obs-text; the fast path is str.isprintable().
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_TRAILER_FIELD = re.compile(rf"{_TOKEN}:[\t\x20-\x7e\x80-\xff]*".encode())
# Field names already seen valid, mapped to their lower case: most requests repeat the
# same dozen names, so a lookup replaces both the token check and str.lower().
_NAMES: dict[str, str] = {}
_NAMES_CACHED = 512
_NAME_CACHED_LENGTH = 64
# chunk-size *( ";" name [ "=" token / quoted-string ] ), without whitespace (as httptools)
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;%s(?:=(?:%s|%s))?)*" % (_TOKEN.encode(), _TOKEN.encode(), _QUOTED)
)
# Chunk-size lines already seen valid, with their size: streamed bodies repeat a few.
_SIZES: dict[bytes, int] = {}
_SIZES_CACHED = 256


class HttpError(Exception):
    """A request we refuse; the connection is answered with `status` and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """A parsed request. `faas` holds the X-Faas-* headers, kept out of `headers`."""

    __slots__ = (
        "body",
        "faas",
        "headers",
        "http11",
        "keep_alive",
        "method",
        "path",
        "query_string",
        "stream",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        http11: bool,
        headers: dict[str, str],
        faas: dict[str, str],
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.http11 = http11
        self.headers = headers
        self.faas = faas
        self.body = b""
        self.stream: BodyPipe | None = None
        """The body as it arrives, for a function that streams it (wire.BODY_HEADER)."""
        connection = headers.get("connection")
        if connection is None:
            self.keep_alive = http11
        else:
            tokens = _tokens(connection)
            self.keep_alive = "close" not in tokens and (http11 or "keep-alive" in tokens)


def _tokens(value: str) -> set[str]:
    """The lower-cased members of a comma-separated field value."""
    return {token.strip(" \t") for token in value.lower().split(",")}


# Body states of the parser.
_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _TAKEN = range(7)


class RequestParser:
    """Feed bytes in with `feed`, take complete requests out with `next`."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_continue",
        "_limit",
        "_max_body",
        "_received",
        "_remaining",
        "_request",
        "_scan",
        "_sink",
        "_state",
        "broken",
    )

    def __init__(self, max_body: int) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._limit = max_body  # the current request's
        self._state = _HEAD
        self._request: Request | None = None
        self._remaining = 0  # body bytes still expected (fixed), left in this chunk, or trailer
        self._received = 0  # chunked body bytes so far
        self._chunks: list[bytes] = []
        self._continue = False
        self._scan = 0  # where to resume looking for the end of a partial head
        self._sink: BodyPipe | None = None  # where a streamed body's bytes go
        self.broken = False
        """A streamed body broke its framing: nothing after it can be parsed."""

    @property
    def streaming(self) -> bool:
        """A request's body is being streamed to its handler."""
        return self._sink is not None

    @property
    def sink_full(self) -> bool:
        return self._sink is not None and self._sink.full

    def pump(self) -> None:
        """Move the body bytes buffered so far into the streamed body."""
        sink = self._sink
        if sink is None:
            return
        try:
            if self._state == _FIXED:
                buf = self._buf
                take = min(self._remaining, len(buf))
                if take:
                    sink.put(bytes(buf[:take]))
                    del buf[:take]
                    self._remaining -= take
                if not self._remaining:
                    self._end_stream()
            else:
                self._read_chunked()
        except HttpError as exc:
            sink.fail(RequestBodyError(exc.status, exc.message))
            self._sink = None
            self.broken = True

    def abandon_stream(self) -> None:
        """The connection is gone: a handler reading the body learns it."""
        if self._sink is not None:
            self._sink.fail(RequestBodyError(400, "the client went away during the body"))
            self._sink = None
            self.broken = True

    def _end_stream(self) -> None:
        assert self._sink is not None
        self._sink.end()
        self._sink = None
        self._state = _HEAD
        self._continue = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def taken(self) -> bool:
        return self.broken and self._state == _TAKEN

    def take_rest(self) -> bytes:
        """What is buffered past the last head; nothing on the connection is parsed again."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._state = _TAKEN
        self.broken = True
        return rest

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take_continue(self) -> bool:
        """True once per request that asked for `100 Continue` and still awaits its body."""
        if self._continue:
            self._continue = False
            return True
        return False

    def next(self) -> Request | None:
        """The next complete request, or None until more bytes arrive; raises HttpError."""
        if self._state == _HEAD:
            request = self._parse_head()
            if request is not None or self._state == _HEAD:
                return request  # a bodiless request, an incomplete head, or a streamed body
        if self._sink is not None or self.broken:
            return None  # the rest of a streamed body goes through pump()
        if self._state == _FIXED:
            buf = self._buf
            size = self._remaining
            if len(buf) < size:
                return None
            assert self._request is not None
            request, self._request = self._request, None
            request.body = bytes(buf[:size])
            del buf[:size]
            self._state = _HEAD
            self._continue = False
            return request
        return self._read_chunked()

    def _parse_head(self) -> Request | None:
        """Parse a request head; return the request if it has no body, else None."""
        buf = self._buf
        if not buf:
            return None
        while buf.startswith(b"\r\n"):  # empty lines before a request line (RFC 9112 2.2)
            del buf[:2]
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            self._partial_head()
            return None
        self._scan = 0
        if end > MAX_HEAD:
            self._partial_head()  # the answer it gets when it comes in smaller reads
            raise HttpError(431, "request head too large")
        head = buf[:end].decode("latin-1")
        del buf[: end + 4]

        lines = head.split("\r\n")
        breaks = len(lines) - 1
        if head.count("\n") != breaks or head.count("\r") != breaks:
            raise HttpError(400, "bare CR or LF in request head")
        match = _REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            raise HttpError(400, "malformed request line")

        headers: dict[str, str] = {}
        faas: dict[str, str] = {}
        names = _NAMES
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            lowered = names.get(name)
            if lowered is None or not colon:
                if not colon or _FIELD_NAME.fullmatch(name) is None:
                    raise HttpError(400, "malformed header line")
                lowered = name.lower()
                if len(names) < _NAMES_CACHED and len(name) <= _NAME_CACHED_LENGTH:
                    names[name] = lowered
            if not value.isprintable() and _FIELD_VALUE.fullmatch(value) is None:
                raise HttpError(400, "control character in a header value")
            value = value.strip(" \t")
            target_dict = faas if lowered.startswith(INTERNAL_PREFIX) else headers
            previous = target_dict.get(lowered)
            if previous is None:
                target_dict[lowered] = value
            elif lowered == "host":
                raise HttpError(400, "more than one Host")
            else:
                target_dict[lowered] = f"{previous}, {value}"

        method, target, version = match.groups()
        if version != "1.1" and version != "1.0":
            raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        path, _, query = target.partition("?")
        if path[:1] != "/":
            path = _origin_path(path)
        if "%" in path:
            from urllib.parse import unquote

            path = unquote(path)

        http11 = version == "1.1"
        request = Request(method, path, query, http11, headers, faas)
        limit = faas.get(MAX_BODY_HEADER, "")  # the gateway's, for this call
        valid = limit.isdigit() and limit.isascii() and len(limit) < 20
        self._limit = int(limit) if valid else self._max_body
        length = headers.get("content-length")
        if "transfer-encoding" in headers:
            if length is not None:
                raise HttpError(400, "both Content-Length and Transfer-Encoding")
            if not http11:
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
            if headers["transfer-encoding"].lower() != "chunked":
                raise HttpError(501, "unsupported Transfer-Encoding")
            self._state = _CHUNK_SIZE
            self._received = 0
        elif length is not None and length != "0":
            # digits only: int() would also take "+1", "1_0", " 1" and other scripts' digits
            if not length.isdigit() or not length.isascii() or len(length) > 20:
                raise HttpError(400, "invalid Content-Length")
            size = int(length)
            if size > self._limit:
                raise HttpError(413, f"request body over the {self._limit} byte limit")
            self._state = _FIXED
            self._remaining = size
        else:
            return request
        self._request = request
        expect = headers.get("expect")
        self._continue = expect is not None and http11 and "100-continue" in _tokens(expect)
        if faas.get(BODY_HEADER) == BODY_STREAM:
            request.stream = self._sink = BodyPipe(asyncio.get_running_loop())
            self._request = None
            return request
        return None

    def _partial_head(self) -> None:
        """Refuse an unfinished head as soon as it has a bare LF or is too large.

        Its CRLFCRLF could only start past MAX_HEAD once it holds MAX_HEAD + 4 bytes, and
        only bytes below that count for a bare LF: the same answer however it is split.
        """
        buf = self._buf
        limit = MAX_HEAD + 4
        if _bare_lf(buf, self._scan, min(len(buf), limit)):  # LF-only clients would wait
            raise HttpError(400, "bare LF in request head")
        if len(buf) >= limit:
            raise HttpError(431, "request head too large")
        self._scan = max(0, len(buf) - 3)

    def _read_chunked(self) -> Request | None:
        buf = self._buf
        while True:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(self._remaining, len(buf))
                if take == 0:
                    return None
                if self._sink is not None:
                    self._sink.put(bytes(buf[:take]))
                else:
                    self._chunks.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return None
                self._state = _CHUNK_END
                continue
            if state == _CHUNK_END:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise HttpError(400, "chunk not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
                continue
            eol = buf.find(b"\r\n")
            if eol < 0:
                if b"\n" in buf:
                    raise HttpError(400, "bare LF in chunked body")
                if len(buf) > _MAX_CHUNK_LINE + 1:
                    raise HttpError(400, "chunk line too long")
                return None
            if eol > _MAX_CHUNK_LINE:
                raise HttpError(400, "chunk line too long")
            line = bytes(buf[:eol])
            del buf[: eol + 2]
            if state == _TRAILER:
                if line:
                    if _TRAILER_FIELD.fullmatch(line) is None:
                        raise HttpError(400, "malformed trailer line")
                    self._remaining -= eol + 2
                    if self._remaining < 0:
                        raise HttpError(431, "trailer section too large")
                    continue  # trailer fields are checked, then ignored
                if self._sink is not None:
                    self._end_stream()
                    return None
                assert self._request is not None
                request, self._request = self._request, None
                request.body = b"".join(self._chunks)
                self._chunks = []
                self._state = _HEAD
                self._continue = False
                return request
            size = _SIZES.get(line)
            if size is None:
                match = _CHUNK_LINE.fullmatch(line)
                if match is None:
                    raise HttpError(400, "invalid chunk size")
                size = int(match.group(1), 16)
                if len(_SIZES) < _SIZES_CACHED and eol <= 16:
                    _SIZES[line] = size
            if size == 0:
                self._state = _TRAILER
                self._remaining = MAX_HEAD
                continue
            self._received += size
            if self._received > self._limit:
                raise HttpError(413, f"request body over the {self._limit} byte limit")
            self._remaining = size
            self._state = _CHUNK_DATA


def _bare_lf(buf: bytearray, start: int, end: int) -> bool:
    """Whether buf[start:end] holds an LF that no CR precedes."""
    return buf.count(b"\n", start, end) != buf.count(b"\r\n", max(0, start - 1), end)


def _origin_path(target: str) -> str:
    """The path of an absolute-form (`http://host/p`) or asterisk-form target."""
    if target == "*":
        return target
    scheme, sep, rest = target.partition("://")
    if not sep or not scheme.isalpha():
        raise HttpError(400, "malformed request target")
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


# ---------------------------------------------------------------- responses

_STATUS_LINES: dict[int, str] = {}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_second = 0
_date_value = ""


def status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        from http import HTTPStatus

        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n"
    return line


def http_date() -> str:
    """The current IMF-fixdate, recomputed at most once a second."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        t = time.gmtime(now)
        _date_value = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_second = now
    return _date_value


def render_response(
    status: int,
    body: bytes,
    content_type: str | None,
    call_id: str | None,
    headers: list[tuple[str, str]] | None = None,
    *,
    keep_alive: bool = True,
    http11: bool = True,
    head_only: bool = False,
) -> bytes:
    """Serialise a response; header values must already be free of CR/LF."""
    head = f"{status_line(status)}Date: {http_date()}\r\n"
    if status == 204 or status == 304 or status < 200:  # never a body, nor its length
        body = b""
    else:
        head += f"Content-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if call_id is not None:
        head += f"X-Call-Id: {call_id}\r\n"
    if headers:
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    if not keep_alive:
        head += "Connection: close\r\n"
    elif not http11:
        head += "Connection: keep-alive\r\n"
    data = (head + "\r\n").encode("latin-1")
    return data if head_only or not body else data + body


def render_stream_head(
    status: int,
    content_type: str | None,
    call_id: str | None,
    headers: list[tuple[str, str]] | None,
    *,
    chunked: bool,
    keep_alive: bool,
) -> bytes:
    """The head of a streamed answer: chunked, or (HTTP/1.0) ended by closing."""
    head = f"{status_line(status)}Date: {http_date()}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if call_id is not None:
        head += f"X-Call-Id: {call_id}\r\n"
    if headers:
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    if not keep_alive:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1")


# ---------------------------------------------------------------- connections


class Dispatcher(Protocol):
    """What a connection needs from the server behind it."""

    draining: bool
    max_body: int

    def opened(self, conn: Connection) -> None: ...

    def closed(self, conn: Connection) -> None: ...

    def dispatch(self, conn: Connection, request: Request) -> None:
        """Handle `request`, eventually calling `conn.respond` exactly once (unless closed)."""


class Abortable(Protocol):
    def abandon(self) -> None:
        """The client went away: stop what can be stopped, answer nobody."""


class Sink(Protocol):
    """What takes a connection's bytes once a call took it over (a WebSocket tunnel)."""

    def data_received(self, data: bytes) -> None: ...


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Connection(asyncio.Protocol):
    """One client connection: requests are dispatched and answered one at a time, in order."""

    __slots__ = (
        "_advancing",
        "_app",
        "_can_write",
        "_chunked",
        "_drained",
        "_eof",
        "_head_only",
        "_http11",
        "_keep_alive",
        "_parser",
        "_reading",
        "_transport",
        "busy",
        "call",
        "closed",
        "sink",
    )

    def __init__(self, app: Dispatcher) -> None:
        self._app = app
        self._parser = RequestParser(app.max_body)
        self._transport: asyncio.Transport | None = None
        self._keep_alive = True
        self._http11 = True
        self._head_only = False
        self._advancing = False
        self._can_write = True
        self._drained: asyncio.Future[None] | None = None
        self._chunked = False
        self._reading = True
        self._eof = False
        self.busy = False  # a request is being handled
        self.closed = False
        self.call: Abortable | None = None
        self.sink: Sink | None = None
        """Whoever took the connection over: every byte after the head goes there."""

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._app.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.data_received(data)
            return
        if self._parser.taken:
            return  # taken over, no sink: nothing more is read
        parser = self._parser
        parser.feed(data)
        if parser.streaming:  # the body of the call in flight, to its handler
            self._pump_body()
        if not self.busy:
            self._advance()
        if parser.buffered > MAX_HEAD + self._app.max_body:
            self._set_reading(False)  # blocked on a call or a slow reader: stop buffering

    def _pump_body(self) -> None:
        """Streamed body bytes to the handler; stop reading while it has not taken them."""
        parser = self._parser
        parser.pump()
        self._set_reading(not parser.sink_full)

    def _body_drained(self) -> None:
        if not self.closed:
            self._pump_body()

    def eof_received(self) -> bool | None:
        if self._parser.taken:
            return False  # a taken-over connection ends with its peer's half
        self._eof = True
        if not self.busy:
            self._advance()
        return True  # half-closed: still answer what was sent before the EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parser.abandon_stream()
        self._wake_writer()
        self._app.closed(self)
        call, self.call = self.call, None
        if call is not None:
            call.abandon()

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        self._wake_writer()
        if not self.busy:
            self._advance()

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # used by the server

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        call_id: str | None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer the request in flight, then move on to the next pipelined one."""
        self.busy = False
        self.call = None
        if self.closed:
            return
        assert self._transport is not None
        if self._parser.streaming or self._parser.broken:  # the body was not read to its end
            self._keep_alive = False
        keep_alive = self._keep_alive and not self._app.draining
        self._transport.write(
            render_response(
                status,
                body,
                content_type,
                call_id,
                headers,
                keep_alive=keep_alive,
                http11=self._http11,
                head_only=self._head_only,
            )
        )
        if not keep_alive:
            self.close()
        elif not self._advancing:
            self._advance()

    # streamed answers: start_stream, then send_chunk (pacing with writable), end_stream

    def start_stream(
        self,
        status: int,
        content_type: str | None,
        call_id: str | None,
        headers: list[tuple[str, str]] | None,
    ) -> bool:
        """Send a streamed answer's head; False when no body is to follow (HEAD, or gone)."""
        if self.closed:
            return False
        assert self._transport is not None
        self._chunked = self._http11
        if not self._http11 or self._parser.streaming or self._parser.broken:
            # HTTP/1.0: the end of the body is the end of the connection; and after a request
            # body not read to its end, nothing on this connection can be parsed
            self._keep_alive = False
        keep_alive = self._keep_alive and not self._app.draining
        self._keep_alive = keep_alive
        head = render_stream_head(
            status, content_type, call_id, headers, chunked=self._chunked, keep_alive=keep_alive
        )
        self._transport.write(head)
        return not self._head_only

    def send_chunk(self, data: bytes) -> None:
        """One piece of a streamed answer (never empty: an empty chunk would end it)."""
        if data and not self.closed:
            assert self._transport is not None
            if self._chunked:
                self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self._transport.write(data)

    async def writable(self) -> None:
        """Until the client has taken enough of what was sent (or is gone)."""
        while not self._can_write and not self.closed:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def end_stream(self) -> None:
        """The streamed answer is complete: end it, then go on to the next request."""
        self.busy = False
        self.call = None
        if self.closed:
            return
        assert self._transport is not None
        if self._chunked and not self._head_only:
            self._transport.write(b"0\r\n\r\n")
        if not self._keep_alive:
            self.close()
        elif not self._advancing:
            self._advance()

    # a connection taken over by its call (a WebSocket tunnel)

    def take_over(self, sink: Sink | None) -> None:
        """From now on the call owns the connection: bytes past the head go to `sink`
        (None: dropped), and nothing more is parsed as HTTP; it is closed after the call."""
        self._keep_alive = False
        rest = self._parser.take_rest()
        self.sink = sink
        if sink is not None and rest:
            sink.data_received(rest)

    def write(self, data: bytes) -> None:
        if not self.closed:
            assert self._transport is not None
            self._transport.write(data)

    def reading(self, on: bool) -> None:
        """Pause or resume reading (a taken-over connection's back-pressure)."""
        self._set_reading(on)

    def abort(self) -> None:
        """Cut a streamed answer short: the client sees it incomplete, never as whole."""
        self.busy = False
        self.call = None
        if not self.closed:
            self.closed = True
            assert self._transport is not None
            self._transport.abort()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self._transport is not None
            self._transport.close()  # flushes what was written first

    def close_if_idle(self) -> None:
        if not self.busy:
            self.close()

    def _advance(self) -> None:
        """Dispatch buffered requests until one stays in flight or the buffer runs dry."""
        self._advancing = True
        try:
            while not self.busy and not self.closed and self._can_write:
                try:
                    request = self._parser.next()
                except HttpError as exc:
                    self._fail(exc)
                    return
                if request is None:
                    if self._eof:
                        self.close()
                        return
                    if self._parser.take_continue():
                        assert self._transport is not None
                        self._transport.write(_CONTINUE)
                    self._set_reading(True)
                    return
                self.busy = True
                self._keep_alive = request.keep_alive
                self._http11 = request.http11
                self._head_only = request.method == "HEAD"
                if request.stream is not None:
                    request.stream.on_drained = self._body_drained
                    if self._parser.take_continue():
                        assert self._transport is not None
                        self._transport.write(_CONTINUE)
                    self._pump_body()
                self._app.dispatch(self, request)
        finally:
            self._advancing = False

    def _fail(self, exc: HttpError) -> None:
        call_id = new_call_id()
        log.warning(f"refused a request: {exc.status} {exc.message}", extra={"call_id": call_id})
        self._keep_alive = False
        self._head_only = False
        self.respond(exc.status, dump_json({"error": exc.message}), JSON_TYPE, call_id)

    def _set_reading(self, on: bool) -> None:
        if on != self._reading and self._transport is not None and not self.closed:
            self._reading = on
            if on:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()
