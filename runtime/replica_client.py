"""The HTTP hop from the platform to a replica's watchdog.

One pooled HTTP/1.1 keep-alive client for all replicas. Request and response
bodies stream through without being buffered whole. Transport failures are
translated here into the platform's errors, so callers never see the client.

aiohttp, not httpx: measured under 32 concurrent keep-alive calls, httpx's
connection pool spent most of the gateway's CPU scanning idle connections
(a syscall per connection per request) and re-detecting the async library;
aiohttp's connector and C parser cost a fraction of that.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import yarl
from multidict import CIMultiDict

from runtime.backends.base import Replica
from runtime.errors import FaasError, FunctionUnavailable, InvocationTimeout, ReplicaUnreachable
from runtime.invocation import Invocation, InvocationResult

AliveCheck = Callable[[Replica], Awaitable[None]]
"""Raises when a replica has exited; called while waiting for readiness."""

FAST_POLL = 0.002
FAST_POLL_SECONDS = 3.0
SLOW_POLL = 0.05
"""Readiness is polled every 2 ms while a start is young (a refused connect costs
microseconds, and each millisecond here is a millisecond of cold start), then every 50 ms."""

TIMEOUT_GRACE = 2.0
"""The watchdog enforces the function timeout itself; we wait this much longer for its 504."""


class ReplicaClient:
    def __init__(self, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

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

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self, replica: Replica, invocation: Invocation, time_limit: float
    ) -> InvocationResult:
        headers = CIMultiDict(
            [(key.decode("latin-1"), value.decode("latin-1")) for key, value in invocation.headers]
        )
        headers["x-faas-token"] = replica.token
        headers["x-faas-call-id"] = invocation.call_id
        headers["x-faas-timeout"] = f"{time_limit:g}"
        url = f"http://{replica.address}{invocation.path}"
        if invocation.query:
            url += "?" + invocation.query.decode("latin-1")
        try:
            response = await self._client().request(
                invocation.method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=invocation.body,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=2.0, sock_read=time_limit + TIMEOUT_GRACE
                ),
            )
        except TimeoutError:
            raise InvocationTimeout(
                f"{invocation.function} did not answer within {time_limit:g}s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            body_error = _raised_by_body(exc)
            if body_error is not None:
                raise body_error from None
            raise ReplicaUnreachable(
                f"replica {replica.name} of {invocation.function} is unreachable: "
                f"{type(exc).__name__}"
            ) from None

        async def close() -> None:
            response.release()

        return InvocationResult(
            status=response.status,
            headers=[(k.lower(), v) for k, v in response.raw_headers],
            body=_stream(response, invocation.function),
            close=close,
            replica=replica.name,
        )

    async def reload(self, replica: Replica) -> None:
        """Ask a replica's watchdog to import the handler's current code (development).

        Raises FunctionUnavailable with the file and line when the new code fails to
        load (the replica keeps the previous code), ReplicaUnreachable when it is gone.
        """
        url = f"http://{replica.address}/_/reload"
        try:
            async with self._client().post(
                url,
                headers={"x-faas-token": replica.token},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReplicaUnreachable(f"replica {replica.name}: {type(exc).__name__}") from None
        if response.status != 200:
            raise FunctionUnavailable(_failure_reason(body))

    async def wait_ready(self, replica: Replica, *, deadline: float, is_alive: AliveCheck) -> None:
        """Poll the watchdog's readiness endpoint until it answers 200.

        Raises FunctionUnavailable when the handler failed to import (the
        watchdog answers 503 with the reason), and ReplicaUnreachable when the
        replica exits or is not ready by `deadline` (loop time).
        """
        loop = asyncio.get_running_loop()
        url = f"http://{replica.address}/_/ready"
        headers = {"x-faas-token": replica.token}
        fast_until = loop.time() + FAST_POLL_SECONDS
        next_liveness_check = loop.time() + 0.5
        timeout = aiohttp.ClientTimeout(total=2.0)
        while True:
            try:
                async with self._client().get(url, headers=headers, timeout=timeout) as response:
                    if response.status == 200:
                        return
                    if response.status == 503:
                        raise FunctionUnavailable(_failure_reason(await response.read()))
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            now = loop.time()
            if now >= deadline:
                raise ReplicaUnreachable(f"replica {replica.name} was not ready in time")
            if now >= next_liveness_check:
                next_liveness_check = now + 0.5
                await is_alive(replica)
            await asyncio.sleep(FAST_POLL if now < fast_until else SLOW_POLL)


def _raised_by_body(exc: BaseException) -> FaasError | None:
    """A platform error raised while the request body streamed (e.g. over the size limit).

    aiohttp writes the body in a task of its own and reports its failure as a
    client error; the original is in the exception chain.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, FaasError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _failure_reason(body: bytes) -> str:
    try:
        detail = json.loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace")
    error = str(detail.get("error", "the handler failed to load"))
    where = detail.get("file")
    if where and detail.get("line"):
        where = f"{where}:{detail['line']}"
    return f"{error} ({where})" if where else error


async def _stream(response: aiohttp.ClientResponse, function: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except TimeoutError:
        raise InvocationTimeout(f"{function} stopped sending its response") from None
    except (aiohttp.ClientError, OSError):
        raise ReplicaUnreachable(f"{function}'s replica dropped the response midway") from None
