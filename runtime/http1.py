"""A lean HTTP/1.1 client for the one hop we own both ends of: gateway -> watchdog.

General clients pay for generality on every call (URL objects, header
multidicts, per-request tasks, timers, tracing hooks); this one writes the
request in one buffer and parses only what the watchdog sends: a status line,
headers, and a body of known length (or none). Connections are pooled per
replica, kept alive, and TCP_NODELAY is on (asyncio sets it for TCP).

Measured with bench/gateway_overhead.py against aiohttp's client on the same
run: see the module's caller, runtime/replica_client.py.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import cast

from runtime.invocation import Body, RawHeaders

MAX_HEAD = 64 * 1024
IDLE_PER_REPLICA = 128
NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The replica's answer was not HTTP/1.1 as the watchdog writes it."""


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self._buffer = bytearray()
        self._head: asyncio.Future[tuple[int, RawHeaders]] | None = None
        self._remaining = 0
        """Body bytes still to come; -1: until the connection closes."""
        self._chunks: collections.deque[bytes] = collections.deque()
        self._body_done = True
        self._body_error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.received_any = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's transports do not subclass asyncio's
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self._head is not None and not self._head.done():
            self._buffer += data
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self._fail(ProtocolError("response head too large"))
                return
            try:
                status, headers, length = _parse_head(bytes(self._buffer[:end]))
            except ProtocolError as exc:
                self._fail(exc)
                return
            rest = bytes(self._buffer[end + 4 :])
            self._buffer.clear()
            self._remaining = length
            self._body_done = length == 0
            self._head.set_result((status, headers))
            if rest:
                self._feed(rest)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self._body_done:
            self.reusable = False  # bytes nobody asked for: do not reuse this connection
            return
        if self._remaining >= 0:
            if len(data) > self._remaining:
                data = data[: self._remaining]
                self.reusable = False
            self._remaining -= len(data)
            if self._remaining == 0:
                self._body_done = True
        self._chunks.append(data)
        self._wake()

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc or ConnectionResetError("closed before answering"))
        elif not self._body_done:
            if self._remaining < 0:
                self._body_done = True
            else:
                self._body_error = exc or ConnectionResetError("closed mid-body")
            self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("closed while sending"))

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- requests --------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def request(
        self, head: bytes, body: Body, head_only: bool, head_within: float | None = None
    ) -> tuple[int, RawHeaders]:
        """Send one request and wait for the response head.

        `head_within` (seconds, only with a `bytes` body) bounds the wait for the head with one
        timer: TimeoutError. Cheaper than `asyncio.timeout`; a streamed body needs that
        instead, as the wait may be for the caller's next chunk.
        """
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._chunks.clear()
        self._body_error = None
        self.received_any = False
        if isinstance(body, bytes | bytearray):
            self.transport.write(
                head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            if head_within is not None:
                timer = loop.call_later(head_within, self._expire)
                try:
                    status, headers = await self._head
                finally:
                    timer.cancel()
                return self._answered(status, headers, head_only)
        else:
            self.transport.write(head + b"transfer-encoding: chunked\r\n\r\n")
            async for chunk in body:
                if self._writable is not None:
                    await self._writable
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.transport.write(b"0\r\n\r\n")
        status, headers = await self._head
        return self._answered(status, headers, head_only)

    def _answered(
        self, status: int, headers: RawHeaders, head_only: bool
    ) -> tuple[int, RawHeaders]:
        if head_only or status in NO_BODY_STATUSES or 100 <= status < 200:
            self._remaining, self._body_done = 0, True
        return status, headers

    def _expire(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(TimeoutError())

    def body(self) -> AsyncIterator[bytes]:
        return BodyReader(self)

    async def next_chunk(self) -> bytes | None:
        """The next part of the response body; None at its end."""
        while not self._chunks:
            if self._body_error is not None:
                raise self._body_error
            if self._body_done:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._chunks.popleft()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    @property
    def finished(self) -> bool:
        """The response was read to its end and the connection can carry another."""
        return self._body_done and not self._chunks and self.reusable and not self.closed


class BodyReader:
    """A response body as an async iterator.

    A class, not an async generator: asyncio registers every async generator with its
    loop (a weak set) and finalizes it, a cost paid on every proxied call."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __aiter__(self) -> BodyReader:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._connection.next_chunk()
        if chunk is None:
            raise StopAsyncIteration
        return chunk


def _parse_head(raw: bytes) -> tuple[int, RawHeaders, int]:
    lines = raw.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {lines[0][:60]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise ProtocolError(f"bad status {status_line[1][:10]!r}") from None
    headers: RawHeaders = []
    length = -1
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:60]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise ProtocolError("bad content-length") from None
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked responses are not expected from a replica")
        headers.append((name, value))
    return status, headers, length


class Pool:
    """Idle keep-alive connections per replica address."""

    def __init__(self) -> None:
        self._idle: dict[str, list[Connection]] = {}

    async def acquire(self, address: str, connect_timeout: float) -> tuple[Connection, bool]:
        """A connection to `address`, and whether it was reused (it may have gone stale)."""
        idle = self._idle.get(address)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection, True
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            _, connection = await loop.create_connection(Connection, host, int(port))
        return connection, False

    def release(self, address: str, connection: Connection) -> None:
        if not connection.finished:
            if connection.transport is not None:
                connection.transport.close()
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

    def close(self) -> None:
        for address in list(self._idle):
            self.forget(address)
