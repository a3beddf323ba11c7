"""A warm pool: pre-started watchdogs with no function, for one kind of function.

A cold start on a fresh container costs a container start (~90 ms here), a
Python start with the watchdog's imports (~60-80 ms) and the import of the
function's requirements (pandas: ~350 ms). A warm watchdog has paid all three
already: it was made for a kind (runtime/warm_kinds.py), from an image that
holds the kind's requirements, and imported them before it reported ready. At
a cold start the gateway takes one, gives it the function's limits
(`ContainerBackend.assign_warm`), sends it the function's own code, secrets and
settings in one request (`ReplicaClient.init`), and calls it once its handler
is imported: a few tens of milliseconds.

Warm watchdogs belong to the project, not to any function: a function at zero
holds no process. Each is used once (it keeps the function it was given until
it stops) and the pool starts a successor in the background. A function whose
own code is over 8 MiB, and any start that finds the pool empty and nothing on
its way, take the ordinary path.

In development the code is not sent: every warm watchdog mounts the project's
code directories read-only where each function's own replica would, so a
saved file reaches it as it reaches any replica.

How many a pool keeps, `size`, is set from outside (runtime/scaling/warm_sizing.py,
applied by the supply with `resize`) from the cold starts it records
(`arrivals`) and what its watchdogs were measured to hold (`per_watchdog`).
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
from collections.abc import Callable, Mapping

from runtime.backends.base import ContainerBackend, Replica, ReplicaSpec, WarmSpec
from runtime.errors import ReplicaStartError
from runtime.images import tar_files
from runtime.reconcile import Removals
from runtime.replica_client import ReplicaClient
from runtime.scaling import warm_sizing
from runtime.watchdog import wire

log = logging.getLogger("faas.warm")

READY_TIMEOUT = 30.0
RETRY_DELAY = 5.0
"""After a warm watchdog failed to start, wait this long before making the next."""
TAKE_WAIT = 10.0
"""How long a start waits at most for a warm watchdog on its way (~0.3-0.6 s; seconds on
an engine under load, where a container of its own takes longer still). A start waits
only for a watchdog no earlier start waits for (`_take`); a watchdog that fails to start
releases every waiting start (`_fail_for_a_while`)."""
MAX_CODE_BYTES = 8 * 1024 * 1024
"""Code larger than this goes the ordinary way: a warm watchdog keeps it in memory
(tmpfs), counted against the function's memory limit."""
MEASURED_KEPT = 5
"""Memory measurements of its watchdogs a pool keeps; it counts each at their largest."""
REMEASURE_EVERY = 10.0
"""Seconds after which one of the ready watchdogs is measured again (they may grow)."""


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
        spec: WarmSpec,
        removals: Removals | None = None,
        *,
        label: str = "",
        on_demand: Callable[[], None] = lambda: None,
    ) -> None:
        self.size = size
        """How many it keeps now (`resize`)."""
        self.spec = spec
        """What its watchdogs are made of: a function with the same limits skips an update;
        in development, the code directories they mount."""
        self.label = label
        self.arrivals: collections.deque[float] = collections.deque(maxlen=256)
        """When cold starts asked this pool for a watchdog (event-loop time)."""
        self.last_needed = asyncio.get_running_loop().time()
        self.measured: collections.deque[int] = collections.deque(maxlen=MEASURED_KEPT)
        """Bytes its latest ready watchdogs were measured to hold."""
        self._on_demand = on_demand
        self._last_measure = 0.0
        self._backend = backend
        self._client = client
        self._removals = removals if removals is not None else Removals(backend)
        self._ready: list[Replica] = []
        self._waiting: collections.deque[asyncio.Future[Replica | None]] = collections.deque()
        self._making = 0
        """Watchdogs on their way."""
        self._removing = 0
        """Watchdogs that failed (on their way or in a start), until their container is gone."""
        self._shrinking = 0
        """Ready watchdogs removed because the pool shrank, until their container is gone."""
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
    def leaving(self) -> int:
        """Ready watchdogs removed as the pool shrank, whose containers are not gone yet."""
        return self._shrinking

    @property
    def per_watchdog(self) -> int | None:
        """Bytes one watchdog holds, as measured (the largest recent); None: not yet."""
        return max(self.measured) if self.measured else None

    def resize(self, size: int) -> None:
        """Keep `size` from now on: remove ready ones beyond it (the oldest first), or make more."""
        self.size = size
        surplus = min(self.held - self._shrinking - size, len(self._ready))
        if surplus > 0:
            removed, self._ready = self._ready[:surplus], self._ready[surplus:]
            for replica in removed:
                self._shrinking += 1
                self._removals.remove(
                    replica.id, why="the warm pool shrinks", then=self._removed_surplus
                )
        self.fill()
        now = asyncio.get_running_loop().time()
        if self._ready and now - self._last_measure >= REMEASURE_EVERY:
            self._measure(self._ready[0])

    @property
    def held(self) -> int:
        """Watchdogs counted against `size`: ready, on their way, being handed over."""
        return len(self._ready) + self._making + self._handing + self._removing + self._shrinking

    def container_ids(self) -> set[str]:
        """Every container this pool is responsible for now (for the reconcile)."""
        return {r.id for r in self._ready} | self._made | self._assigning

    def fill(self) -> None:
        """Start warm watchdogs until `size` are ready, on their way or being handed over."""
        if self._closed or self._failing:
            return
        wanted = to_start(
            self.size,
            len(self._ready),
            self._making,
            self._handing,
            self._removing + self._shrinking,
        )
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
        self.last_needed = asyncio.get_running_loop().time()
        self.arrivals.append(self.last_needed)
        self._on_demand()  # the pool may grow before this start waits
        taken = await self._take(TAKE_WAIT if wait is None else wait)
        if taken is None:
            return None
        # From here to the return there is an owner for `taken` at every step.
        replica, phases = await self._start_on(taken, spec, code)
        return replica, {"wait_ms": round((phases.pop("taken") - began) * 1000, 1), **phases}

    async def _take(self, wait: float) -> Replica | None:
        """A ready warm watchdog (counted in `_handing`), or one on its way, waiting up to
        `wait` seconds for it (quicker than a container start of its own, which would also
        compete with it for the engine).

        On its way: being made, or the successor of one being handed to another start
        (made as soon as that start has it). None at once when every one on its way is
        already some earlier start's: this start would only wait for the next after them.
        """
        if self._ready:
            self._handing += 1
            return self._ready.pop(0)
        if self._closed or self._failing:
            return None
        self.fill()
        if self._making + self._handing <= len(self._waiting):
            return None  # every watchdog on its way is an earlier start's
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
            created = await self._backend.create_warm(self.spec, secrets.token_urlsafe(32))
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
        if not self.measured:
            self._measure(replica)
        self._hand_over(replica)
        self.fill()

    def _measure(self, replica: Replica) -> None:
        """Learn in the background what `replica` holds, preloaded requirements included."""
        self._last_measure = asyncio.get_running_loop().time()

        async def measure() -> None:
            used = await self._backend.memory_usage(replica.id)
            if used is None and self.measured:
                return  # gone meanwhile: the measurements it has stand
            # An engine that cannot say (no cgroups of its own) has each counted at a guess.
            self.measured.append(used or warm_sizing.UNMEASURED)
            self._on_demand()  # the first measurement may let the pool grow

        task = asyncio.get_running_loop().create_task(measure())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _removed(self) -> None:
        """A watchdog that failed is gone: its place is free."""
        self._removing -= 1
        self.fill()

    def _removed_surplus(self) -> None:
        """A watchdog the pool no longer needed is gone (until then it counts: its memory
        is not free yet); another pool may grow into its memory now."""
        self._shrinking -= 1
        self.fill()
        self._on_demand()

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
