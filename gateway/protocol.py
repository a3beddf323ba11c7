"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools protocol, with the limits a
hostile caller meets and a shorter road for calls.

Limits, on every listener and every request (gateway/limits.py sets them):

- The request head is counted as it arrives. llhttp keeps an unfinished header whole
  in memory, so past `max_header_size` bytes (request line included) the connection
  gets 431 and is closed: nothing more is read or held.
- A head must be complete within `header_timeout` of the connection opening (or of
  the first byte of a later request on a kept-alive connection), else 408 and close.
  A kept-alive connection idle between requests is closed silently by uvicorn's
  keep-alive timeout instead: an answer there could cross a request the client is
  sending at that moment and be taken as its answer.
- Past `max_connections` open connections a new one gets 503 and is closed at once.
- Every answer made here (400 for what llhttp refuses, 408, 431, 503, and 500 when the
  application fails before answering) is JSON with `X-Call-Id`, and closes.

The shorter road: a plain `/function/...` call (nothing in it that the middleware in
front of the routes would act on) goes straight to the function endpoint, and its
answer leaves in one `transport.write`: status line, headers and body together, where
the stock protocol writes the head and the body separately (one more system call and
TCP segment per call, the largest single cost in the gateway's profile).

This reaches into uvicorn's private request cycle. `HOOKS` lists what it relies on;
`missing_hooks()` names whatever a uvicorn release removed, `protocol_for` refuses to
serve then, and tests/unit/test_protocol.py fails. pyproject.toml pins the tested range.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from starlette.types import ASGIApp, Message
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from gateway.errors import error_document
from gateway.fastpath import function_target
from gateway.limits import ListenerLimits
from gateway.proxy import new_call_id

log = logging.getLogger("faas.gateway")

DECLINED_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
"""Headers uvicorn's proxy-headers middleware reads: calls carrying them take the full app."""

HOOKS: dict[str, tuple[str, ...]] = {
    "HttpToolsProtocol methods": (
        "_start_asgi_task",
        "_should_upgrade",
        "_unset_keepalive_if_required",
        "connection_made",
        "connection_lost",
        "data_received",
        "handle_websocket_upgrade",
        "on_headers_complete",
        "on_message_complete",
    ),
    "HttpToolsProtocol attributes": (
        "app",
        "connections",
        "cycle",
        "flow",
        "loop",
        "parser",
        "pipeline",
        "timeout_keep_alive_task",
        "transport",
    ),
    "RequestResponseCycle methods": ("run_asgi", "send", "send_500_response"),
    "RequestResponseCycle attributes": (
        "chunked_encoding",
        "default_headers",
        "disconnected",
        "expected_content_length",
        "flow",
        "keep_alive",
        "message_event",
        "on_response",
        "response_complete",
        "response_started",
        "scope",
        "transport",
        "waiting_for_100_continue",
    ),
}
"""The private parts of uvicorn's httptools protocol this module uses."""


GATHER_LIMIT = 64 * 1024
"""Bodies past this go out as they are, framing beside them, not copied into one buffer."""


def missing_hooks() -> list[str]:
    """What of `HOOKS` this uvicorn lacks, by name; empty when all is there."""
    missing = [
        f"HttpToolsProtocol.{name}"
        for name in HOOKS["HttpToolsProtocol methods"]
        if not callable(getattr(HttpToolsProtocol, name, None))
    ]
    missing += [
        f"RequestResponseCycle.{name}"
        for name in HOOKS["RequestResponseCycle methods"]
        if not callable(getattr(RequestResponseCycle, name, None))
    ]
    start = getattr(HttpToolsProtocol, "_start_asgi_task", None)
    if start is not None and list(inspect.signature(start).parameters) != ["self", "cycle", "app"]:
        missing.append(f"HttpToolsProtocol._start_asgi_task(self, cycle, app), not {start}")
    for kind, made in (("HttpToolsProtocol", _protocol_instance), ("RequestResponseCycle", _cycle)):
        try:
            instance = made()
        except Exception as exc:  # a changed constructor: name it, whatever it raised
            missing.append(f"{kind}() as constructed here ({type(exc).__name__}: {exc})")
            continue
        missing += [
            f"{kind}().{name}"
            for name in HOOKS[f"{kind} attributes"]
            if not hasattr(instance, name)
        ]
    return missing


def _protocol_instance() -> object:
    config = Config(app=_no_app, log_config=None, lifespan="off", ws="none")
    loop = asyncio.new_event_loop()
    try:
        return HttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    finally:
        loop.close()


def _cycle() -> object:
    """A cycle made as uvicorn makes it, with every argument left empty."""
    parameters = list(inspect.signature(RequestResponseCycle).parameters)
    arguments: dict[str, Any] = dict.fromkeys(parameters)
    return RequestResponseCycle(**arguments)


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None


def takes_fast_path(scope: dict[str, Any], methods: frozenset[str]) -> bool:
    """Whether a call can skip the middleware: nothing in it that the middleware acts on."""
    if scope["method"] not in methods or scope.get("http_version") != "1.1":
        return False
    if function_target(scope) is None:
        return False
    for name, _ in scope["headers"]:  # noqa: SIM110 (a generator costs more, on every call)
        if name in DECLINED_HEADERS:
            return False
    return True


def refusal(status: int, message: str) -> bytes:
    """A whole answer made by the protocol itself: JSON, a new call id, and it closes."""
    call_id = new_call_id()
    body = error_document(message, call_id)
    return b"".join(
        (
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            b"x-call-id: %s\r\nconnection: close\r\n\r\n" % call_id.encode(),
            body,
        )
    )


class GatewayCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, whose own 500 (the app failed before answering)
    is JSON with a call id like every other answer."""

    async def send_500_response(self) -> None:
        call_id = new_call_id()
        body = error_document("internal error in the gateway", call_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"x-call-id", call_id.encode()),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class FunctionCycle(GatewayCycle):
    """uvicorn's request/response cycle, writing the head together with the first body part.

    The head is held for at most one turn of the event loop: a body that is not ready
    by then (a streamed answer) does not hold the status and headers back.
    """

    _head: list[bytes]
    _flush: asyncio.Handle | None

    async def send(self, message: Message) -> None:  # type: ignore[override]
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got '{message['type']}'.")
            self.response_started = True
            self.waiting_for_100_continue = False
            self._head = self._encode_head(message["status"], message.get("headers", ()))
            self._flush = asyncio.get_running_loop().call_soon(self._write_head)
            return
        if self.response_complete or message["type"] != "http.response.body":
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}'.")
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        parts = self._head
        self._head = []
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            if body:
                parts += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more_body:
                parts.append(b"0\r\n\r\n")
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            parts.append(body)
        if len(body) > GATHER_LIMIT:
            self.transport.writelines(parts)  # uvloop sends the pieces with one writev
        elif parts:
            self.transport.write(b"".join(parts))
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _write_head(self) -> None:
        self._flush = None
        if self._head and not self.disconnected:
            self.transport.write(b"".join(self._head))
        self._head = []

    def _encode_head(self, status: int, headers: Any) -> list[bytes]:
        """As uvicorn's cycle does: validated headers, framing and `connection: close` added."""
        content = [STATUS_LINE[status]]
        close = False
        for name, value in (*self.default_headers, *headers):
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return content


class Throttled:
    """A warning logged at most once per `every` seconds, with how many were held back."""

    def __init__(self, message: str, every: float = 10.0) -> None:
        self.message = message
        self.every = every
        self._last = -every
        self._held = 0

    def __call__(self, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._held += 1
            return
        log.warning(self.message, extra={**extra, "also_since_last": self._held})
        self._last, self._held = now, 0


@dataclass(frozen=True, slots=True)
class FastRoad:
    app: ASGIApp
    """The function endpoint (gateway.fastpath.FunctionFastPath)."""
    methods: frozenset[str]


class GatewayProtocol(HttpToolsProtocol):
    """One connection to a listener. The class attributes are the listener's settings:
    `protocol_for` makes a subclass per listener, and a reload may replace `limits`."""

    limits: ClassVar[ListenerLimits]
    fast: ClassVar[FastRoad | None] = None
    """Where plain `/function/` calls go past the middleware; None: no shorter road."""
    refused: ClassVar[Throttled]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        """Whether the parser is between requests or inside a request head."""
        self._head_bytes = 0
        self._heads = 0
        """Heads completed on this connection: tells whether a slice finished one."""
        self._head_began: float | None = None
        """When the head being read began (the connection opening, or its first byte);
        None between requests and once the head is whole."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._done_reading = False
        """Answered (or refused at connect): whatever else arrives is dropped unparsed."""
        self._refusal: bytes | None = None
        """The answer that ends this connection, once the response in flight is out."""
        self._over_cap = False

    # -- connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._over_cap = self._done_reading = True  # never counted: answered, closed
            transport.write(refusal(503, "the gateway has too many open connections; retry later"))
            transport.close()
            self.refused(open=len(self.connections), cap=self.limits.max_connections)
            return
        super().connection_made(transport)
        self._head_began = self.loop.time()  # silence counts: the head is due from now
        self._arm_head_timer(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._over_cap:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._done_reading:
            return
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        if self._in_head:
            if self._head_began is None:  # a later request on a kept-alive connection began
                self._head_began = self.loop.time()
                if self._head_timer is None:
                    self._arm_head_timer(self.limits.header_timeout)
            room = self.limits.max_header_size - self._head_bytes
            if len(data) > room:
                self._past_the_limit(data, room)
                return
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parser_refused(exc)

    def _past_the_limit(self, data: bytes, room: int) -> None:
        """Feed what fits; 431 unless that completes the head, else go on with the rest."""
        heads = self._heads
        if room > 0:
            self._feed(data[:room])
        if self._done_reading or self.transport.is_closing():
            return
        if self._heads == heads:
            self._refuse(
                431,
                f"the request head (request line and headers) is over the limit of "
                f"{self.limits.max_header_size} bytes",
            )
            return
        self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parser_refused(exc)

    def _parser_refused(self, exc: Exception) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):
            if self._should_upgrade():
                # `Upgrade: websocket` on a listener with a WebSocket protocol: the head
                # was counted and timed like any other; uvicorn's protocol takes over
                self._done_reading = True
                if self._head_timer is not None:
                    self._head_timer.cancel()
                    self._head_timer = None
                self.handle_websocket_upgrade()
            # any other upgrade is served as a plain request, then closed, since llhttp
            # reads nothing more on this connection
            elif self.cycle is not None:
                self.cycle.keep_alive = False
        elif isinstance(exc, httptools.HttpParserCallbackError):
            self._refuse(400, "invalid HTTP request")
        else:
            self._refuse(400, f"invalid HTTP request: {exc}")

    # -- parser callbacks ----------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        self._head_began = None  # the timer, left running, finds nothing to time out
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        # Counting starts again with the next read: what follows this message in the
        # read being parsed (a pipelined head) goes uncounted, at most one read (256 KiB).
        self._in_head = True
        self._head_bytes = 0

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fast = self.fast
        if fast is not None and app is self.app and takes_fast_path(cycle.scope, fast.methods):  # type: ignore[arg-type]
            cycle.__class__ = FunctionCycle  # same state, the coalescing `send`
            cycle._head, cycle._flush = [], None  # type: ignore[attr-defined]
            app = fast.app
        else:
            cycle.__class__ = GatewayCycle
        super()._start_asgi_task(cycle, app)

    # -- refusals ------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` and close; after the response in flight, if there is one."""
        self._refusal = refusal(status, message)
        self._done_reading = True
        self._in_head = False
        log.debug("request refused", extra={"status": status, "reason": message})
        if self.cycle is not None and not self.cycle.response_complete:
            self.flow.pause_reading()
            self.cycle.on_response = self._close_with_refusal  # once the response is out
            return
        self._close_with_refusal()

    def _close_with_refusal(self) -> None:
        if self.transport.is_closing():
            return
        if not self.pipeline and self._refusal is not None:
            # with requests queued behind, an answer would be taken as theirs: close only
            self.transport.write(self._refusal)
        self.transport.close()

    def _arm_head_timer(self, delay: float) -> None:
        self._head_timer = self.loop.call_later(delay, self._head_due)

    def _head_due(self) -> None:
        """One timer per connection, re-armed only while a head is being read: a call on
        a kept-alive connection costs a clock read, not a timer of its own."""
        self._head_timer = None
        began = self._head_began
        if began is None or not self._in_head or self._done_reading:
            return  # between requests (uvicorn's keep-alive timeout applies) or answered
        timeout = self.limits.header_timeout
        left = began + timeout - self.loop.time()
        if left > 0:
            self._arm_head_timer(left)
        elif not self.transport.is_closing():
            self._refuse(408, f"the request head did not arrive within {timeout:g}s")


def protocol_for(
    limits: ListenerLimits,
    function_app: ASGIApp | None = None,
    methods: frozenset[str] = frozenset(),
) -> type[GatewayProtocol]:
    """A protocol class (uvicorn's `http=`) for one listener.

    With `function_app`, plain calls are handed to it past the middleware.
    """
    missing = missing_hooks()
    if missing:
        raise RuntimeError(
            "this uvicorn lacks what gateway/protocol.py relies on: "
            + ", ".join(missing)
            + "; install the range pinned in pyproject.toml"
        )
    return type(
        "ListenerProtocol",
        (GatewayProtocol,),
        {
            "limits": limits,
            "fast": FastRoad(function_app, methods) if function_app is not None else None,
            "refused": Throttled("connection refused: the listener is at its cap"),
        },
    )
