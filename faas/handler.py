"""What a handler sees: `Event` (the request), `Context` (the call) and `Response`.

Annotate handlers with these types::

    from faas.handler import Context, Event, Response

    def handle(event: Event, context: Context) -> Response:
        return Response({"hello": event.query.get("name", "world")})

This module is the one replicas run: images carry it as `faas/handler.py` next to the
watchdog, so it imports nothing but the standard library, and `faas/__init__.py` stays
import-free. On the host it is what editors, type checkers and `faas.testing` import.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias

__all__ = [
    "BodyStream",
    "Context",
    "Event",
    "Headers",
    "Query",
    "Response",
    "SecretNotFound",
    "StreamingResponse",
    "WebSocket",
    "WebSocketClosed",
    "sse",
]

JSON_TYPE = "application/json"
SECRETS_DIR = "/run/secrets"
"""Where a replica's secrets are files (runtime/watchdog/wire.py names the same place)."""


def is_json_type(content_type: str | None) -> bool:
    """True for `application/json` and any `+json` media type, parameters ignored."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == JSON_TYPE or media.endswith("+json")


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive view of request headers (keys iterate lower-cased)."""

    __slots__ = ("_items",)

    _items: dict[str, str]

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): v for k, v in items.items()} if items else {}

    @classmethod
    def wrap(cls, lowered: dict[str, str]) -> Headers:
        """Wrap a dict whose keys are already lower-case, without copying it."""
        headers = cls.__new__(cls)
        headers._items = lowered
        return headers

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Query(dict[str, str]):
    """Query parameters: a dict of each name's first value, and `getlist` for all of them.

    `getlist` is the name Flask's (and so OpenFaaS `python3-http`'s) `event.query` has.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        first: dict[str, str] = {}
        for name, value in items:
            first.setdefault(name, value)
        super().__init__(first)
        self._items = items

    def getlist(self, name: str) -> list[str]:
        """Every value given for `name`, in order; [] when there is none."""
        return [value for key, value in self._items if key == name]

    @property
    def items_all(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, in order, repeats included."""
        return list(self._items)


_UNSET: Any = object()


class BodyStream:
    """A request body as it arrives: `async for chunk in event.stream()` in an async
    handler, `for chunk in event.stream()` in a sync one. Each chunk is what arrived since
    the last (bytes, never empty); the size limit is enforced as the bytes come."""

    __slots__ = ("_next_async", "_next_sync")

    def __init__(
        self,
        next_async: Callable[[], Awaitable[bytes | None]],
        next_sync: Callable[[], bytes | None],
    ) -> None:
        self._next_async = next_async
        self._next_sync = next_sync

    @classmethod
    def of(cls, body: bytes) -> BodyStream:
        """A body already whole, as a stream of one chunk."""
        left = [body] if body else []

        async def next_async() -> bytes | None:
            return left.pop() if left else None

        return cls(next_async, lambda: left.pop() if left else None)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._next_async()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    def __iter__(self) -> BodyStream:
        return self

    def __next__(self) -> bytes:
        chunk = self._next_sync()
        if chunk is None:
            raise StopIteration
        return chunk


class Event:
    """One invocation's request: an HTTP request, or a delivered event when `topic` is set.

    Attributes:
        method: the HTTP method (`POST` for events, async calls and cron).
        path: the request path as the caller sent it (e.g. `/hello`), without the query.
        query_string: the raw query, without `?`.
        headers: case-insensitive request headers (the gateway's own are removed).
        body: the request body, whole, as bytes.
        topic: the event's topic, or None for an HTTP call.
            (`body` of a function with `request_body: stream` is read with `stream()`.)
        event_id: the event's id (for deduplication), or None.
        attempt: 1 for the first delivery of an event, 2 for its first retry, ...
    """

    __slots__ = (
        "_body",
        "_data",
        "_query",
        "_stream",
        "attempt",
        "event_id",
        "headers",
        "method",
        "path",
        "query_string",
        "topic",
    )

    method: str
    path: str
    query_string: str
    headers: Headers
    topic: str | None
    event_id: str | None
    attempt: int

    def __init__(
        self,
        method: str = "POST",
        path: str = "/",
        query_string: str = "",
        headers: Headers | Mapping[str, str] | None = None,
        body: bytes = b"",
        topic: str | None = None,
        event_id: str | None = None,
        attempt: int = 1,
        stream: BodyStream | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self._body = body
        self._stream = stream
        self.topic = topic
        self.event_id = event_id
        self.attempt = attempt
        self._query: Query | None = None
        self._data: Any = _UNSET

    @property
    def query(self) -> Query:
        """Query parameters: `query["tag"]` is the first value; `query.getlist("tag")` all."""
        if self._query is None:
            if self.query_string:
                from urllib.parse import parse_qsl

                self._query = Query(parse_qsl(self.query_string, keep_blank_values=True))
            else:
                self._query = Query([])
        return self._query

    def query_list(self, name: str) -> list[str]:
        """Every value of a repeated parameter (`?tag=a&tag=b` -> ["a", "b"]), in order."""
        return self.query.getlist(name)

    @property
    def query_items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair of the query, in order, repeats included."""
        return self.query.items_all

    @property
    def body(self) -> bytes:
        """The request body, whole."""
        if self._stream is not None:
            raise RuntimeError(
                "this function reads its request body as a stream (`request_body: stream` "
                "in functions.yaml): use `event.stream()`"
            )
        return self._body

    def stream(self) -> BodyStream:
        """The request body as it arrives (for uploads larger than memory): iterate it with
        `async for` or `for`. A function without `request_body: stream` gets its whole
        body as one chunk."""
        if self._stream is None:
            return BodyStream.of(self._body)
        return self._stream

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError if it is not valid JSON."""
        return json.loads(self.body)

    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes are replaced, never raised)."""
        return self.body.decode("utf-8", "replace")

    @property
    def data(self) -> Any:
        """For events: the JSON-decoded body when it is JSON, else the raw body; else None."""
        if self._data is _UNSET:
            if self.topic is None:
                self._data = None
            elif is_json_type(self.headers.get("content-type")):
                self._data = self.json()
            else:
                self._data = self.body
        return self._data

    def __repr__(self) -> str:
        kind = f" topic={self.topic!r}" if self.topic is not None else ""
        size = "streamed" if self._stream is not None else f"{len(self._body)}B"
        return f"<Event {self.method} {self.path}{kind} body={size}>"


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """Stamps every record with the call id, keeping any `extra` the caller passes."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        own = self.extra or {}
        extra = kwargs.get("extra")
        kwargs["extra"] = {**own, **extra} if extra else own
        return msg, kwargs


FUNCTION_LOGGER = logging.getLogger("function")


class SecretNotFound(KeyError):
    """`context.secret(name)` for a secret the function was not given (`secrets:`)."""


class Context:
    """Facts about the current call; `logger` writes JSON lines tagged with the call id.

    Attributes:
        function_name: the function's name in functions.yaml.
        call_id: this call's id (the `X-Call-Id` the caller sees).
        deadline: when the call times out, as a `time.time()` value.
        hostname: the replica's host name.
    """

    __slots__ = ("_logger", "call_id", "deadline", "function_name", "hostname", "secrets_dir")

    function_name: str
    call_id: str
    deadline: float
    hostname: str
    secrets_dir: str

    def __init__(
        self,
        function_name: str,
        call_id: str,
        deadline: float,
        hostname: str = "",
        secrets_dir: str = SECRETS_DIR,
    ) -> None:
        self.function_name = function_name
        self.call_id = call_id
        self.deadline = deadline
        self.hostname = hostname
        self.secrets_dir = secrets_dir
        self._logger: CallLogger | None = None

    def remaining(self) -> float:
        """Seconds left before the call times out (never negative)."""
        return max(0.0, self.deadline - time.time())

    def secret(self, name: str) -> str:
        """The value of a secret listed in the function's `secrets:`, trailing newline removed.

        Raises SecretNotFound when the function was not given it.
        """
        if not name or "/" in name or name.startswith("."):
            raise SecretNotFound(name)
        try:
            with open(os.path.join(self.secrets_dir, name), encoding="utf-8") as file:
                return file.read().rstrip("\r\n")
        except FileNotFoundError:
            raise SecretNotFound(name) from None

    @property
    def logger(self) -> CallLogger:
        """A logger whose lines carry this call's id."""
        if self._logger is None:
            self._logger = CallLogger(FUNCTION_LOGGER, {"call_id": self.call_id})
        return self._logger

    def __repr__(self) -> str:
        return f"<Context {self.function_name} call_id={self.call_id}>"


class Response:
    """An explicit HTTP response; `body` is converted like a return value.

    `str` is sent as text, `bytes` as binary, `dict`/`list` as JSON, None as empty.
    `content_type` (or a `Content-Type` in `headers`) overrides the one chosen for the body.
    """

    __slots__ = ("body", "content_type", "headers", "status")

    body: Any
    status: int
    headers: dict[str, str]
    content_type: str | None

    def __init__(
        self,
        body: Any = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = dict(headers) if headers else {}
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


Chunk: TypeAlias = bytes | bytearray | memoryview | str
"""What a streamed answer is made of: `str` is sent as UTF-8."""

EVENT_STREAM = "text/event-stream"


class StreamingResponse:
    """An answer sent as it is produced, chunk by chunk (HTTP chunked transfer encoding).

    `content` is an iterable or async iterable of `str`/`bytes`, typically a generator.
    A handler may also return a generator or async generator itself: it is streamed with
    status 200, as text when its first chunk is a `str`, else as binary.

    The function's `timeout` bounds the wait for each chunk (and `max_duration`, when set,
    the whole answer). A caller that goes away closes the generator: its `finally` runs.
    A `text/event-stream` answer gets a comment line every `heartbeat` seconds that
    nothing else is sent, so that idle proxies keep the connection; build its events
    with `sse()`.
    """

    __slots__ = ("content", "content_type", "headers", "heartbeat", "status")

    content: Iterable[Chunk] | AsyncIterable[Chunk]
    status: int
    headers: dict[str, str]
    content_type: str | None
    heartbeat: float | None

    def __init__(
        self,
        content: Iterable[Chunk] | AsyncIterable[Chunk],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        heartbeat: float | None = 15.0,
    ) -> None:
        self.content = content
        self.status = status
        self.headers = dict(headers) if headers else {}
        self.content_type = content_type
        self.heartbeat = heartbeat

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status} {self.content_type}>"


def sse(
    data: Any = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> str:
    """One Server-Sent Event, framed: `yield sse({"n": 1}, event="tick", id="1")`.

    `data` that is not a `str` is sent as JSON; a multi-line `str` becomes several
    `data:` lines. `retry` is the reconnection delay in milliseconds.
    """
    lines: list[str] = []
    if comment is not None:
        lines += [f": {line}" for line in comment.splitlines() or [""]]
    for name, value in (("event", event), ("id", id)):
        if value is not None:
            if "\n" in value or "\r" in value or (name == "id" and "\0" in value):
                raise ValueError(f"an SSE {name} cannot hold a line break")
            lines.append(f"{name}: {value}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if data is not None:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        lines += [f"data: {line}" for line in text.replace("\r\n", "\n").split("\n")]
    if not lines:
        raise ValueError("an SSE event needs data, an event, an id, retry or a comment")
    return "\n".join(lines) + "\n\n"


# -- WebSockets ------------------------------------------------------------------------


class WebSocketClosed(Exception):
    """The socket is closed: by the client (its close code), by the handler, or the
    connection was lost (1006). `ws.receive()` and `ws.send()` raise it from then on."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"the WebSocket is closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocketChannel(Protocol):
    """What carries a `WebSocket`'s messages: the watchdog's tunnel in a replica,
    an in-memory pair in `faas.testing.websocket`."""

    async def accept(self, subprotocol: str | None) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class WebSocket:
    """One caller's WebSocket, as `async def handle_websocket(ws, context)` gets it
    (a function with `websocket: true`)::

        async def handle_websocket(ws: WebSocket, context: Context) -> None:
            await ws.accept()
            async for message in ws:  # str (text) or bytes (binary), until the client closes
                await ws.send(message)

    Attributes:
        path: the path below the function's route, as for `Event.path`.
        query: the query parameters of the opening request.
        headers: its headers (without the platform's own and the hop-by-hop ones).
        subprotocols: what the client offered in `Sec-WebSocket-Protocol`, in order.

    Returning from the handler closes the socket with 1000; raising closes it with 1011.
    """

    __slots__ = ("_accepted", "_channel", "headers", "path", "query", "subprotocols")

    def __init__(
        self, path: str, query: Query, headers: Headers, channel: WebSocketChannel
    ) -> None:
        self.path = path
        self.query = query
        self.headers = headers
        offered = headers.get("sec-websocket-protocol", "")
        self.subprotocols = [p.strip() for p in offered.split(",") if p.strip()]
        self._channel = channel
        self._accepted = False

    async def accept(self, subprotocol: str | None = None) -> None:
        """Complete the opening handshake, choosing one of `subprotocols` or none.

        Closing before accepting refuses the socket: the client gets 403.
        """
        if self._accepted:
            raise RuntimeError("the WebSocket was accepted already")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"the client did not offer the subprotocol {subprotocol!r}")
        await self._channel.accept(subprotocol)
        self._accepted = True

    async def receive(self) -> str | bytes:
        """The next message: `str` for a text message, `bytes` for a binary one.

        Raises WebSocketClosed (with the client's close code) once the socket is closed.
        """
        self._check_accepted()
        return await self._channel.receive()

    async def send(self, message: str | bytes) -> None:
        """Send a text (`str`) or binary (`bytes`) message; waits while the client is slow
        to read. Past the function's `max_message_size` the socket closes with 1009."""
        self._check_accepted()
        if isinstance(message, bytearray | memoryview):
            message = bytes(message)
        if not isinstance(message, str | bytes):
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        await self._channel.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket with `code` (1000, 1001, 1008, 1011, or 3000-4999 of your own)."""
        if not (code in (1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code <= 4999):
            raise ValueError(f"{code} is not a close code a server may send")
        await self._channel.close(code, reason)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except WebSocketClosed:
            raise StopAsyncIteration from None

    def _check_accepted(self) -> None:
        if not self._accepted:
            raise RuntimeError("call `await ws.accept()` before sending or receiving")
