"""Replicas as containers the gateway creates, starts and stops itself (docker; later podman).

Per function, `ContainerStarts` (runtime/supply/starts.py) starts replicas on
a warm watchdog of its kind, or on a container of its own. Shared by every
function: the warm pools, one per kind of function (runtime/warm_kinds.py,
runtime/warm_pool.py), sized here every refresh and at each cold start
(runtime/scaling/warm_sizing.py); `Removals`, which stops containers with
retries; and the `Reconciler`, which removes what nothing tracks
(runtime/reconcile.py). Scaling up starts replicas in the
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
from runtime.backends.base import ContainerBackend, Limits, WarmSpec
from runtime.errors import ReplicaUnreachable
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.reconcile import Reconciler, Removals
from runtime.replica_client import ReplicaClient
from runtime.scaling import warm_sizing
from runtime.scaling.decide import Observation
from runtime.supply.base import (
    FunctionProgress,
    Recipe,
    WarmPoolStatus,
    WarmStatus,
    build_warm_image,
    still_running,
)
from runtime.supply.starts import ContainerStarts
from runtime.warm_kinds import WarmKind, kind_of, requirements_files
from runtime.warm_pool import WarmPool
from runtime.watchdog import wire

log = logging.getLogger("faas.scale")

HEALTH_INTERVAL = 1.0
STOP_GRACE = 2.0
"""Seconds a replica has to finish its calls when its function is removed or the gateway stops."""
WARM_MINIMUM = 2
"""Warm watchdogs each kind keeps when idle (fewer if `gateway.warm_pool` or the memory
budget says so): the first cold starts after a quiet spell are warm too."""


class ContainerSupply:
    refresh_interval = HEALTH_INTERVAL

    def __init__(
        self,
        backend: ContainerBackend,
        client: ReplicaClient,
        *,
        warm_pool: int = 0,
        warm_pool_memory: int = 0,
    ) -> None:
        self.backend = backend
        self.removals = Removals(backend)
        """Containers being removed, with retries."""
        self.reconciler = Reconciler(backend, self.tracked, self.removals)
        self.warm: dict[WarmKind, WarmPool] = {}
        """The project's warm pools by kind of function, once started."""
        self._client = client
        self._warm_max = warm_pool
        self._warm_budget = warm_pool_memory
        self._warm_started = False
        self._warm_images: dict[WarmKind, str] = {}
        """Kinds whose warm image is built -> its tag."""
        self._requirements: dict[str, dict[str, bytes]] = {}
        """A kind's `requirements` digest -> the installed files its image holds."""
        self._base_ids: Mapping[str, str] = {}
        self._code_mounts: tuple[tuple[str, str], ...] = ()
        self._functions: dict[str, ContainerStarts] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    def warm_status(self) -> WarmStatus | None:
        if self._warm_max == 0:
            return None
        takers = self._takers()
        pools = tuple(
            WarmPoolStatus(
                pool=warm.label,
                ready=warm.ready,
                held=warm.held,
                target=warm.size,
                per_watchdog=warm.per_watchdog,
                preload=warm.spec.preload,
                functions=tuple(sorted(takers.get(kind, ()))),
            )
            for kind, warm in sorted(self.warm.items(), key=lambda item: item[1].label)
        )
        return WarmStatus(maximum=self._warm_max, budget=self._warm_budget, pools=pools)

    def local_demand(self, pool: FunctionPool) -> int:
        return pool.local_demand()

    def _takers(self) -> dict[WarmKind, list[str]]:
        """Kind -> the functions that start from its pool now."""
        takers: dict[WarmKind, list[str]] = collections.defaultdict(list)
        for starts in self._functions.values():
            if starts.starts_warm and starts.kind is not None:
                takers[starts.kind].append(starts.pool.name)
        return takers

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
        spec = pool.spec
        deps = requirements_files(recipe.code)
        kind = kind_of(
            spec.base_image,
            spec.isolation,
            starts.own_limits,
            deps,
            spec.preload,
            spec.system_packages,
        )
        if kind.requirements:
            self._requirements[kind.requirements] = deps
        starts.kind = kind
        # Warm watchdogs hold the requirements (the kind's image) and, in development,
        # mount the code: what is left to send is the function's own code.
        code = {} if recipe.code_mount is not None else {
            name: content for name, content in recipe.code.items()
            if name.startswith(wire.INIT_CODE)
        }  # fmt: skip
        # A debugged function's replica publishes a debugger: always a container of its own.
        starts.warm_code = code if warm_pool.fits(code) and recipe.debugger is None else None

    async def build(
        self,
        pools: Sequence[FunctionPool],
        base_ids: Mapping[str, str],
        progress: FunctionProgress,
    ) -> None:
        """The warm watchdogs' images: one per base image and set of requirements."""
        self._base_ids = base_ids
        for kind in self._kinds(pools):
            await self._build_kind(kind, progress)

    def _kinds(self, pools: Sequence[FunctionPool]) -> list[WarmKind]:
        kinds = {self._starts(p).kind for p in pools if self._starts(p).warm_code is not None}
        return sorted((k for k in kinds if k is not None), key=lambda k: k.label)

    async def _build_kind(self, kind: WarmKind, progress: FunctionProgress) -> bool:
        """Build `kind`'s image unless it is built; False when it cannot be."""
        if self._warm_max == 0:
            return False
        if kind in self._warm_images:
            return True
        base_id = self._base_ids.get(kind.base)
        if base_id is None:
            return False
        deps = self._requirements.get(kind.requirements, {})
        tag = await build_warm_image(
            self.backend, base_id, deps, kind, f"warm pool {kind.label}", progress,
            otherwise="its functions start on new containers",
        )  # fmt: skip
        if tag is None:
            return False
        self._warm_images[kind] = tag
        return True

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        """Open a warm pool for each kind some function can start from."""
        if self._warm_max == 0 or self._warm_started:
            return
        self._warm_started = True
        mounts = {s.recipe.code_mount for s in self._functions.values() if s.recipe is not None}
        self._code_mounts = tuple(sorted(mount for mount in mounts if mount is not None))
        for kind in self._kinds(pools):
            self._open(kind, progress)
        self._resize()

    def _open(self, kind: WarmKind, progress: FunctionProgress) -> None:
        """Start `kind`'s warm pool, if its image is built and it is not open yet."""
        image = self._warm_images.get(kind)
        if image is None or kind in self.warm:
            return
        # The limits most of its functions run under: warm watchdogs start under them,
        # so starting those functions needs no update of the limits.
        limits = collections.Counter(
            s.own_limits for s in self._functions.values() if s.kind == kind
        ).most_common(1)
        spec = WarmSpec(
            image=image,
            limits=kind.limits or (limits[0][0] if limits else Limits(0, 0.0, 0)),
            code_mounts=self._code_mounts,
            isolation=kind.isolation,
            preload=kind.preload,
        )
        self.warm[kind] = WarmPool(
            self.backend,
            self._client,
            0,
            spec,
            self.removals,
            label=kind.label,
            on_demand=self._resize,
        )
        preloads = f", preloading {', '.join(kind.preload)}" if kind.preload else ""
        progress(f"warm pool {kind.label}", f"open ({kind.isolation}{preloads})", 1.0)

    def _resize(self) -> None:
        """Size every warm pool from its recent cold starts, within the memory budget;
        close the pools no function starts from any more."""
        if not self.warm:
            return
        takers = self._takers()
        for kind in [k for k in self.warm if k not in takers]:
            self._spawn(self.warm.pop(kind).close())
        now = asyncio.get_running_loop().time()
        demands = [
            warm_sizing.KindDemand(kind, warm.arrivals, warm.last_needed, warm.per_watchdog)
            for kind, warm in self.warm.items()
        ]
        targets = warm_sizing.plan(
            demands,
            now,
            minimum=WARM_MINIMUM,
            maximum=self._warm_max,
            budget=self._warm_budget,
        )
        for kind, warm in self.warm.items():  # shrink first: their surplus starts leaving
            if targets[kind] < warm.size:
                warm.resize(targets[kind])
        served = sorted(self.warm.items(), key=lambda item: item[1].last_needed, reverse=True)
        now_held = [
            warm_sizing.PoolNow(kind, warm.held - warm.leaving, warm.leaving, warm.per_watchdog)
            for kind, warm in served
        ]
        sizes = warm_sizing.within_budget(targets, now_held, self._warm_budget)
        for kind, warm in self.warm.items():
            warm.resize(sizes[kind])

    async def prepare(self, pool: FunctionPool) -> None:
        """A function added (or changed) while serving: open its kind's warm pool if needed."""
        starts = self._starts(pool)
        kind = starts.kind
        if not self._warm_started or kind is None or kind in self.warm:
            return
        quiet: FunctionProgress = lambda *_: None  # noqa: E731
        if (
            pool.error is None
            and starts.warm_code is not None
            and await self._build_kind(kind, quiet)
        ):
            self._open(kind, quiet)
            self._resize()

    async def replace(self, pool: FunctionPool) -> None:
        await self.prepare(pool)
        await self._starts(pool).roll()
        self._resize()  # its previous kind may have no function left

    async def remove(self, pool: FunctionPool) -> None:
        starts = self._functions.get(pool.name)
        if starts is not None and starts.pool is pool:
            del self._functions[pool.name]
        await self._close(pool, starts)
        self._resize()

    async def _close(self, pool: FunctionPool, starts: ContainerStarts | None) -> None:
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
            log.error("a replica start or a pool's closing failed", exc_info=task.exception())

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
        self._resize()
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
