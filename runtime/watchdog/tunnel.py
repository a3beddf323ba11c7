"""A WebSocket call in the watchdog: the handler's `WebSocket` over the tunnel's frames.

The connection that carried the call's head belongs to the tunnel from then on
(Connection.take_over) and is closed when the handler ends. Frames are framed and
bounded by frames.py. Back-pressure both ways: past `INBOX` unread messages the
connection stops reading (the gateway, then the client, wait), and `send` waits
until the gateway has taken what was written.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from faas.handler import Context, Headers, Query, WebSocket, WebSocketClosed

from . import frames
from .json_log import log
from .protocol import Connection, Request

INBOX = 8
"""Messages received but not yet taken by the handler before reading stops."""
CANCEL_GRACE = 5.0
"""After the socket is gone, how long a handler that does not notice may run on."""


class Tunnel:
    """Implements faas.handler.WebSocketChannel, and Abortable for the connection."""

    def __init__(
        self,
        conn: Connection,
        call_id: str,
        max_size: int,
        on_end: Callable[[], None],
        traceback: Callable[[BaseException], str],
    ) -> None:
        self.conn = conn
        self.call_id = call_id
        self.max_size = max_size
        self.on_end = on_end
        self.traceback = traceback
        self.decoder = frames.Decoder(max_size)
        self.inbox: collections.deque[frames.Frame] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.accepted = False
        self.ended: tuple[int, str] | None = None
        """Why the socket is closed (code, reason), once it is."""
        self.task: asyncio.Task[Any] | None = None

    def start(self, func: Callable[[Any, Any], Any], request: Request, context: Context) -> None:
        from urllib.parse import parse_qsl

        query = Query(parse_qsl(request.query_string, keep_blank_values=True))
        ws = WebSocket(request.path, query, Headers.wrap(request.headers), self)
        self.conn.take_over(self)
        self.conn.call = self
        self.task = asyncio.ensure_future(func(ws, context))
        self.task.add_done_callback(self._done)

    # -- faas.handler.WebSocketChannel --------------------------------------------

    async def accept(self, subprotocol: str | None) -> None:
        self._check_open()
        self.accepted = True
        self._write(frames.encode(frames.ACCEPT, (subprotocol or "").encode()))
        await self.conn.writable()

    async def receive(self) -> str | bytes:
        while not self.inbox:
            if self.ended is not None:
                raise WebSocketClosed(*self.ended)
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        frame = self.inbox.popleft()
        if len(self.inbox) < INBOX:
            self.conn.reading(True)
        if frame.kind == frames.TEXT:
            return frame.payload.decode("utf-8", "replace")  # the gateway checked it
        if frame.kind == frames.BINARY:
            return frame.payload
        raise WebSocketClosed(*self.ended) if self.ended else WebSocketClosed(frames.ABNORMAL)

    async def send(self, message: str | bytes) -> None:
        self._check_open()
        text = isinstance(message, str)
        payload = message.encode() if isinstance(message, str) else message
        if len(payload) > self.max_size:
            self._close(frames.TOO_BIG, "message too big")
            raise WebSocketClosed(
                frames.TOO_BIG,
                f"a message of {len(payload)} bytes is over max_message_size ({self.max_size})",
            )
        self._write(frames.encode(frames.TEXT if text else frames.BINARY, payload))
        await self.conn.writable()

    async def close(self, code: int, reason: str) -> None:
        if self.ended is None:
            self._close(code, reason)
            await self.conn.writable()

    # -- the connection -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.ended is not None:
            return
        decoder = self.decoder
        decoder.feed(data)
        try:
            while (frame := decoder.next()) is not None:
                if frame.kind == frames.CLOSE:
                    self._ended(*frames.parse_close(frame.payload))
                    self.inbox.append(frame)
                    break
                if frame.kind == frames.ACCEPT:
                    raise frames.FrameError(frames.PROTOCOL_ERROR, "ACCEPT from the gateway")
                self.inbox.append(frame)
        except frames.FrameError as exc:
            log.warning(f"tunnel broken: {exc}", extra={"call_id": self.call_id})
            self._close(exc.code, "")
        self._wake()
        if len(self.inbox) >= INBOX:
            self.conn.reading(False)

    def abandon(self) -> None:
        """The gateway's connection is gone: the handler learns it, or is cancelled."""
        self._ended(frames.ABNORMAL, "")
        self._wake()
        task = self.task
        if task is not None and not task.done():
            asyncio.get_running_loop().call_later(CANCEL_GRACE, task.cancel)

    def going_away(self) -> None:
        """The replica is stopping: close with 1001."""
        if self.ended is None:
            self._close(frames.GOING_AWAY, "the function's replica is stopping")
            self._wake()

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.ended is not None:
            raise WebSocketClosed(*self.ended)

    def _write(self, data: bytes) -> None:
        if not self.conn.closed:
            self.conn.write(data)

    def _close(self, code: int, reason: str) -> None:
        if self.ended is None:
            self._ended(code, reason)
            self._write(frames.encode_close(code, reason))

    def _ended(self, code: int, reason: str) -> None:
        if self.ended is None:
            self.ended = (code, reason)

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self._close(frames.INTERNAL_ERROR, "")
        elif (error := task.exception()) is not None and not isinstance(error, WebSocketClosed):
            extra = {"call_id": self.call_id, "traceback": self.traceback(error)}
            log.error("websocket handler raised an exception", extra=extra)
            self._close(frames.INTERNAL_ERROR, "")
        else:
            self._close(frames.NORMAL, "")
        self.conn.call = None
        self.conn.close()
        self.on_end()


def missing_handler(conn: Connection, call_id: str, message: str) -> None:
    """The module has no usable handle_websocket: refuse the socket (1011), say why in the log."""
    log.error(message, extra={"call_id": call_id})
    conn.take_over(None)
    conn.write(frames.encode_close(frames.INTERNAL_ERROR, "no websocket handler"))
    conn.close()
