"""A request body streamed to the handler as it arrives, with back-pressure.

For a function whose body is a stream (wire.BODY_HEADER), the connection hands the
handler the request once its head is in; body bytes then go through a `BodyPipe`.
When the handler has not taken `HIGH_WATER` bytes yet the connection stops reading
the socket, so an upload larger than the replica's memory only ever holds a little
of itself here. Async handlers iterate with `async for`, sync ones with `for` (their
thread waits on the loop).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

HIGH_WATER = 256 * 1024


class RequestBodyError(Exception):
    """The body broke its framing or passed the size limit while the handler read it:
    the call answers `status` (400, 413) rather than 500."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyPipe:
    """Body bytes from the connection (`put`, `end`, `fail`; on the loop) to the handler."""

    __slots__ = ("_buffered", "_chunks", "_done", "_error", "_loop", "_waiter", "on_drained")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.on_drained: Callable[[], None] = lambda: None
        """Called when the handler took what was buffered: read the socket again."""

    @property
    def full(self) -> bool:
        return self._buffered >= HIGH_WATER

    @property
    def finished(self) -> bool:
        return self._done or self._error is not None

    def put(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            self._wake()

    def end(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def next(self) -> bytes | None:
        """The bytes that arrived since the last call, in one piece; None at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        was_full = self.full
        self._buffered = 0
        if was_full:
            self.on_drained()
        return data

    def next_from_thread(self) -> bytes | None:
        """`next` for a sync handler's thread (never the loop's own)."""
        return asyncio.run_coroutine_threadsafe(self.next(), self._loop).result()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
