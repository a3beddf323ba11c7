"""The warm pool: pre-started watchdogs with no function, shared by a project's functions.

A cold start on a fresh container costs a container start (~90 ms here) and a
Python start with the watchdog's imports (~60-80 ms). A warm watchdog has paid
both already: at a cold start the gateway takes one, gives it the function's
limits (`ContainerBackend.assign_warm`), sends it the function's code, secrets
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

The pool never holds more than `size` watchdogs, counting the ready ones, the
ones being made, and the ones handed to a start that has not yet given them a
function (`to_start`). A watchdog that fails at any step keeps its place until
its container is removed, so failures under pressure (an engine refusing calls,
no file descriptors left) never grow the pool. Every container it makes is
tracked until it is ready, handed over or removed (runtime/reconcile.py).
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

from runtime.backends.base import ContainerBackend, Limits, Replica, ReplicaSpec
from runtime.errors import ReplicaStartError
from runtime.images import tar_files
from runtime.reconcile import Removals
from runtime.replica_client import ReplicaClient
from runtime.watchdog import wire

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
    settings: wire.InitSettings = {
        "function": spec.function,
        "handler_file": spec.handler_file,
        "handler_name": spec.handler_name,
        "environment": dict(spec.environment),
    }
    files = {name: content for name, content in code.items() if not name.endswith("/.keep")}
    files[wire.INIT_SETTINGS] = json.dumps(settings).encode()
    for name, path in spec.secret_files.items():
        with open(path, "rb") as secret:
            files[f"{wire.INIT_SECRETS}{name}"] = secret.read()
    return tar_files(files)


def fits(code: Mapping[str, bytes]) -> bool:
    return sum(len(content) for content in code.values()) <= MAX_CODE_BYTES


FIXED_LIMITS = frozenset({"gvisor"})
"""Isolations whose runtime cannot change a running container's limits (runsc has no
`update`): their warm watchdogs are made with a function's own limits, a pool per set."""

PoolKey = tuple[str, Limits | None]


def pool_key(isolation: str, limits: Limits) -> PoolKey:
    """Which warm pool a function with `isolation` and `limits` starts from."""
    return (isolation, limits if isolation in FIXED_LIMITS else None)


def to_start(size: int, ready: int, starting: int, handing: int, removing: int) -> int:
    """How many warm watchdogs a refill starts: what `size` leaves once the ready ones,
    the ones on their way, the ones being handed to a start and the failed ones not yet
    removed are counted. Waiting starts never add to it: they get the next ready."""
    return max(0, size - ready - starting - handing - removing)


class WarmPool:
    def __init__(
        self,
        backend: ContainerBackend,
        client: ReplicaClient,
        size: int,
        image: str,
        limits: Limits,
        code_mounts: Sequence[tuple[str, str]] = (),
        removals: Removals | None = None,
        *,
        base: str = "",
        isolation: str = "container",
    ) -> None:
        self.size = size
        self.isolation = isolation
        """What its watchdogs run under: only functions with this isolation start here."""
        self.image = image
        self.base = base
        """The base image `image` was built on: only functions on it can start here."""
        self.limits = limits
        """What warm watchdogs start under: a function with the same limits skips an update."""
        self.code_mounts = tuple(code_mounts)
        """Development: the code directories every warm watchdog mounts (host, container)."""
        self._backend = backend
        self._client = client
        self._removals = removals if removals is not None else Removals(backend)
        self._ready: list[Replica] = []
        self._waiting: collections.deque[asyncio.Future[Replica | None]] = collections.deque()
        self._making = 0
        """Watchdogs on their way."""
        self._removing = 0
        """Watchdogs that failed (on their way or in a start), until their container is gone."""
        self._handing = 0
        """Watchdogs handed to a start (or to its waiter) and not yet given a function."""
        self._made: set[str] = set()
        """Containers being made whose id the engine has given (tracked, not yet ready)."""
        self._assigning: set[str] = set()
        """Taken watchdogs being given a function (tracked until the start has them)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._failing = False
        self._retry_timer: asyncio.TimerHandle | None = None

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def held(self) -> int:
        """Watchdogs counted against `size`: ready, on their way, being handed over."""
        return len(self._ready) + self._making + self._handing + self._removing

    def container_ids(self) -> set[str]:
        """Every container this pool is responsible for now (for the reconcile)."""
        return {r.id for r in self._ready} | self._made | self._assigning

    def fill(self) -> None:
        """Start warm watchdogs until `size` are ready, on their way or being handed over."""
        if self._closed or self._failing:
            return
        wanted = to_start(self.size, len(self._ready), self._making, self._handing, self._removing)
        for _ in range(wanted):
            self._making += 1
            task = asyncio.get_running_loop().create_task(self._make_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(
        self, spec: ReplicaSpec, code: Mapping[str, bytes], *, wait: float | None = None
    ) -> tuple[Replica, dict[str, float]] | None:
        """Take a warm watchdog and make it a replica of `spec`; None when none came.

        Returns the replica, now the caller's, and where the time went. Raises
        FunctionUnavailable when the handler fails to import and FaasError when the
        watchdog cannot take the function; it is removed in either case, and when the
        caller is cancelled.
        """
        began = time.perf_counter()
        taken = await self._take(TAKE_WAIT if wait is None else wait)
        if taken is None:
            return None
        # From here to the return there is an owner for `taken` at every step.
        replica, phases = await self._start_on(taken, spec, code)
        return replica, {"wait_ms": round((phases.pop("taken") - began) * 1000, 1), **phases}

    async def _take(self, wait: float) -> Replica | None:
        """A ready warm watchdog (counted in `_handing`), waiting up to `wait` seconds for
        one being made (quicker than a container start of its own)."""
        if self._ready:
            self._handing += 1
            return self._ready.pop(0)
        if self._closed or self._failing:
            return None
        self.fill()
        if not self._making:
            return None  # none on its way (the pool's places are held by failed ones)
        waiter: asyncio.Future[Replica | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
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
                if handed is not None:  # handed over just as we gave up (or were cancelled)
                    self._handing -= 1
                    self._hand_over(handed)

    def _hand_over(self, replica: Replica) -> None:
        """A ready warm watchdog goes to the oldest waiting start, else to the pool."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self._handing += 1
                waiter.set_result(replica)
                return
        if self._closed:
            self._removals.remove(replica.id, why="the warm pool is closed")
            return
        self._ready.append(replica)

    async def _start_on(
        self, replica: Replica, spec: ReplicaSpec, code: Mapping[str, bytes]
    ) -> tuple[Replica, dict[str, float]]:
        """Make a taken warm watchdog a replica of `spec`: its limits, then its code."""
        taken_at = time.perf_counter()
        self._assigning.add(replica.id)
        handing = True
        try:
            archive = init_archive(spec, code)
            assigned = await self._backend.assign_warm(replica, spec)
            assigned_at = time.perf_counter()
            # Renamed after its function: it no longer counts against the pool's size.
            handing = False
            self._handing -= 1
            self.fill()
            await self._client.init(assigned, archive)
        except BaseException as exc:
            self._assigning.discard(replica.id)
            if handing:  # a watchdog that failed keeps its place until it is gone
                self._handing -= 1
                self._removing += 1
            self._removals.remove(
                replica.id,
                why=f"a warm start of {spec.function} failed: {type(exc).__name__}",
                then=self._removed if handing else None,
            )
            raise
        self._assigning.discard(replica.id)
        phases = {
            "taken": taken_at,
            "assign_ms": round((assigned_at - taken_at) * 1000, 1),
            "init_ms": round((time.perf_counter() - assigned_at) * 1000, 1),
        }
        return assigned, phases

    async def _make_one(self) -> None:
        replica_id: str | None = None
        try:
            created = await self._backend.create_warm(
                self.image, secrets.token_urlsafe(32), self.limits, self.code_mounts, self.isolation
            )
            replica_id = created.id
            self._made.add(replica_id)
            replica = await self._backend.start(created)
            loop = asyncio.get_running_loop()
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except BaseException as exc:
            self._making -= 1
            if replica_id is not None:  # it keeps its place in the pool until it is gone
                self._made.discard(replica_id)
                self._removing += 1
                self._removals.remove(
                    replica_id,
                    why=f"a warm watchdog did not start: {type(exc).__name__}",
                    then=self._removed,
                )
            if not isinstance(exc, Exception):
                raise
            if self._closed:
                return
            log.warning(
                "a warm watchdog did not start",
                extra={"error": str(exc) or type(exc).__name__},
            )
            self._fail_for_a_while()
            return
        self._made.discard(replica.id)
        self._making -= 1
        self._hand_over(replica)
        self.fill()

    def _removed(self) -> None:
        """A watchdog that failed is gone: its place is free."""
        self._removing -= 1
        self.fill()

    def _fail_for_a_while(self) -> None:
        """Stop making warm watchdogs for RETRY_DELAY; waiting starts take the ordinary path."""
        self._failing = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if self._retry_timer is None:
            self._retry_timer = asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        self._failing = False
        self.fill()

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._backend.status(replica.id)
        if status is None or not status.running:
            raise ReplicaStartError(f"warm watchdog {replica.name} exited before it was ready")

    async def close(self) -> None:
        """Stop making warm watchdogs and remove the ready ones."""
        self._closed = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        ready, self._ready = self._ready, []
        removals = [self._removals.remove(r.id, why="the warm pool is closed") for r in ready]
        await asyncio.gather(*removals, return_exceptions=True)
