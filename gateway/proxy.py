"""Forwarding one HTTP request to a function and streaming its answer back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import headers, tracing
from gateway.errors import error_response, response_for
from gateway.metrics import Metrics
from runtime.errors import FaasError, PayloadTooLarge
from runtime.invocation import AnswerBody, Body, Invocation, InvocationResult, RawHeaders
from runtime.platform import Platform

log = logging.getLogger("faas.gateway")

SMALL_BODY = 64 * 1024
"""Bodies up to this size (with a Content-Length) are read whole: one send instead of a stream."""


_random = random.Random()


def new_call_id() -> str:
    """32 random hex digits. Call ids label calls, they grant nothing: no system call for them."""
    return f"{_random.getrandbits(128):032x}"


class Proxy:
    def __init__(self, platform: Platform, max_body_size: int, metrics: Metrics) -> None:
        self.platform = platform
        self.max_body_size = max_body_size
        self.metrics = metrics

    async def forward(
        self,
        request: Request,
        function: str,
        path: str,
        *,
        body: bytes | None = None,
        strip: frozenset[bytes] = frozenset(),
    ) -> Response:
        """Send the request to `function`; `body` when already read, `strip` credentials used up."""
        began = time.perf_counter()
        call_id = new_call_id()
        response = await self._forward(request, function, path, call_id, body, strip)
        if isinstance(response, ProxiedResponse):
            metrics = self.metrics
            response.on_done = lambda status: self.observe(function, status, began)
            response.on_head = lambda: metrics.observe_first_byte(
                function, time.perf_counter() - began
            )
            response.on_stream = lambda change: metrics.stream_opened(function, change)
        elif function in self.platform.pools:
            self.observe(function, response.status_code, began)
        return response

    def observe(self, function: str, status: int, began: float) -> None:
        self.metrics.observe_call(function, status, time.perf_counter() - began)

    async def _forward(
        self,
        request: Request,
        function: str,
        path: str,
        call_id: str,
        read: bytes | None,
        strip: frozenset[bytes],
    ) -> Response:
        try:
            self.platform.pool(function)
            body = read if read is not None else await self._body(request)
            forwarded = headers.inbound(request.scope["headers"])
            if strip:
                forwarded = [(k, v) for k, v in forwarded if k not in strip]
            forwarded, _trace_id = tracing.propagate(forwarded)
            invocation = Invocation(
                function=function,
                method=request.method,
                path=path,
                query=request.scope.get("query_string", b""),
                headers=forwarded,
                body=body,
                call_id=call_id,
            )
            if isinstance(body, bytes) and not self.platform.pool(function).can_take_now():
                # it will wait in the queue: leave the queue if the caller goes away
                result = await _unless_disconnected(request, self.platform.invoke(invocation))
            else:
                result = await self.platform.invoke(invocation)
        except ClientDisconnect:
            return error_response(499, "client closed the request", call_id)
        except (FaasError, Exception) as exc:
            return response_for(exc, call_id)
        spec = self.platform.pool(function).spec
        return ProxiedResponse(result, call_id, spec.timeout, spec.max_duration)

    async def read_body(self, request: Request) -> bytes:
        """The whole body, refused (PayloadTooLarge) as soon as it passes the limit."""
        body = await self._body(request)
        if isinstance(body, bytes):
            return body
        return b"".join([chunk async for chunk in body])

    async def _body(self, request: Request) -> Body:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise PayloadTooLarge("invalid Content-Length header") from None
            if size > self.max_body_size:
                raise PayloadTooLarge(self._too_large())
            if size <= SMALL_BODY:
                return await request.body()
        elif request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return b""
        return self._limited_stream(request)

    async def _limited_stream(self, request: Request) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > self.max_body_size:
                raise PayloadTooLarge(self._too_large())
            if chunk:
                yield chunk

    def _too_large(self) -> str:
        return f"request body is over the limit of {self.max_body_size} bytes"


async def _unless_disconnected(
    request: Request, call: Coroutine[Any, Any, InvocationResult]
) -> InvocationResult:
    """Run the call, cancelling it (and so leaving the queue) if the caller goes away.

    Only once the body is read: until then `receive` belongs to the body stream.
    """
    task = asyncio.ensure_future(call)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, FaasError):
            await task
        raise ClientDisconnect()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ProxiedResponse(Response):
    """A replica's answer, framed by the gateway: the replica's own framing never reaches
    the caller (gateway/headers.py drops it).

    The first part of the body is read before anything is sent, so an answer that fails
    at once (malformed, too large, a replica that died) still gets a clean error answer.
    An answer that arrived whole goes out with its Content-Length in one send, the usual
    case; a longer one is sent chunked as it arrives, paced by the caller: a caller that
    does not read stops the gateway reading from the replica (runtime/http1.py), and the
    whole answer must be through within the function's timeout. A streamed answer (the
    replica's chunked one: a generator's) has `max_duration` for its whole, and the
    function's timeout between chunks (runtime/http1.py times that).
    """

    def __init__(
        self, result: InvocationResult, call_id: str, time_limit: float, stream_limit: float
    ) -> None:
        self.result = result
        self.call_id = call_id
        self.time_limit = time_limit
        self.stream_limit = stream_limit
        self.status_code = result.status
        self.background = None
        self.raw_headers = [*headers.outbound(result.headers), (b"x-call-id", call_id.encode())]
        self.on_done: Callable[[int], None] = lambda status: None
        self.on_head: Callable[[], None] = lambda: None
        self.on_stream: Callable[[int], None] = lambda change: None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        result = self.result
        status = result.status
        try:
            try:
                first = await anext(result.body, b"")
            except FaasError as exc:
                failure = response_for(exc, self.call_id)
                status = failure.status_code
                await failure(scope, receive, send)
                return
            framing = _framing(status, scope["method"], result.headers, first, result.body)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*self.raw_headers, *framing],
                }
            )
            self.on_head()
            if framing or result.body.at_end:
                await send({"type": "http.response.body", "body": first, "more_body": False})
            else:
                await self._stream(first, receive, send)
        finally:
            await result.close()
            self.on_done(status)

    async def _stream(self, first: bytes, receive: Receive, send: Send) -> None:
        """The rest of a longer answer, stopped when the caller leaves or the time is up."""
        result = self.result
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        streamed = any(name == b"transfer-encoding" for name, _ in result.headers)
        limit = self.stream_limit if streamed else self.time_limit
        try:
            async with asyncio.timeout(limit + STREAM_GRACE):
                if streamed:
                    self.on_stream(1)
                    try:
                        await _relay_stream(first, result.body, gone, send)
                    finally:
                        self.on_stream(-1)
                    return
                # One chunk behind, so the last goes out with more_body=False.
                held = first
                async for chunk in result.body:
                    if gone.done():
                        return
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                    held = chunk
                await send({"type": "http.response.body", "body": held, "more_body": False})
        except FaasError as exc:
            log.warning(
                "answer cut off",
                extra={"call_id": self.call_id, "replica": result.replica, "error": str(exc)},
            )
        except TimeoutError:
            log.warning(
                "answer cut off: not taken by the caller in time",
                extra={"call_id": self.call_id, "replica": result.replica},
            )
        finally:
            gone.cancel()


async def _relay_stream(
    first: bytes, body: AnswerBody, gone: asyncio.Future[None], send: Send
) -> None:
    """A streamed answer: each chunk on as it comes, the caller's leaving noticed at once
    (not at the next chunk, which an event stream may not send for a long while): it
    cancels the wait for the next chunk, and leaving closes the replica's connection."""
    relay = asyncio.current_task()
    assert relay is not None

    def caller_left(_: asyncio.Future[None]) -> None:
        relay.cancel()

    gone.add_done_callback(caller_left)
    try:
        await send({"type": "http.response.body", "body": first, "more_body": True})
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not (gone.done() and not gone.cancelled()):
            raise  # cancelled from elsewhere: the gateway is stopping
        relay.uncancel()
    finally:
        gone.remove_done_callback(caller_left)


STREAM_GRACE = 2.0
"""Beyond the function's timeout, for the last bytes of a streamed answer to leave."""


def _framing(
    status: int, method: str, replica_headers: RawHeaders, first: bytes, body: AnswerBody
) -> RawHeaders:
    """The Content-Length the gateway sends, or [] when the answer goes chunked.

    Answers to HEAD keep the length the replica declared (llhttp let through only one,
    and only digits); 204 and 304 have no body and no length.
    """
    if status in NO_BODY_STATUSES:
        return []
    if method == "HEAD":
        declared = [value for name, value in replica_headers if name == b"content-length"]
        return [(b"content-length", declared[0] if declared else b"0")]
    if body.at_end:
        return [(b"content-length", b"%d" % len(first))]
    return []


NO_BODY_STATUSES = frozenset({204, 304})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
