"""The HTTP hop from the platform to a replica's watchdog.

One pooled HTTP/1.1 keep-alive client for all replicas. Request and response
bodies stream through without being buffered whole. Transport failures are
translated here into the platform's errors, so callers never see httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from runtime.backends.base import Replica
from runtime.errors import FunctionUnavailable, InvocationTimeout, ReplicaUnreachable
from runtime.invocation import Invocation, InvocationResult

AliveCheck = Callable[[Replica], Awaitable[None]]
"""Raises when a replica has exited; called while waiting for readiness."""

TIMEOUT_GRACE = 2.0
"""The watchdog enforces the function timeout itself; we wait this much longer for its 504."""


class ReplicaClient:
    def __init__(self, max_connections: int = 512) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            timeout=httpx.Timeout(10.0),
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(
        self, replica: Replica, invocation: Invocation, time_limit: float
    ) -> InvocationResult:
        headers = [
            *invocation.headers,
            (b"x-faas-token", replica.token.encode()),
            (b"x-faas-call-id", invocation.call_id.encode()),
            (b"x-faas-timeout", f"{time_limit:g}".encode()),
        ]
        url = httpx.URL(
            scheme="http",
            host=replica.address.rpartition(":")[0],
            port=int(replica.address.rpartition(":")[2]),
            path=invocation.path,
            query=invocation.query,
        )
        request = self._client.build_request(
            invocation.method,
            url,
            headers=headers,
            content=invocation.body,
            timeout=httpx.Timeout(time_limit + TIMEOUT_GRACE, connect=2.0),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise InvocationTimeout(
                f"{invocation.function} did not answer within {time_limit:g}s"
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise ReplicaUnreachable(
                f"replica {replica.name} of {invocation.function} is unreachable: "
                f"{type(exc).__name__}"
            ) from None
        return InvocationResult(
            status=response.status_code,
            headers=response.headers.raw,
            body=_stream(response, invocation.function),
            close=response.aclose,
            replica=replica.name,
        )

    async def wait_ready(self, replica: Replica, *, deadline: float, is_alive: AliveCheck) -> None:
        """Poll the watchdog's readiness endpoint until it answers 200.

        Raises FunctionUnavailable when the handler failed to import (the
        watchdog answers 503 with the reason), and ReplicaUnreachable when the
        replica exits or is not ready by `deadline` (loop time).
        """
        loop = asyncio.get_running_loop()
        url = f"http://{replica.address}/_/ready"
        headers = {"x-faas-token": replica.token}
        delay = 0.005
        next_liveness_check = loop.time() + 0.5
        while True:
            try:
                response = await self._client.get(url, headers=headers, timeout=2.0)
            except (httpx.TransportError, OSError):
                response = None
            if response is not None:
                if response.status_code == 200:
                    return
                if response.status_code == 503:
                    raise FunctionUnavailable(_failure_reason(response))
            now = loop.time()
            if now >= deadline:
                raise ReplicaUnreachable(f"replica {replica.name} was not ready in time")
            if now >= next_liveness_check:
                next_liveness_check = now + 0.5
                await is_alive(replica)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)


def _failure_reason(response: httpx.Response) -> str:
    try:
        detail = response.json()
    except json.JSONDecodeError:
        return response.text[:500]
    error = str(detail.get("error", "the handler failed to load"))
    where = detail.get("file")
    if where and detail.get("line"):
        where = f"{where}:{detail['line']}"
    return f"{error} ({where})" if where else error


async def _stream(response: httpx.Response, function: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException:
        raise InvocationTimeout(f"{function} stopped sending its response") from None
    except httpx.TransportError:
        raise ReplicaUnreachable(f"{function}'s replica dropped the response midway") from None
