"""The HTTP hop from the platform to a replica's watchdog.

Invocations go over pooled HTTP/1.1 keep-alive connections of runtime.http1,
a client that does only what this hop needs; readiness polls and reloads use
aiohttp. Request and response bodies stream through without being buffered
whole. Transport failures are translated here into the platform's errors, so
callers never see a client library.

Chosen by measurement (bench/gateway_overhead.py, 32 connections): httpx's
pool spent most of the gateway's CPU scanning idle connections (309 req/s);
aiohttp's client did far better (~3,600 req/s) but still cost per call more
than the rest of the gateway together; see runtime/http1.py for the last step.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from runtime import http1, tunnel_client
from runtime.backends.base import Replica
from runtime.errors import (
    AnswerRejected,
    ClaimLost,
    FaasError,
    FunctionUnavailable,
    InvocationTimeout,
    ReplicaUnreachable,
    import_failed,
)
from runtime.invocation import Invocation, InvocationResult
from runtime.tunnel_client import TunnelConnection
from runtime.watchdog import wire

log = logging.getLogger("faas.replicas")

AliveCheck = Callable[[Replica], Awaitable[None]]
"""Raises when a replica has exited; called while waiting for readiness."""

FAST_POLL = 0.002
FAST_POLL_SECONDS = 3.0
SLOW_POLL = 0.05
"""Readiness is polled every 2 ms while a start is young (a refused connect costs
microseconds, and each millisecond here is a millisecond of cold start), then every 50 ms."""

CONNECT_TIMEOUT = 2.0
TIMEOUT_GRACE = 2.0
"""The watchdog enforces the function timeout itself; we wait this much longer for its 504."""


class ReplicaClient:
    def __init__(
        self,
        max_connections: int = 512,
        max_answer: int = 100 * 1024 * 1024,
        max_request: int | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._limit_line = b""
        self.max_request = max_request
        self._session: aiohttp.ClientSession | None = None
        """For the rare calls (readiness, reload); invocations use the lean `_connections`."""
        self._connections = http1.ConnectionPool(max_answer)

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a session binds to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    limit_per_host=0,
                    keepalive_timeout=30.0,
                    enable_cleanup_closed=False,
                    use_dns_cache=False,
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                trust_env=False,
            )
        return self._session

    @property
    def max_answer(self) -> int:
        """Bytes of one answer's body past which the call fails (gateway.max_response_size)."""
        return self._connections.max_body

    @max_answer.setter
    def max_answer(self, size: int) -> None:
        self._connections.max_body = size

    @property
    def max_request(self) -> int | None:
        """The request body limit replicas are told with each call (gateway.max_body_size)."""
        return self._max_request

    @max_request.setter
    def max_request(self, size: int | None) -> None:
        self._max_request = size
        self._limit_line = b"" if size is None else f"{wire.MAX_BODY_HEADER}: {size}\r\n".encode()

    def lost(self, replica: Replica, why: str) -> int:
        """`replica` is gone without closing its connections (its node died): every call
        on it fails now, as if it had crashed, instead of when TCP gives up on a silent
        peer. Returns how many calls that cut."""
        return self._connections.cut(replica.address, ConnectionAbortedError(why))

    async def close(self) -> None:
        self._connections.close()
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        replica: Replica,
        invocation: Invocation,
        time_limit: float,
        stream_limit: float | None = None,
        *,
        stream_body: bool = False,
    ) -> InvocationResult:
        """Send one call and return the answer once its head is in; the body streams.

        `time_limit` bounds the wait for the head and then for the body; a streamed
        answer has it between body bytes instead, and `stream_limit` for its whole body.
        `stream_body`: the function reads its request body as a stream (wire.BODY_HEADER).

        At most once: the call goes to no other connection once a byte of it was
        written. Only a call that could not connect is `sent=False`, for the platform
        to hand to another replica.
        """
        head = _request_head(replica, invocation, time_limit) + self._limit_line
        if stream_body:
            head += _BODY_STREAM_LINE
        head_only = invocation.method == "HEAD"
        address = replica.address
        function = invocation.function
        try:
            connection = await self._connections.acquire(address, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info(
                "replica unreachable",
                extra={"replica": replica.name, "function": function, "error": repr(exc)},
            )
            raise ReplicaUnreachable(f"{function} could not be reached", sent=False) from None
        try:
            if isinstance(invocation.body, bytes):
                status, headers = await connection.request(
                    head,
                    invocation.body,
                    head_only,
                    time_limit + TIMEOUT_GRACE,
                    time_limit,
                    stream_limit,
                )
            else:
                async with asyncio.timeout(time_limit + TIMEOUT_GRACE):
                    status, headers = await connection.request(
                        head,
                        invocation.body,
                        head_only,
                        body_within=time_limit,
                        stream_within=stream_limit,
                    )
        except TimeoutError:
            self._connections.release(address, connection)
            raise InvocationTimeout(f"{function} did not answer within {time_limit:g}s") from None
        except FaasError:  # the request body failed (over the size limit, ...)
            self._connections.release(address, connection)
            raise
        except OSError as exc:
            self._connections.release(address, connection)
            raise _answer_error(exc, function, replica) from None

        async def close() -> None:
            self._connections.release(address, connection)

        return InvocationResult(
            status=status,
            headers=headers,
            body=_Stream(connection, function, replica),
            close=close,
            replica=replica.name,
        )

    async def open_tunnel(
        self, replica: Replica, invocation: Invocation, time_limit: float, max_message: int
    ) -> TunnelConnection:
        """Start a WebSocket call (runtime/tunnel_client.py): a connection of its own,
        whose frames begin once the head is written. ReplicaUnreachable(sent=False) when
        it could not connect."""
        head = _request_head(replica, invocation, time_limit)
        try:
            return await tunnel_client.connect(replica.address, max_message, head, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info(
                "replica unreachable",
                extra={
                    "replica": replica.name,
                    "function": invocation.function,
                    "error": repr(exc),
                },
            )
            raise ReplicaUnreachable(
                f"{invocation.function} could not be reached", sent=False
            ) from None

    async def reload(self, replica: Replica) -> None:
        """Ask a replica's watchdog to import the handler's current code (development).

        Raises FunctionUnavailable with the file and line when the new code fails to
        load (the replica keeps the previous code), ReplicaUnreachable when it is gone.
        """
        url = f"http://{replica.address}{wire.RELOAD_PATH}"
        try:
            async with self._client().post(
                url,
                headers={wire.TOKEN_HEADER: replica.token},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"replica {replica.name}: {type(exc).__name__}") from None
        if response.status != 200:
            # Not for callers (the previous code keeps serving): the detail is the message.
            detail = _failure_reason(body)
            raise FunctionUnavailable(detail, detail=detail)

    async def claim(self, replica: Replica, token: str) -> None:
        """Claim a shared warm watchdog (Swarm), whose service's key is `replica.token`:
        from now on it takes `token` only. Nothing of a function travels with it.

        Raises ClaimLost when it refuses (claimed by another already), FaasError when it
        answers otherwise, ReplicaUnreachable when it cannot be reached.
        """
        url = f"http://{replica.address}{wire.INIT_PATH}"
        headers = {wire.TOKEN_HEADER: replica.token, wire.CLAIM_HEADER: token}
        try:
            async with self._client().post(
                url,
                data=b"",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=10, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"replica {replica.name}: {type(exc).__name__}") from None
        if response.status in (403, 409):
            # the shared key no longer opens it, or it was claimed: another claimer won
            raise ClaimLost(f"warm replica {replica.name} was claimed by another")
        if response.status != 200:
            raise FaasError(
                f"warm replica {replica.name} refused a claim ({response.status}): "
                f"{_failure_reason(body)}"
            )

    async def init(self, replica: Replica, archive: bytes) -> None:
        """Give a warm watchdog its function: code, secrets and settings in one tar archive.

        Raises FunctionUnavailable when the handler fails to import (the watchdog then
        answers every call with that failure), FaasError when the watchdog refuses
        the archive, and ReplicaUnreachable when it cannot be reached.
        """
        url = f"http://{replica.address}{wire.INIT_PATH}"
        headers = {wire.TOKEN_HEADER: replica.token, "content-type": wire.INIT_CONTENT_TYPE}
        try:
            async with self._client().post(
                url,
                data=archive,
                headers=headers,
                # a watchdog killed since it was ready may not even refuse the connection
                # (gVisor's sandbox leaves no one to answer): give up as a call would
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"replica {replica.name}: {type(exc).__name__}") from None
        if response.status == 503:
            raise FunctionUnavailable(import_failed(replica.function), detail=_failure_reason(body))
        if response.status != 200:
            raise FaasError(
                f"warm replica {replica.name} refused its function ({response.status}): "
                f"{_failure_reason(body)}"
            )

    async def retire(self, replica: Replica) -> None:
        """Tell a claimed warm watchdog to finish and exit (its engine starts a new warm one).

        Raises ReplicaUnreachable when it cannot be reached (it may be gone already)."""
        url = f"http://{replica.address}{wire.RETIRE_PATH}"
        try:
            async with self._client().post(
                url,
                headers={wire.TOKEN_HEADER: replica.token},
                timeout=aiohttp.ClientTimeout(total=10, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"replica {replica.name}: {type(exc).__name__}") from None
        if response.status != 200:
            status = response.status
            raise ReplicaUnreachable(f"replica {replica.name} refused to retire ({status})")

    async def wait_ready(self, replica: Replica, *, deadline: float, is_alive: AliveCheck) -> None:
        """Poll the watchdog's readiness endpoint until it answers 200.

        Raises FunctionUnavailable when the handler failed to import (the
        watchdog answers 503 with the reason), and ReplicaUnreachable when the
        replica exits or is not ready by `deadline` (loop time).
        """
        loop = asyncio.get_running_loop()
        url = f"http://{replica.address}{wire.READY_PATH}"
        headers = {wire.TOKEN_HEADER: replica.token}
        fast_until = loop.time() + FAST_POLL_SECONDS
        next_liveness_check = loop.time() + 0.5
        timeout = aiohttp.ClientTimeout(total=2.0)
        while True:
            try:
                async with self._client().get(url, headers=headers, timeout=timeout) as response:
                    if response.status == 200:
                        return
                    if response.status == 503:
                        raise FunctionUnavailable(
                            import_failed(replica.function),
                            detail=_failure_reason(await response.read()),
                        )
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            now = loop.time()
            if now >= deadline:
                raise ReplicaUnreachable(f"replica {replica.name} was not ready in time")
            if now >= next_liveness_check:
                next_liveness_check = now + 0.5
                await is_alive(replica)
            await asyncio.sleep(FAST_POLL if now < fast_until else SLOW_POLL)


def _failure_reason(body: bytes) -> str:
    """What the watchdog says went wrong, with its file and line: for logs and the admin
    API only (it quotes the function's own exception), bounded (the replica wrote it)."""
    try:
        detail = json.loads(body)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        return body[:500].decode("utf-8", "replace")
    error = str(detail.get("error", "the handler failed to load"))[:4000]
    where = detail.get("file")
    if where and detail.get("line"):
        where = f"{where}:{detail['line']}"
    return f"{error} ({str(where)[:500]})" if where else error


class _Stream:
    """The answer's body, with the replica's failures translated (not an async generator,
    see http1.Connection.next_chunk)."""

    __slots__ = ("_connection", "_function", "_replica")

    def __init__(self, connection: http1.Connection, function: str, replica: Replica) -> None:
        self._connection = connection
        self._function = function
        self._replica = replica

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._connection.next_chunk()
        except http1.BodyTimeout:
            raise InvocationTimeout(f"{self._function} did not finish its answer in time") from None
        except OSError as exc:
            raise _answer_error(exc, self._function, self._replica) from None
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    @property
    def at_end(self) -> bool:
        return self._connection.at_end


def _answer_error(exc: OSError, function: str, replica: Replica) -> ReplicaUnreachable:
    """The platform's error for a replica that failed mid-call; the detail goes to the log."""
    log.warning(
        "replica answer failed",
        extra={"replica": replica.name, "function": function, "error": str(exc) or repr(exc)},
    )
    if isinstance(exc, http1.AnswerTooLarge):
        return AnswerRejected(
            f"{function}'s answer is over the gateway's limit of {exc.limit} bytes "
            "(gateway.max_response_size)"
        )
    if isinstance(exc, http1.ProtocolError):
        return AnswerRejected(f"{function}'s replica sent a malformed answer")
    return ReplicaUnreachable(f"{function}'s replica failed before completing its answer")


_TOKEN_LINE = f"\r\n{wire.TOKEN_HEADER}: ".encode()
_CALL_ID_LINE = f"\r\n{wire.CALL_ID_HEADER}: ".encode()
_TIMEOUT_LINE = f"\r\n{wire.TIMEOUT_HEADER}: ".encode()
_BODY_STREAM_LINE = f"{wire.BODY_HEADER}: {wire.BODY_STREAM}\r\n".encode()


def _request_head(replica: Replica, invocation: Invocation, time_limit: float) -> bytes:
    """Request line and headers, without the framing header and the blank line."""
    target = invocation.path.encode("latin-1")
    if invocation.query:
        target += b"?" + invocation.query
    parts = [
        invocation.method.encode("latin-1"), b" ", target, b" HTTP/1.1\r\nhost: ",
        replica.address.encode(), _TOKEN_LINE, replica.token.encode(),
        _CALL_ID_LINE, invocation.call_id.encode(),
        _TIMEOUT_LINE, f"{time_limit:g}".encode(), b"\r\n",
    ]  # fmt: skip
    for name, value in invocation.headers:
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)
