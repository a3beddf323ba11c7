"""WebSocket calls: `/function/{name}[/{path}]` of a function with `websocket: true`.

The opening handshake passes the same checks as an HTTP call (the function's `auth`
from the request's headers, the per-caller rate limit) before any replica is woken; a
refusal is an HTTP answer (401, 403, 404, 429, ...) with the usual JSON error, sent
instead of the handshake's 101. An accepted socket holds one slot of one replica
(Platform.open_socket) until it closes, and is relayed over a tunnel of its own to
that replica (runtime/tunnel_client.py), checked as strictly as HTTP answers are.

Closing: either side's close code is passed on to the other. A message over the
function's `max_message_size`, either way, closes both with 1009. No message either
way for the function's `timeout` closes both with 1001 (idle); so does the replica's
leaving service (scale-down, a new version, `faas down`), after `LEAVING_GRACE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import headers, tracing
from gateway.access import AccessControl
from gateway.auth import Denied
from gateway.errors import calling, error_response, response_for
from gateway.metrics import Metrics
from gateway.proxy import new_call_id
from gateway.ratelimit import check_rate
from runtime.errors import FaasError, FunctionNotFound
from runtime.invocation import Invocation
from runtime.platform import OpenSocket, Platform
from runtime.spec import FunctionSpec
from runtime.tunnel_client import TunnelBroken
from runtime.watchdog import frames

log = logging.getLogger("faas.gateway")

LEAVING_GRACE = 1.0
"""After its replica leaves service, how long a socket stays open (messages in flight)."""
ACCEPT_GRACE = 2.0
"""Beyond the function's timeout, how long the handler may take to accept or refuse."""
CLOSE_GRACE = 2.0
"""After a close, how long the replica may take to end the call before it is cut."""
NOT_FORWARDED = frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions"}
)
"""The handshake's own headers: they describe the caller's connection to the gateway."""


class Sockets:
    def __init__(self, platform: Platform, access: AccessControl, metrics: Metrics) -> None:
        self.platform = platform
        self.access = access
        self.metrics = metrics
        self.open: set[Relay] = set()

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/function/{name}", self.function_root),
            WebSocketRoute("/function/{name}/{path:path}", self.function_path),
        ]

    async def function_root(self, ws: WebSocket) -> None:
        await self.serve(ws, ws.path_params["name"], "/")

    async def function_path(self, ws: WebSocket) -> None:
        raw = ws.scope.get("raw_path") or ws.scope["path"].encode()
        below = raw.decode("latin-1").removeprefix("/function/").partition("/")[2]
        await self.serve(ws, ws.path_params["name"], "/" + below)

    async def close_all(self, grace: float = LEAVING_GRACE) -> None:
        """The gateway stops: every socket closes with 1001 (before the server's own 1012)."""
        relays = list(self.open)
        for relay in relays:
            relay.leave()
        if relays:
            await asyncio.wait([r.done for r in relays], timeout=grace + CLOSE_GRACE)

    async def serve(self, ws: WebSocket, name: str, path: str) -> None:
        began = time.perf_counter()
        call_id = new_call_id()
        client = ws.client.host if ws.client else "?"
        access = self.access.current
        try:
            function = self.platform.function(name)
            if not function.public:
                raise FunctionNotFound(f"no function named {name!r}")
            calling.set(name)
            caller = await access.guard.authenticate(ws.headers, client, function)
            check_rate(access.limiter, caller)
            if not function.websocket:
                raise Denied(
                    400, f"{name} does not take WebSockets (websocket: true in functions.yaml)"
                )
        except Denied as denied:
            if name in self.platform.pools:
                self.metrics.observe_call(name, denied.status, time.perf_counter() - began)
            await ws.send_denial_response(
                error_response(denied.status, denied.message, call_id, denied.headers)
            )
            return
        except FaasError as exc:
            await ws.send_denial_response(response_for(exc, call_id))
            return
        forwarded = [
            (k, v)
            for k, v in headers.inbound(ws.scope["headers"])
            if k not in NOT_FORWARDED and k not in caller.consumed
        ]
        forwarded, _ = tracing.propagate(forwarded)
        invocation = Invocation(
            function=name,
            method="GET",
            path=path,
            query=ws.scope.get("query_string", b""),
            headers=forwarded,
            body=b"",
            call_id=call_id,
        )
        try:
            opened = await self.platform.open_socket(invocation)
        except (FaasError, Exception) as exc:
            await ws.send_denial_response(response_for(exc, call_id))
            return
        relay = Relay(ws, opened, function, call_id)
        self.open.add(relay)
        gauge = self.metrics.open_websockets.labels(name)
        gauge.inc()
        status = 101
        try:
            status = await relay.run()
        finally:
            gauge.dec()
            self.open.discard(relay)
            opened.close()
            relay.done.set_result(None)
            if status != 101:  # a socket's lifetime is no call duration: refusals only
                self.metrics.observe_call(name, status, time.perf_counter() - began)


class Relay:
    """One accepted socket: the caller's messages to the replica and back."""

    def __init__(self, ws: WebSocket, opened: OpenSocket, spec: FunctionSpec, call_id: str):
        self.ws = ws
        self.opened = opened
        self.tunnel = opened.tunnel
        self.spec = spec
        self.call_id = call_id
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last = time.monotonic()
        self.closing = asyncio.Event()
        self.close_code = frames.GOING_AWAY
        self.close_reason = ""

    def leave(self) -> None:
        self.close_code, self.close_reason = frames.GOING_AWAY, "the gateway is stopping"
        self.closing.set()

    async def run(self) -> int:
        """Handshake, then relay until either side closes; the status for the metrics."""
        ws, spec = self.ws, self.spec
        try:
            async with asyncio.timeout(spec.timeout + ACCEPT_GRACE):
                first = await self.tunnel.receive()
        except TimeoutError:
            await self._deny(504, f"{spec.name} did not accept the WebSocket in time")
            return 504
        except TunnelBroken as exc:
            self._log_broken(exc)
            await self._deny(502, f"{spec.name}'s replica failed while opening the WebSocket")
            return 502
        if first.kind == frames.CLOSE:
            code, _ = frames.parse_close(first.payload)
            if code == frames.INTERNAL_ERROR:
                await self._deny(500, f"{spec.name} failed to open the WebSocket")
                return 500
            await self._deny(403, f"{spec.name} refused the WebSocket (close code {code})")
            return 403
        offered = ws.scope.get("subprotocols", [])
        subprotocol = first.payload.decode("utf-8", "replace") or None
        if first.kind != frames.ACCEPT or (subprotocol and subprotocol not in offered):
            self._log_broken(TunnelBroken(frames.PROTOCOL_ERROR, "no ACCEPT frame first"))
            await self._deny(502, f"{spec.name}'s replica failed while opening the WebSocket")
            return 502
        await ws.accept(subprotocol, headers=[(b"x-call-id", self.call_id.encode())])
        await self._relay()
        return 101

    async def _deny(self, status: int, message: str) -> None:
        await self.ws.send_denial_response(error_response(status, message, self.call_id))

    async def _relay(self) -> None:
        tasks = [
            asyncio.ensure_future(self._upstream()),
            asyncio.ensure_future(self._downstream()),
            asyncio.ensure_future(self._watch()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Either side closed: the replica ends its call (and its connection) on its own.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE):
                await asyncio.shield(self.tunnel.lost)

    async def _upstream(self) -> None:
        """The caller's messages to the replica, until the caller closes."""
        ws, tunnel, limit = self.ws, self.tunnel, self.spec.max_message_size
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", frames.NORMAL)
                reason = message.get("reason") or ""
                if not frames.sendable(code):
                    code, reason = frames.NORMAL, ""  # 1005, 1006: no code, or no close frame
                await tunnel.send(frames.encode_close(code, reason))
                return
            text: str | None = message.get("text")
            payload = text.encode() if text is not None else (message.get("bytes") or b"")
            if len(payload) > limit:
                reason = f"message over {limit} bytes"
                await tunnel.send(frames.encode_close(frames.TOO_BIG, reason))
                await self._close_caller(frames.TOO_BIG, reason)
                return
            await tunnel.send(
                frames.encode(frames.TEXT if text is not None else frames.BINARY, payload)
            )
            self.last = time.monotonic()

    async def _downstream(self) -> None:
        """The replica's messages to the caller, until the replica closes or breaks the rules."""
        ws, tunnel = self.ws, self.tunnel
        while True:
            try:
                frame = await tunnel.receive()
            except TunnelBroken as exc:
                if exc.code != frames.ABNORMAL:
                    self._log_broken(exc)
                code = frames.TOO_BIG if exc.code == frames.TOO_BIG else frames.INTERNAL_ERROR
                await self._close_caller(code, "")
                return
            if frame.kind == frames.CLOSE:
                code, reason = frames.parse_close(frame.payload)
                await self._close_caller(code if code != frames.NO_STATUS else 1000, reason)
                return
            if frame.kind == frames.TEXT:
                await ws.send({"type": "websocket.send", "text": frame.payload.decode()})
            elif frame.kind == frames.BINARY:
                await ws.send({"type": "websocket.send", "bytes": frame.payload})
            else:  # a second ACCEPT
                self._log_broken(TunnelBroken(frames.PROTOCOL_ERROR, "ACCEPT after accepting"))
                await self._close_caller(frames.INTERNAL_ERROR, "")
                return
            self.last = time.monotonic()

    async def _watch(self) -> None:
        """Close both sides when idle too long, or when the replica or the gateway leaves."""
        idle = self.spec.timeout
        leaving = asyncio.ensure_future(self.opened.handle.leaving.wait())
        stopping = asyncio.ensure_future(self.closing.wait())
        try:
            while True:
                left = self.last + idle - time.monotonic()
                if left <= 0:
                    self.close_code, self.close_reason = frames.GOING_AWAY, "idle"
                    break
                await asyncio.wait(
                    (leaving, stopping), timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping.done():
                    break
                if leaving.done():
                    self.close_reason = "the function's replica is leaving service"
                    await asyncio.sleep(LEAVING_GRACE)
                    break
        finally:
            leaving.cancel()
            stopping.cancel()
        await self.tunnel.send(frames.encode_close(self.close_code, self.close_reason))
        await self._close_caller(self.close_code, self.close_reason)

    async def _close_caller(self, code: int, reason: str) -> None:
        with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
            await self.ws.close(code, reason)

    def _log_broken(self, exc: TunnelBroken) -> None:
        log.warning(
            "websocket tunnel broken",
            extra={"call_id": self.call_id, "function": self.spec.name, "error": str(exc)},
        )
