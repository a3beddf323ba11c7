"""The gateway's end of a WebSocket tunnel to a replica (framing: runtime/watchdog/frames.py).

Every byte back is hostile, as in runtime/http1.py: the replica's frames are checked
against the function's max_message_size as their heads arrive (a larger one is refused
before its payload is buffered), unknown kinds and malformed close frames break the
tunnel, and text must be UTF-8. At most `INBOX` frames wait for the caller's side to
take them; past that the replica's socket is not read, so a client that does not read
holds up its own replica, never the gateway's memory. Writes wait while the replica
does not read (`drain`). Each tunnel has a connection of its own, never pooled.
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast

from runtime.watchdog import frames, wire

INBOX = 8


class TunnelBroken(ConnectionError):
    """The replica broke the framing, or the connection ended without a close frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class TunnelConnection(asyncio.Protocol):
    def __init__(self, max_size: int) -> None:
        self.decoder = frames.Decoder(max_size)
        self.inbox: collections.deque[frames.Frame] = collections.deque()
        self.failure: TunnelBroken | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.lost = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading = True

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        decoder = self.decoder
        decoder.feed(data)
        try:
            while (frame := decoder.next()) is not None:
                if frame.kind == frames.TEXT:
                    frame.payload.decode("utf-8")  # UnicodeDecodeError: refused below
                elif frame.kind == frames.CLOSE:
                    frames.parse_close(frame.payload)
                self.inbox.append(frame)
        except frames.FrameError as exc:
            self._fail(TunnelBroken(exc.code, str(exc)))
        except UnicodeDecodeError:
            self._fail(TunnelBroken(frames.INVALID_DATA, "a text message that is not UTF-8"))
        self._wake()
        if len(self.inbox) >= INBOX:
            self._set_reading(False)

    def eof_received(self) -> bool | None:
        return False  # close: nothing is sent after the replica's end

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- used by the relay ------------------------------------------------------------

    async def receive(self) -> frames.Frame:
        """The replica's next frame; TunnelBroken when it broke the rules or left."""
        while not self.inbox:
            if self.failure is not None:
                raise self.failure
            if self.closed:
                raise TunnelBroken(frames.ABNORMAL, "the replica closed without a close frame")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        frame = self.inbox.popleft()
        if len(self.inbox) < INBOX:
            self._set_reading(True)
        return frame

    async def send(self, data: bytes) -> None:
        """Write an encoded frame; waits while the replica has not read what was sent."""
        if self.closed or self.transport is None:
            return
        self.transport.write(data)
        if self._writable is not None:
            await self._writable

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _fail(self, failure: TunnelBroken) -> None:
        """Frames decoded before the broken one are still handed out, then `failure`."""
        self.failure = failure
        self.abort()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_reading(self, on: bool) -> None:
        if on == self._reading or self.transport is None or self.closed:
            return
        self._reading = on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


async def connect(address: str, max_size: int, head: bytes, within: float) -> TunnelConnection:
    """Open a tunnel's connection and write its request head (OSError, TimeoutError)."""
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        _, connection = await loop.create_connection(
            lambda: TunnelConnection(max_size), host, int(port)
        )
    assert connection.transport is not None
    connection.transport.write(
        head
        + f"{wire.WEBSOCKET_HEADER}: 1\r\n{wire.MAX_MESSAGE_HEADER}: {max_size}\r\n\r\n".encode()
    )
    return connection
