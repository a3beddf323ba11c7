"""The warm pool: pre-started watchdogs with no function, shared by a project's functions.

A cold start on a fresh container costs a container start (~90 ms here) and a
Python start with the watchdog's imports (~60-80 ms). A warm watchdog has paid
both already: at a cold start the gateway takes one, gives it the function's
limits (`WarmPoolBackend.assign_warm`), sends it the function's code, secrets
and settings in one request (`ReplicaClient.init`), and calls it once its
handler is imported: a few tens of milliseconds.

Warm watchdogs belong to the project, not to any function: a function at zero
holds no process. Each is used once (it keeps the function it was given until
it stops) and the pool starts a successor in the background. A function whose
code cannot be sent (over 8 MiB with its requirements, or on another base image)
and any start while the pool is empty take the ordinary path.

In development the code is not sent: every warm watchdog mounts the project's
code directories read-only where each function's own replica would, so a
saved file reaches it as it reaches any replica.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence

from runtime.backends.base import Limits, Replica, ReplicaSpec, WarmPoolBackend
from runtime.errors import FaasError, ReplicaStartError
from runtime.images import tar_files
from runtime.replica_client import ReplicaClient

log = logging.getLogger("faas.warm")

READY_TIMEOUT = 30.0
RETRY_DELAY = 5.0
"""After a warm watchdog failed to start, wait this long before making the next."""
TAKE_WAIT = 2.0
"""How long a start waits for a warm watchdog being made (~0.3-0.6 s) before it takes
the ordinary path (a container start of its own, no quicker)."""
MAX_CODE_BYTES = 8 * 1024 * 1024
"""Code and requirements larger than this go the ordinary way: a warm watchdog keeps
them in memory (tmpfs), counted against the function's memory limit."""


def init_archive(spec: ReplicaSpec, code: Mapping[str, bytes]) -> bytes:
    """What a warm watchdog is sent: init.json, the code under app/, secrets under secrets/."""
    settings = {
        "function": spec.function,
        "handler_file": spec.handler_file,
        "handler_name": spec.handler_name,
        "environment": dict(spec.environment),
    }
    files = {name: content for name, content in code.items() if not name.endswith("/.keep")}
    files["init.json"] = json.dumps(settings).encode()
    for name, path in spec.secret_files.items():
        with open(path, "rb") as secret:
            files[f"secrets/{name}"] = secret.read()
    return tar_files(files)


def fits(code: Mapping[str, bytes]) -> bool:
    return sum(len(content) for content in code.values()) <= MAX_CODE_BYTES


class WarmPool:
    def __init__(
        self,
        backend: WarmPoolBackend,
        client: ReplicaClient,
        size: int,
        image: str,
        limits: Limits,
        code_mounts: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.size = size
        self.image = image
        self.limits = limits
        """What warm watchdogs start under: a function with the same limits skips an update."""
        self.code_mounts = tuple(code_mounts)
        """Development: the code directories every warm watchdog mounts (host, container)."""
        self._backend = backend
        self._client = client
        self._ready: list[Replica] = []
        self._waiting: collections.deque[asyncio.Future[Replica | None]] = collections.deque()
        self._making = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failing = False

    @property
    def ready(self) -> int:
        return len(self._ready)

    def fill(self) -> None:
        """Start warm watchdogs until `size`, and one for each waiting start, are ready or
        on their way."""
        wanted = self.size + len(self._waiting)
        while not self._closed and not self._failing and self.ready + self._making < wanted:
            self._making += 1
            task = asyncio.get_running_loop().create_task(self._make_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def take(self, wait: float = TAKE_WAIT) -> Replica | None:
        """A warm watchdog, now the caller's to assign or stop.

        When none is ready, waits up to `wait` seconds for one being made (quicker
        than a container start of its own); None when there is none by then.
        """
        if self._ready:
            replica = self._ready.pop(0)
            self.fill()
            return replica
        if self._closed or self._failing:
            return None
        waiter: asyncio.Future[Replica | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self.fill()
        taken: Replica | None = None
        try:
            async with asyncio.timeout(wait):
                taken = await waiter
            return taken
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)
            if taken is None and waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:  # handed over just as we gave up
                    self._hand_over(handed)

    def _hand_over(self, replica: Replica) -> None:
        """A ready warm watchdog goes to the oldest waiting start, else to the pool."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(replica)
                return
        self._ready.append(replica)

    async def start_on(
        self, replica: Replica, spec: ReplicaSpec, code: Mapping[str, bytes]
    ) -> tuple[Replica, dict[str, float]]:
        """Make a taken warm watchdog a replica of `spec`: its limits, then its code.

        Returns the replica and where the time went. Raises FunctionUnavailable when
        the handler fails to import and FaasError when the watchdog cannot take the
        function; it is stopped in either case.
        """
        began = time.perf_counter()
        try:
            assigned = await self._backend.assign_warm(replica, spec)
            assigned_at = time.perf_counter()
            await self._client.init(assigned, init_archive(spec, code))
        except BaseException:
            await asyncio.shield(self._backend.stop(replica.id, grace=0))
            raise
        phases = {
            "assign_ms": round((assigned_at - began) * 1000, 1),
            "init_ms": round((time.perf_counter() - assigned_at) * 1000, 1),
        }
        return assigned, phases

    async def _make_one(self) -> None:
        replica: Replica | None = None
        try:
            created = await self._backend.create_warm(
                self.image, secrets.token_urlsafe(32), self.limits, self.code_mounts
            )
            replica = await self._backend.start(created)
            loop = asyncio.get_running_loop()
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except BaseException as exc:
            self._making -= 1
            if replica is not None:
                await asyncio.shield(self._backend.stop(replica.id, grace=0))
            if not isinstance(exc, FaasError):
                raise
            log.warning("a warm watchdog did not start", extra={"error": str(exc)})
            self._fail_for_a_while()
            return
        self._making -= 1
        if self._closed:
            await self._backend.stop(replica.id, grace=0)
            return
        self._hand_over(replica)

    def _fail_for_a_while(self) -> None:
        """Stop making warm watchdogs for RETRY_DELAY; waiting starts take the ordinary path."""
        self._failing = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry)

    def _retry(self) -> None:
        self._failing = False
        self.fill()

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._backend.status(replica.id)
        if status is None or not status.running:
            raise ReplicaStartError(f"warm watchdog {replica.name} exited before it was ready")

    async def close(self) -> None:
        """Stop making warm watchdogs and stop the ready ones."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        ready, self._ready = self._ready, []
        await asyncio.gather(
            *(self._backend.stop(r.id, grace=0) for r in ready), return_exceptions=True
        )
