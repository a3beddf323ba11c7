"""The HTTP/1.1 client for the gateway -> watchdog hop, where every byte back is hostile.

Function code runs in the same process as the watchdog, so it can write any
bytes at all on this connection. Answers are parsed by llhttp (through
httptools, which uvicorn[standard] already brings) in its strict mode, and
on top of it this module enforces what the watchdog is allowed to send:

- a status of 200-599 on an HTTP/1.1 status line (no 1xx, no upgrade);
- exactly one Content-Length of digits, or `Transfer-Encoding: chunked`
  (no answer framed by closing the connection); 204, 304 and answers to HEAD
  carry no body;
- a bounded head (`MAX_HEAD` bytes, `MAX_HEADERS` lines) and a bounded body
  (`max_body`, checked against the declared length before any body byte);
  a chunked answer is a stream (the watchdog frames only streamed answers so):
  instead of a size it has an idle limit, the time allowed without a body byte,
  and a limit on its whole duration;
- nothing after the framed answer: a byte beyond it discards the connection,
  and fails the call if its answer has not been handed on yet.

Nothing of the replica's framing reaches a caller: the gateway frames every
answer itself (gateway/proxy.py). Body bytes are buffered only up to
`HIGH_WATER`; past it the replica's socket is not read until the consumer
takes what is buffered (`next_chunk` hands it all out at once), so a caller
that does not read holds up its own replica, never the gateway's memory.

Requests are written in one buffer; connections are pooled per replica and
kept alive. A request goes to a second connection only when the first
provably never carried it (it could not connect): see runtime/replica_client.py.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import cast

import httptools

from runtime.invocation import Body, RawHeaders

MAX_HEAD = 64 * 1024
MAX_HEADERS = 256
HIGH_WATER = 256 * 1024
IDLE_PER_REPLICA = 128
NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The replica's answer broke the framing rules above."""


class AnswerTooLarge(ProtocolError):
    """The replica's answer body is over the gateway's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is over the limit of {limit} bytes")
        self.limit = limit


class BodyTimeout(TimeoutError):
    """The answer's body did not arrive in time."""


class Connection(asyncio.Protocol):
    """One keep-alive connection to a replica, carrying one request at a time."""

    def __init__(self, max_body: int = 100 * 1024 * 1024) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._expecting = False
        """A request is outstanding: bytes from the replica are its answer."""
        self._head: asyncio.Future[tuple[int, RawHeaders]] | None = None
        self._head_size = 0
        self._headers: RawHeaders = []
        self._framed = False
        self._head_only = False
        self._complete = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._received = 0
        self._paused = False
        self._error: BaseException | None = None
        self._delivered = False
        """The consumer has taken the whole body: later trouble is no longer this answer's."""
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self.streamed = False
        """The answer is chunked: a stream, bounded by time rather than size."""
        self._idle_within = 0.0
        self._last_body = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's transports do not subclass asyncio's
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._expecting:
            # Nothing was asked: bytes after a complete answer, or on an idle connection.
            self._fail(ProtocolError("bytes after the end of the answer"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the replica tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised; the callbacks raise ProtocolError
            if isinstance(exc.__context__, ProtocolError):
                self._fail(exc.__context__)
            elif self._complete:
                self._fail(ProtocolError("bytes after the end of the answer"))
            else:
                self._fail(ProtocolError(f"malformed answer: {exc}"))

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._expecting and not self._complete:
            self._set_error(exc or ConnectionResetError("the replica closed the connection"))
        self._cancel_body_timer()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("closed while sending"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks (run inside feed_data) --------------------------------------

    def on_message_begin(self) -> None:
        if self._complete or self._head is None or self._head.done():
            raise ProtocolError("bytes after the end of the answer")

    def on_status(self, status: bytes) -> None:
        self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if len(self._headers) >= MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} header lines")
        name = name.lower()
        if name == b"content-length":
            self._framed = True
            if int(value) > self.max_body:  # llhttp checked: digits only, and only one
                raise AnswerTooLarge(self.max_body)
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise ProtocolError("a transfer-encoding other than chunked")
            self._framed = True
            self.streamed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if parser.get_http_version() != "1.1":
            raise ProtocolError("not an HTTP/1.1 answer")
        if not 200 <= status <= 599:
            raise ProtocolError(f"status {status} is not a final status")
        if not self._framed and status not in NO_BODY_STATUSES and not self._head_only:
            raise ProtocolError("an answer with neither content-length nor chunked framing")
        if not parser.should_keep_alive():
            self.reusable = False
        head = self._head
        assert head is not None
        if self._head_only:
            # llhttp cannot be told that the request was HEAD: the answer ends here, and the
            # connection is not reused, as whatever follows cannot be framed.
            self.reusable = False
            self._end_message()
        head.set_result((status, self._headers))

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            raise ProtocolError("a body in the answer to HEAD")
        self._received += len(body)
        if self.streamed:
            self._last_body = time.monotonic()
        elif self._received > self.max_body:
            raise AnswerTooLarge(self.max_body)
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._complete:
            self._end_message()

    # -- state -------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD:
            raise ProtocolError(f"answer head over {MAX_HEAD} bytes")

    def _end_message(self) -> None:
        self._complete = True
        self._expecting = self._head_only  # after HEAD, anything more is a protocol error
        self._cancel_body_timer()
        self._wake()

    def _set_error(self, exc: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        elif self._error is None:
            self._error = exc
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        """Discard the connection; a call whose answer is not handed on yet gets `exc`."""
        self.reusable = False
        self._expecting = False
        if not self._delivered and self._head is not None:
            self._chunks.clear()  # an answer followed by garbage is not an answer
            self._set_error(exc)
        if self.transport is not None:
            self.transport.abort()

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- requests ------------------------------------------------------------------------

    async def request(
        self,
        head: bytes,
        body: Body,
        head_only: bool,
        head_within: float | None = None,
        body_within: float | None = None,
        stream_within: float | None = None,
    ) -> tuple[int, RawHeaders]:
        """Send one request and wait for the answer's head.

        `head_within` (seconds, only with a `bytes` body) bounds the wait for the head with one
        timer: TimeoutError. Cheaper than `asyncio.timeout`; a streamed body needs that
        instead, as the wait may be for the caller's next chunk. `body_within` bounds the rest
        of the answer from the moment its head arrived: the body then fails with BodyTimeout.
        A streamed (chunked) answer gets `body_within` between body bytes instead, and
        `stream_within` for its whole body.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._head_size = 0
        self._headers = []
        self._framed = False
        self._head_only = head_only
        self._complete = False
        self._chunks.clear()
        self._buffered = self._received = 0
        self._error = None
        self._delivered = False
        self.streamed = False
        self._expecting = True
        if isinstance(body, bytes | bytearray):
            self.transport.write(
                head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            if head_within is not None:
                timer = loop.call_later(head_within, self._expire_head)
                try:
                    answer = await self._head
                finally:
                    timer.cancel()
                self._start_body_timer(body_within, stream_within)
                return answer
        else:
            self.transport.write(head + b"transfer-encoding: chunked\r\n\r\n")
            async for chunk in body:
                if self._writable is not None:
                    await self._writable
                if self.transport.is_closing():  # the replica answered (a 413) and closed
                    break
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.transport.write(b"0\r\n\r\n")
        answer = await self._head
        self._start_body_timer(body_within, stream_within)
        return answer

    def _start_body_timer(self, seconds: float | None, stream_seconds: float | None) -> None:
        if self._complete:
            return
        loop = asyncio.get_running_loop()
        if not self.streamed:
            if seconds is not None:
                self._body_timer = loop.call_later(seconds, self._expire_body)
            return
        if stream_seconds is not None:
            self._body_timer = loop.call_later(stream_seconds, self._expire_body)
        if seconds is not None:
            self._idle_within = seconds
            self._last_body = time.monotonic()
            self._idle_timer = loop.call_later(seconds, self._check_idle)

    def _check_idle(self) -> None:
        """A stream's idle limit: re-armed for what is left since its last body byte."""
        self._idle_timer = None
        if self._complete:
            return
        left = self._last_body + self._idle_within - time.monotonic()
        if left > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(left, self._check_idle)
        else:
            self._fail(BodyTimeout())

    def _expire_head(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(TimeoutError())

    def _expire_body(self) -> None:
        self._body_timer = None
        if not self._complete:
            self._fail(BodyTimeout())

    @property
    def at_end(self) -> bool:
        """The whole body is handed on (by `next_chunk`): no more bytes will come."""
        return self._delivered and self._error is None

    async def next_chunk(self) -> bytes | None:
        """Every body byte buffered so far, in one piece; None at the end of the body."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                self._delivered = True
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._delivered = self._complete
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    def cut(self, exc: BaseException) -> None:
        """Drop the connection from outside (its replica is known lost): a call waiting on
        it gets `exc` now, rather than when a silent peer's TCP gives up."""
        self._fail(exc)

    def abort(self) -> None:
        self.reusable = False
        self._expecting = False
        self._cancel_body_timer()
        if self.transport is not None:
            self.transport.abort()

    @property
    def finished(self) -> bool:
        """The answer was read to its end and the connection can carry another."""
        return self._delivered and self._error is None and self.reusable and not self.closed


class ConnectionPool:
    """Keep-alive connections per replica address: the idle ones, and those in use."""

    def __init__(self, max_body: int = 100 * 1024 * 1024) -> None:
        self._idle: dict[str, list[Connection]] = {}
        self._busy: dict[str, set[Connection]] = {}
        self.max_body = max_body

    async def acquire(self, address: str, connect_timeout: float) -> Connection:
        """An idle connection to `address` that has seen no close, or a new one.

        A connection the replica closed while idle is known closed here (its EOF was read),
        so a request written to a reused connection was written to one that was open.
        """
        idle = self._idle.get(address)
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.reusable:
                connection.max_body = self.max_body
                self._busy.setdefault(address, set()).add(connection)
                return connection
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        max_body = self.max_body
        async with asyncio.timeout(connect_timeout):
            _, connection = await loop.create_connection(
                lambda: Connection(max_body), host, int(port)
            )
        self._busy.setdefault(address, set()).add(connection)
        return connection

    def release(self, address: str, connection: Connection) -> None:
        busy = self._busy.get(address)
        if busy is not None:
            busy.discard(connection)
            if not busy:
                del self._busy[address]
        if not connection.finished:
            connection.abort()
            return
        idle = self._idle.setdefault(address, [])
        if len(idle) < IDLE_PER_REPLICA:
            idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def forget(self, address: str) -> None:
        for connection in self._idle.pop(address, []):
            if connection.transport is not None:
                connection.transport.close()

    def cut(self, address: str, exc: BaseException) -> int:
        """Cut every connection to `address`, in use or idle; returns how many were in use."""
        busy = self._busy.pop(address, set())
        for connection in busy:
            connection.cut(exc)
        self.forget(address)
        return len(busy)

    def close(self) -> None:
        for address in list(self._idle):
            self.forget(address)
