"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with a shorter road for calls.

A plain `/function/...` call (nothing that the middleware in front of the
routes would act on) goes straight to the function endpoint instead of
through uvicorn's proxy-headers middleware, Starlette's error middleware and
the header-size check, and its answer leaves in one `transport.write`: status
line, headers and body together, where the stock protocol writes the head and
the body separately (one more system call and one more TCP segment per call,
which showed as the largest single cost in the gateway's profile).

Anything else, and any call that carries `X-Forwarded-*` headers or headers
over `gateway.max_header_size`, takes the full application exactly as before;
so does everything when uvicorn's protocol lacks the hook used here
(`_start_asgi_task`, uvicorn >= 0.35), in which case the stock protocol serves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from gateway.fastpath import function_target

log = logging.getLogger("faas.gateway")

DECLINED_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
"""Headers uvicorn's proxy-headers middleware reads: calls carrying them take the full app."""


def takes_fast_path(scope: dict[str, Any], methods: frozenset[str], max_header_size: int) -> bool:
    """Whether a call can skip the middleware: nothing in it that the middleware acts on."""
    if scope["method"] not in methods or scope.get("http_version") != "1.1":
        return False
    if function_target(scope) is None:
        return False
    size = 0
    for name, value in scope["headers"]:
        if name in DECLINED_HEADERS:
            return False
        size += len(name) + len(value) + 4
    return size <= max_header_size


class FunctionCycle(RequestResponseCycle):
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
        if parts:
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


def protocol_for(
    function_app: ASGIApp, methods: frozenset[str], max_header_size: int
) -> type[HttpToolsProtocol]:
    """A protocol class (uvicorn's `http=`) that hands plain calls to `function_app`."""
    if not hasattr(HttpToolsProtocol, "_start_asgi_task"):
        log.warning("this uvicorn has no _start_asgi_task: calls take the full application")
        return HttpToolsProtocol

    class GatewayProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            if app is self.app and takes_fast_path(cycle.scope, methods, max_header_size):  # type: ignore[arg-type]
                cycle.__class__ = FunctionCycle  # same state, the coalescing `send`
                cycle._head, cycle._flush = [], None  # type: ignore[attr-defined]
                app = function_app
            super()._start_asgi_task(cycle, app)

    return GatewayProtocol
