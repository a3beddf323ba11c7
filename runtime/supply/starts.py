"""Starting one function's containers: warm starts, its own containers, readiness, rolls.

A start takes a watchdog from the warm pool of the function's kind
(runtime/warm_pool.py, runtime/warm_kinds.py); when none is ready or on its
way, or the function cannot start warm (warm pools off, its own code over
8 MiB), it creates and starts a container of its own. Nothing is made ahead for
one function: at zero it holds no container and no process.

Every container of a start is tracked here from the moment the engine gives
its id (`container_ids`) until it is ready (then its pool's) or removed:
whatever fails after that (the engine, readiness, the import, the caller's
cancellation) hands it to `Removals`, which retries; see runtime/reconcile.py.
Consecutive start failures other than an import error fail the function after
START_FAILURES_BEFORE_FAILED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from runtime.backends.base import DEFAULT_PIDS, ContainerBackend, Limits, Replica
from runtime.errors import FunctionUnavailable, ReplicaStartError
from runtime.pool import FunctionPool
from runtime.reconcile import Removals
from runtime.replica_client import ReplicaClient
from runtime.supply.base import Recipe
from runtime.warm_kinds import WarmKind
from runtime.warm_pool import WarmPool

log = logging.getLogger("faas.pool")

READY_TIMEOUT = 30.0
START_FAILURES_BEFORE_FAILED = 3
"""Consecutive replica start failures (not import errors) after which the function is failed."""
WARM_ATTEMPTS = 2
"""Warm watchdogs a start tries before it starts a container of its own."""


class ContainerStarts:
    """One function's container starts (see the module docstring)."""

    def __init__(
        self,
        pool: FunctionPool,
        backend: ContainerBackend,
        client: ReplicaClient,
        removals: Removals,
    ) -> None:
        self.pool = pool
        self.recipe: Recipe | None = None
        """What its replicas are made from; None until its image is built."""
        self.warm_pools: Mapping[WarmKind, WarmPool] = {}
        """The project's warm pools by kind, once they run (`ContainerSupply.start`)."""
        self.kind: WarmKind | None = None
        """Which warm pool it starts from (set with its recipe)."""
        self.warm_code: Mapping[str, bytes] | None = None
        """The code a warm watchdog is sent (`app/...`; none in development, where warm
        watchdogs mount the code); None: it cannot start on one."""
        self.replacing = 0
        """Of `pool.starting`, replicas that replace running ones (a roll): not new capacity."""
        self._backend = backend
        self._client = client
        self._removals = removals
        self._pending: set[str] = set()
        """Containers of starts under way, once the engine has given their id."""
        self._failures = 0

    @property
    def warm(self) -> WarmPool | None:
        """The warm pool of this function's kind, if it runs."""
        return self.warm_pools.get(self.kind) if self.kind is not None else None

    @property
    def starts_warm(self) -> bool:
        warm, recipe = self.warm, self.recipe
        if warm is None or self.warm_code is None or recipe is None:
            return False
        return recipe.code_mount is None or recipe.code_mount in warm.spec.code_mounts

    @property
    def own_limits(self) -> Limits:
        spec = self.pool.spec
        return Limits(spec.memory, spec.cpus, DEFAULT_PIDS)

    def container_ids(self) -> set[str]:
        """Every container this function is responsible for now (for the reconcile): its
        pool's replicas (ready, set aside, draining) and starts under way."""
        return {h.replica.id for h in self.pool.holds()} | self._pending

    # -- starts --------------------------------------------------------------------

    async def start(self) -> None:
        """Start one replica and put it to work once its watchdog answers ready.

        Never raises for a failed start (it is logged and counted); every container
        it made is tracked or being removed when it returns, cancelled or not.
        """
        if self.recipe is None:
            return
        began = time.perf_counter()
        if self.starts_warm:
            for _ in range(WARM_ATTEMPTS):  # one may have died while it waited
                started = await self._start_warm()
                if started is None:
                    break  # none came in time: a container of its own
                if started:
                    return
        await self._start_container(began)

    async def _start_warm(self) -> bool | None:
        """Start on a warm watchdog: True when started (or the function failed), False
        when the watchdog could not take it, None when none came."""
        warm, code, recipe, pool = self.warm, self.warm_code, self.recipe, self.pool
        assert warm is not None and code is not None and recipe is not None
        began = time.perf_counter()
        # Counted while it waits for a warm watchdog too, or the autoscaler would start
        # another for the same demand.
        pool.starting += 1
        try:
            started = await warm.start(recipe.replica_spec(pool.spec), code)
        except FunctionUnavailable as exc:
            self._failed_for_good(str(exc), exc.detail)
            return True
        except Exception as exc:
            log.warning(
                "warm watchdog unusable",
                extra={"function": pool.name, "error": str(exc) or type(exc).__name__},
            )
            return False
        finally:
            pool.starting -= 1
        if started is None:
            return None
        replica, phases = started
        # The warm pool tracked it up to here; from here it is this function's.
        if self._ready(replica, time.perf_counter() - began, phases):
            pool.observers.replica_started(replica)
        return True

    async def _start_container(self, began: float) -> None:
        """A container of its own; `began`: when the start began (it may have tried warm
        watchdogs first: the cold start counts that time too, as `warm_ms`)."""
        pool = self.pool
        pool.starting += 1
        creating = time.perf_counter()
        replica_id: str | None = None
        try:
            assert self.recipe is not None
            created = await self._backend.create(self.recipe.replica_spec(pool.spec))
            replica_id = created.id
            self._pending.add(replica_id)
            created_at = time.perf_counter()
            replica = await self._backend.start(created)
            started_at = time.perf_counter()
            pool.observers.replica_started(replica)
            loop = asyncio.get_running_loop()
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except BaseException as exc:
            if replica_id is not None:
                self._pending.discard(replica_id)
                why = f"a start of {pool.name} failed: {type(exc).__name__}"
                self._removals.remove(replica_id, why=why)
            if not isinstance(exc, Exception):
                raise  # cancelled: the container is being removed
            self._start_failed(exc)
            return
        finally:
            pool.starting -= 1
        self._pending.discard(replica.id)
        ready_at = time.perf_counter()
        self._failures = 0
        phases = {
            "create_ms": round((created_at - creating) * 1000, 1),
            "start_ms": round((started_at - created_at) * 1000, 1),
            "ready_ms": round((ready_at - started_at) * 1000, 1),
        }
        if creating - began >= 0.001:
            phases["warm_ms"] = round((creating - began) * 1000, 1)
        self._ready(replica, ready_at - began, phases)

    def _start_failed(self, exc: Exception) -> None:
        if isinstance(exc, FunctionUnavailable):
            self._failed_for_good(str(exc), exc.detail)
            return
        self._failures += 1
        log.warning(
            "replica failed to start",
            extra={
                "function": self.pool.name,
                "error": str(exc) or type(exc).__name__,
                "attempt": self._failures,
            },
        )
        if self._failures >= START_FAILURES_BEFORE_FAILED:
            # callers learn that, not the engine's words (paths, container names): those
            # are logged above and shown by the admin API
            reason = f"its replicas failed to start {self._failures} times in a row"
            self._failed_for_good(reason, str(exc) or type(exc).__name__)

    def _failed_for_good(self, reason: str, detail: str | None = None) -> None:
        """Fail the function; once the failure is cleared, starts are counted afresh."""
        self._failures = 0
        self.pool.mark_failed(reason, detail)

    def _ready(self, replica: Replica, cold_start: float, phases: dict[str, float]) -> bool:
        """A started replica answered ready: put it to work. False when its pool is closed
        (the function was removed or the gateway stops): it is removed instead."""
        if self.pool.add(replica, cold_start, phases) is None:
            self._removals.remove(replica.id, why=f"{self.pool.name} is shutting down")
            return False
        return True

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._backend.status(replica.id)
        if status is None or not status.running:
            tail = (await self._backend.logs(replica.id, tail=20)).strip()
            code = status.exit_code if status else None
            reason = f"replica {replica.name} exited with code {code} before it was ready"
            if tail:
                reason += f"; its last output:\n{tail}"
            raise ReplicaStartError(reason)

    # -- replacing and closing ---------------------------------------------------------

    async def roll(self) -> None:
        """Replace every replica (new image or settings): start new ones, then drain the old.

        Calls keep going to the old replicas until their successors are ready.
        """
        old = list(self.pool.replicas)
        self.replacing += len(old)
        try:
            await asyncio.gather(*(self.start() for _ in old))
        finally:
            self.replacing -= len(old)
        for handle in old:
            self.pool.take_out(handle)
