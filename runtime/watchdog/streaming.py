"""Sending a streamed answer: each chunk as the handler produces it, paced by the reader.

A handler that returns a generator, an async generator or a `StreamingResponse` has
its chunks sent with chunked transfer encoding as they come. The next chunk is asked
for only once the client has taken enough of the last ones (`Connection.writable`), so
a slow reader slows the producer and nothing piles up here. The function's timeout
bounds the wait for each chunk; a client that goes away, a chunk that is not `str` or
bytes, an exception or a timeout ends the answer cut short (the client sees it
incomplete, never as whole) and closes the generator, so its `finally` runs.
Synchronous generators are advanced on the handler threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faas.handler import sse

from .contract import ConversionError, Reply, chunk_bytes, stream_content_type
from .json_log import log

if TYPE_CHECKING:
    from .protocol import Connection
    from .workers import Workers

CLOSE_GRACE = 5.0
"""How long an async generator's cleanup (`finally`) may take once the answer ended."""

HEARTBEAT = sse(comment="keep-alive").encode()

_END: Any = object()


class Stream:
    """One streamed answer in flight; `abandon` is what the connection calls if the client
    leaves. `done` is called once, when the generator is closed or left to its thread."""

    __slots__ = (
        "_closed",
        "_running",
        "call_id",
        "conn",
        "done",
        "idle",
        "iterator",
        "loop",
        "reply",
        "task",
        "traceback",
        "workers",
    )

    def __init__(
        self,
        conn: Connection,
        call_id: str,
        reply: Reply,
        idle: float,
        workers: Workers,
        done: Callable[[], None],
        traceback: Callable[[BaseException], str],
    ) -> None:
        self.conn = conn
        self.call_id = call_id
        self.reply = reply
        self.idle = idle
        self.workers = workers
        self.done = done
        self.traceback = traceback
        self.loop = asyncio.get_running_loop()
        self.iterator: Any = None
        self.task: asyncio.Task[None] | None = None
        self._running = False  # a sync generator's next() is on a handler thread
        self._closed = False

    def start(self) -> None:
        self.conn.call = self
        self.task = self.loop.create_task(self._run())

    def abandon(self) -> None:
        """The client went away: stop producing."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def _run(self) -> None:
        conn, reply = self.conn, self.reply
        source = reply.stream
        started = False
        try:
            self.iterator = source.__aiter__() if hasattr(source, "__aiter__") else iter(source)
            first = await self._next()
            if first is _END:
                content_type = reply.content_type
                data = b""
            else:
                content_type = reply.content_type or stream_content_type(first)
                data = chunk_bytes(first)
            started = True
            if conn.start_stream(reply.status, content_type, self.call_id, reply.headers):
                conn.send_chunk(data)
                while first is not _END:
                    await conn.writable()
                    if conn.closed:
                        return
                    chunk = await self._next()
                    if chunk is _END:
                        break
                    conn.send_chunk(chunk_bytes(chunk))
            conn.end_stream()
        except asyncio.CancelledError:
            log.info("client disconnected during a streamed answer", extra=self._extra())
        except TimeoutError:
            message = f"function produced nothing for {self.idle:g}s"
            log.warning(f"{message}: streamed answer cut off", extra=self._extra())
            self._end(started, 504, message)
        except ConversionError as exc:
            log.error(f"invalid streamed chunk: {exc}", extra=self._extra())
            self._end(started, 500, "function returned an invalid value")
        except Exception as exc:
            extra = {**self._extra(), "traceback": self.traceback(exc)}
            log.error("function raised an exception", extra=extra)
            self._end(started, 500, "function raised an exception")
        finally:
            await self._close()

    def _end(self, started: bool, status: int, error: str) -> None:
        """After a failure: an error answer if nothing was sent yet, else cut the stream."""
        if started:
            self.conn.abort()
        else:
            from faas.handler import JSON_TYPE

            from .contract import error_body

            self.conn.respond(status, error_body(error, self.call_id), JSON_TYPE, self.call_id)

    async def _next(self) -> Any:
        """The next chunk (or _END), within the idle timeout; heartbeats while waiting."""
        if hasattr(self.iterator, "__anext__"):
            pending: asyncio.Future[Any] = asyncio.ensure_future(_anext(self.iterator))
        else:
            pending = self._next_on_thread()
        deadline = time.monotonic() + self.idle
        heartbeat = self.reply.heartbeat
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait = min(left, heartbeat) if heartbeat else left
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if done:
                    return pending.result()
                if heartbeat and time.monotonic() < deadline:
                    self.conn.send_chunk(HEARTBEAT)
        except BaseException:
            if not pending.done():
                pending.cancel()  # an async generator gets CancelledError where it waits
            raise

    def _next_on_thread(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        iterator = self.iterator

        def settle(value: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

        def job() -> None:
            value: Any = _END
            error: BaseException | None = None
            try:
                value = next(iterator, _END)
            except BaseException as exc:
                error = exc
            self._running = False
            if self._closed:  # the answer ended while this ran: clean up here
                _close_sync(iterator)
                return
            with contextlib.suppress(RuntimeError):  # the loop is closed: we are exiting
                self.loop.call_soon_threadsafe(settle, value, error)

        self._running = True
        self.workers.submit(job)
        return future

    async def _close(self) -> None:
        """Close the generator (its `finally` runs), then report the call done."""
        self._closed = True
        iterator = self.iterator
        try:
            if hasattr(iterator, "aclose"):
                try:
                    async with asyncio.timeout(CLOSE_GRACE):
                        await iterator.aclose()
                except (Exception, asyncio.CancelledError) as exc:
                    log.warning(f"closing the stream failed: {exc!r}", extra=self._extra())
            elif hasattr(iterator, "close") and not self._running:
                self.workers.submit(lambda: _close_sync(iterator))
        finally:
            self.done()

    def _extra(self) -> dict[str, Any]:
        return {"call_id": self.call_id}


async def _anext(iterator: Any) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


def _close_sync(iterator: Any) -> None:
    try:
        iterator.close()
    except Exception as exc:
        log.warning(f"closing the stream failed: {exc!r}")
