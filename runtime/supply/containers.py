"""Replicas as containers the gateway creates, starts and stops itself (docker; later podman).

Per function, `ContainerStarts` (runtime/supply/starts.py) keeps a spare
container made ahead and starts replicas on it or on a warm watchdog. Shared
by every function: the warm pool (runtime/warm_pool.py), `Removals`, which
stops containers with retries, and the `Reconciler`, which removes what
nothing tracks (runtime/reconcile.py). Scaling up starts replicas in the
background; scaling down drains the least busy. Every `refresh` forgets the
replicas whose container exited (the next decision replaces them) and, every
few seconds, sweeps the orphans, off the scaling path.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from runtime import warm_pool
from runtime.backends.base import ContainerBackend, Limits
from runtime.errors import FaasError, ReplicaUnreachable
from runtime.images import plan_warm_image
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.reconcile import Reconciler, Removals
from runtime.replica_client import ReplicaClient
from runtime.scaling.decide import Observation
from runtime.supply.base import FunctionProgress, Recipe, for_task, still_running
from runtime.supply.starts import ContainerStarts
from runtime.warm_pool import PoolKey, WarmPool, pool_key

log = logging.getLogger("faas.scale")

HEALTH_INTERVAL = 1.0
STOP_GRACE = 2.0
"""Seconds a replica has to finish its calls when its function is removed or the gateway stops."""


class ContainerSupply:
    refresh_interval = HEALTH_INTERVAL

    def __init__(
        self, backend: ContainerBackend, client: ReplicaClient, *, warm_pool: int = 0
    ) -> None:
        self.backend = backend
        self.removals = Removals(backend)
        """Containers being removed, with retries."""
        self.reconciler = Reconciler(backend, self.tracked, self.removals)
        self.warm: dict[PoolKey, WarmPool] = {}
        """The project's warm watchdogs by isolation (and limits where the runtime cannot
        change them: `warm_pool.pool_key`), once started."""
        self._client = client
        self._warm_size = warm_pool
        self._warm_image: str | None = None
        self._warm_base: str | None = None
        self._functions: dict[str, ContainerStarts] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    @property
    def warm_ready(self) -> int | None:
        return sum(pool.ready for pool in self.warm.values()) if self.warm else None

    def _starts(self, pool: FunctionPool) -> ContainerStarts:
        return self._functions[pool.name]

    # -- functions -----------------------------------------------------------------

    def add(self, pool: FunctionPool) -> None:
        starts = ContainerStarts(pool, self.backend, self._client, self.removals)
        starts.warm_pools = self.warm
        self._functions[pool.name] = starts

    def use(self, pool: FunctionPool, recipe: Recipe) -> None:
        starts = self._starts(pool)
        starts.recipe = recipe
        code = recipe.code
        if recipe.code_mount is not None:  # warm watchdogs mount the code: send the rest
            code = {name: content for name, content in code.items() if name.startswith("deps/")}
        starts.warm_code = code if warm_pool.fits(recipe.code) else None

    async def build(
        self,
        pools: Sequence[FunctionPool],
        base_ids: Mapping[str, str],
        progress: FunctionProgress,
    ) -> None:
        """The warm watchdogs' image, on the base image most functions use."""
        bases = collections.Counter(pool.spec.base_image for pool in pools)
        if self._warm_size == 0 or not bases:
            return
        base = bases.most_common(1)[0][0]
        request = plan_warm_image(base_ids[base])
        try:
            await self.backend.build_image(request, for_task(progress, "warm pool"))
        except FaasError as exc:
            progress("warm pool", f"failed, functions start on new containers: {exc}", 1.0)
            return
        self._warm_image, self._warm_base = request.tag, base

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        """Start warm watchdogs for each pool some function could start from (`pool_key`)."""
        image, base = self._warm_image, self._warm_base
        if image is None or base is None or self.warm:
            return
        functions = [self._starts(pool) for pool in pools]
        takers = [
            s for s in functions if s.warm_code is not None and s.pool.spec.base_image == base
        ]
        # Without takers every function needs its own image: warm watchdogs would only idle.
        mounts = {s.recipe.code_mount for s in functions if s.recipe is not None}
        by_key: dict[PoolKey, list[Limits]] = collections.defaultdict(list)
        for taker in takers:
            key = pool_key(taker.pool.spec.isolation, taker.own_limits)
            by_key[key].append(taker.own_limits)
        for key, limits in sorted(by_key.items(), key=lambda item: str(item[0])):
            isolation = key[0]
            # The limits most takers run under: warm watchdogs start under them, so
            # starting those functions needs no update of the limits.
            self.warm[key] = WarmPool(
                self.backend,
                self._client,
                self._warm_size,
                image,
                collections.Counter(limits).most_common(1)[0][0],
                sorted(mount for mount in mounts if mount is not None),
                self.removals,
                base=base,
                isolation=isolation,
            )
            progress("warm pool", f"starting {self._warm_size} warm watchdog(s) ({isolation})", 1.0)
        for warm in self.warm.values():
            warm.fill()

    async def prepare(self, pool: FunctionPool) -> None:
        if pool.error is None and pool.image is not None:
            self._starts(pool).prepare_spare()

    async def replace(self, pool: FunctionPool) -> None:
        await self._starts(pool).roll()

    async def remove(self, pool: FunctionPool) -> None:
        starts = self._functions.get(pool.name)
        if starts is not None and starts.pool is pool:
            del self._functions[pool.name]
        await self._close(pool, starts)

    async def _close(self, pool: FunctionPool, starts: ContainerStarts | None) -> None:
        if starts is not None:
            starts.close()
        why = f"{pool.name} is shutting down"
        stops = [
            self.removals.remove(h.replica.id, grace=STOP_GRACE, why=why) for h in pool.close()
        ]
        await asyncio.gather(*stops, return_exceptions=True)

    def start_replica(self, pool: FunctionPool) -> Coroutine[Any, Any, None]:
        """One start of `pool` (the autoscaler starts them; tests too)."""
        return self._starts(pool).start()

    # -- scaling -------------------------------------------------------------------

    def observe(self, pool: FunctionPool, now: float) -> Observation | None:
        if pool.error is not None or pool.image is None:
            return None
        starting = max(0, pool.starting - self._starts(pool).replacing)
        return Observation(now, pool.depth(), pool.in_flight, pool.ready_count, starting)

    def scale(self, pool: FunctionPool, current: int, desired: int) -> int:
        if desired > current:
            for _ in range(desired - current):
                self._spawn(self._starts(pool).start())
            return desired
        drained = pool.drain(min(current - desired, pool.ready_count))
        return current - len(drained)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a replica start failed unexpectedly", exc_info=task.exception())

    def take_back(self, pool: FunctionPool, handle: ReplicaHandle) -> None:
        self.removals.remove(handle.replica.id, grace=pool.spec.timeout, why="scaled down")

    # -- what the engine runs --------------------------------------------------------

    async def refresh(self) -> None:
        """Sweep the orphans when it is time (in the background), then forget the replicas
        whose container exited."""
        now = asyncio.get_running_loop().time()
        if now >= self._next_sweep and (self._sweep is None or self._sweep.done()):
            self._next_sweep = now + self.reconciler.interval
            self._sweep = asyncio.get_running_loop().create_task(self.sweep())
        listed_at = time.time()
        running = {status.id for status in await self.backend.replicas() if status.running}
        for starts in list(self._functions.values()):
            pool = starts.pool
            for handle in [*pool.replicas, *pool.draining]:
                if handle.started_at < listed_at and handle.replica.id not in running:
                    self._lost(pool, handle, "its container exited")

    def _lost(self, pool: FunctionPool, handle: ReplicaHandle, why: str) -> None:
        if pool.forget(handle, why):
            self.removals.remove(handle.replica.id, why="its container exited")

    async def sweep(self) -> None:
        """Remove the containers nothing tracks; a failure is logged (the next one retries)."""
        try:
            await self.reconciler.sweep()
        except Exception as exc:  # the engine did not answer: the next sweep tries again
            log.warning(
                "listing the project's containers failed",
                extra={"error": str(exc) or type(exc).__name__},
            )

    async def unreachable(
        self,
        pool: FunctionPool,
        handle: ReplicaHandle,
        error: ReplicaUnreachable,
        *,
        was_serving: bool,
    ) -> None:
        if await still_running(self.backend, pool, handle):
            if was_serving and not pool.put_back(handle):
                self.removals.remove(handle.replica.id, why=f"{pool.name} stopped")
            return
        self._lost(pool, handle, str(error))

    def container_ids(self, pool: FunctionPool) -> set[str]:
        """The containers `pool`'s function is responsible for now."""
        return self._starts(pool).container_ids()

    def tracked(self) -> set[str]:
        """The containers some function or the warm pool is responsible for: any other
        (not being removed) is an orphan."""
        tracked = set().union(*(s.container_ids() for s in self._functions.values()))
        for warm in self.warm.values():
            tracked |= warm.container_ids()
        return tracked

    async def stop(self) -> None:
        pending = [*self._tasks, *([self._sweep] if self._sweep is not None else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(warm.close() for warm in self.warm.values()))
        functions = list(self._functions.values())
        await asyncio.gather(*(self._close(s.pool, s) for s in functions), return_exceptions=True)
        await self.removals.close()  # the teardown removes whatever they were retrying
