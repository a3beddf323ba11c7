"""Warm starts for a service supply: claim a warm service's task instead of waiting for Swarm.

A Swarm cold start waits for the orchestrator (~0.8 s here: the manager schedules a
task, the node creates and starts its container, attaches it to the overlay). A warm
service (runtime/backends/swarm/warm.py) keeps watchdogs of a kind of function running
already. When calls of a function would wait for a replica, this gateway claims one of
its kind's tasks in three steps (~20 ms in all):

1. the claim (`ReplicaClient.claim`): the service's shared key, and a token chosen here
   for that task alone, which the watchdog takes from then on instead of the key;
2. the check (`_logged_as_ours`): the watchdog wrote the claim's digest to its output
   before it answered, and the engine shows that output to the gateway only. Only the
   watchdog writes there before its first claim, so the first claim line is the real
   first claim. A task that runs some function's code already (claimed by anyone,
   with the key a hostile function found in its memory) can answer a claim as a fresh
   watchdog would, but cannot write before its first claim: it gets nothing more;
3. the function (`ReplicaClient.init`): code, secrets and settings, with the new token.

The task is then this gateway's replica of the function until it has been idle for the
function's scale-down window (`scale.idle_timeout`); then it is told to exit
(`ReplicaClient.retire`) and Swarm puts a new warm task in its slot.

A claim is one-shot in the watchdog, so of two gateways claiming one task the second
is refused (`ClaimLost`), never learns the winner's token, and tries the next task; with
none left, the calls wait for the function's own service as before. A claimed task
serves only the gateway that claimed it (only it knows the token); its calls are not
counted in the demand this gateway reports for the function's service (`uncovered`),
so the service stays at zero while warm tasks carry the load. The pure decisions are
`claims_wanted`, `idle` and `uncovered`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import warm_pool
from runtime.backends.base import (
    DEFAULT_PIDS,
    Backend,
    Limits,
    Replica,
    WarmServices,
    WarmSpec,
    WarmTask,
)
from runtime.errors import ClaimLost, FaasError, FunctionUnavailable, ReplicaUnreachable
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.replica_client import ReplicaClient
from runtime.supply.base import (
    FunctionProgress,
    Recipe,
    WarmPoolStatus,
    WarmStatus,
    build_warm_image,
)
from runtime.warm_kinds import WarmKind, kind_of, requirements_files
from runtime.watchdog import wire

log = logging.getLogger("faas.warm")

CLAIM_ATTEMPTS = 3
"""Tasks one claim tries before the calls are left to the function's service."""
VERIFY_WAIT = 3.0
"""Seconds a claim waits at most for the engine to show the task's claim line."""
READY_WAIT = 20.0
"""Seconds `start` waits at most for the warm services' tasks to run (~1-2 s), so that a
gateway that reports ready starts its first calls warm."""


def claims_wanted(queued: int, spare: int, claiming: int, per_replica: int) -> int:
    """Warm tasks to claim now: a replica's worth for every `per_replica` calls that wait
    beyond the free slots of ready replicas (`spare`) and of the claims under way."""
    waiting = queued - spare - claiming * per_replica
    return max(0, math.ceil(waiting / per_replica))


def idle(last_busy: float, now: float, window: float) -> bool:
    """Whether a claimed task idle since `last_busy` has been so for a whole window."""
    return now - last_busy >= window


def uncovered(queued: int, in_flight: int, warm_in_flight: int, warm_spare: int) -> tuple[int, int]:
    """(queued, in flight) of a function that its claimed warm tasks do not carry: what
    its service is scaled for."""
    return max(0, queued - warm_spare), max(0, in_flight - warm_in_flight)


@dataclass
class Claimed:
    """A warm task this gateway claimed for a function."""

    pool: FunctionPool
    handle: ReplicaHandle
    task: WarmTask
    last_busy: float
    touched: float
    """When it last had a request from this gateway (a call, or `_keep`'s probe)."""
    served: int = 0
    """Its handle's `served` at the last look."""


class WarmTasks:
    """This gateway's claims of warm tasks, for a service supply whose backend keeps warm
    services. Called by `ServiceSupply` at the same points of a function's life."""

    def __init__(
        self, engine: WarmServices, backend: Backend, client: ReplicaClient, *, size: int
    ) -> None:
        self._engine = engine
        self._backend = backend
        self._client = client
        self._size = size
        """Tasks per warm service (`gateway.warm_tasks`). A claimed task keeps its slot
        until it is retired; then Swarm refills the slot."""
        self._kinds: dict[str, WarmKind] = {}
        """Function -> its kind, limits included (Swarm fixes a task's limits)."""
        self._codes: dict[str, Mapping[str, bytes]] = {}
        """Function -> the code a claim sends it; absent: it starts on its service only."""
        self._recipes: dict[str, Recipe] = {}
        self._requirements: dict[str, dict[str, bytes]] = {}
        self._images: dict[WarmKind, str] = {}
        self._services: dict[WarmKind, str] = {}
        self._code_mounts: tuple[tuple[str, str], ...] = ()
        self._base_ids: Mapping[str, str] = {}
        self._started = False
        self._free: dict[str, list[WarmTask]] = {}
        """Warm service -> its tasks as last listed, less those tried since."""
        self._running: dict[str, int] = {}
        """Warm service -> its running tasks as last listed, claimed or not."""
        self._tried: set[str] = set()
        """Tasks this gateway claimed or failed to claim: never tried again."""
        self._claiming: dict[str, int] = {}
        self._claimed: dict[str, Claimed] = {}
        """Task id -> a claimed task in service (or draining)."""
        self._work: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._size > 0

    def status(self) -> WarmStatus:
        """The warm services as this gateway sees them: `ready`, the tasks it could claim
        now; `held`, the tasks running, claimed or not (`faas ls`, /metrics)."""
        pools = []
        for kind, service in sorted(self._services.items(), key=lambda item: item[0].label):
            takers = sorted(f for f, k in self._kinds.items() if k == kind and f in self._codes)
            pools.append(
                WarmPoolStatus(
                    pool=kind.label,
                    ready=len(self._free.get(service, [])),
                    held=self._running.get(service, 0),
                    target=self._size,
                    per_watchdog=None,
                    preload=kind.preload,
                    functions=tuple(takers),
                )
            )
        return WarmStatus(maximum=self._size, budget=0, pools=tuple(pools))

    # -- functions -----------------------------------------------------------------

    def use(self, pool: FunctionPool, recipe: Recipe) -> None:
        spec = pool.spec
        deps = requirements_files(recipe.code)
        limits = Limits(spec.memory, spec.cpus, DEFAULT_PIDS)
        kind = dataclasses.replace(
            kind_of(
                spec.base_image, spec.isolation, limits, deps, spec.preload, spec.system_packages
            ),
            limits=limits,
        )
        if spec.isolation != "container" or recipe.debugger:
            self._codes.pop(pool.name, None)  # another runtime; a debugger's port
            self._kinds.pop(pool.name, None)
            return
        if kind.requirements:
            self._requirements[kind.requirements] = deps
        code = {} if recipe.code_mount is not None else {
            name: content for name, content in recipe.code.items()
            if name.startswith(wire.INIT_CODE)
        }  # fmt: skip
        if not warm_pool.fits(code):
            self._codes.pop(pool.name, None)
            self._kinds.pop(pool.name, None)
            return
        self._kinds[pool.name] = kind
        self._codes[pool.name] = code
        self._recipes[pool.name] = recipe

    async def build(
        self, pools: Sequence[FunctionPool], base_ids: Mapping[str, str], progress: FunctionProgress
    ) -> None:
        self._base_ids = base_ids
        for kind in self._kinds_of(pools):
            await self._build(kind, progress)

    def _kinds_of(self, pools: Sequence[FunctionPool]) -> list[WarmKind]:
        kinds = {self._kinds[p.name] for p in pools if p.name in self._codes}
        return sorted(kinds, key=lambda kind: kind.label)

    async def _build(self, kind: WarmKind, progress: FunctionProgress) -> bool:
        if not self.enabled:
            return False
        if kind in self._images:
            return True
        base_id = self._base_ids.get(kind.base)
        if base_id is None:
            return False
        deps = self._requirements.get(kind.requirements, {})
        tag = await build_warm_image(
            self._backend, base_id, deps, kind, f"warm service {kind.label}", progress,
            otherwise="its functions start on their services",
        )  # fmt: skip
        if tag is None:
            return False
        self._images[kind] = tag
        return True

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        if not self.enabled or self._started:
            return
        self._started = True
        mounts = {r.code_mount for r in self._recipes.values() if r.code_mount is not None}
        self._code_mounts = tuple(sorted(mounts))
        for kind in self._kinds_of(pools):
            await self._open(kind, progress)
        await self._until_running()

    async def _until_running(self) -> None:
        """List the warm tasks until every warm service runs all of its (or READY_WAIT)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT
        while self._services and loop.time() < deadline:
            try:
                await self.refresh(loop.time())
            except FaasError as exc:
                log.warning("listing the warm tasks failed", extra={"error": str(exc)})
            if all(self._running.get(s, 0) >= self._size for s in self._services.values()):
                return
            await asyncio.sleep(0.1)

    async def _open(self, kind: WarmKind, progress: FunctionProgress) -> None:
        image = self._images.get(kind)
        if image is None or kind in self._services:
            return
        assert kind.limits is not None
        spec = WarmSpec(
            image=image,
            limits=kind.limits,
            code_mounts=self._code_mounts,
            preload=kind.preload,
        )
        task = f"warm service {kind.label}"
        try:
            self._services[kind] = await self._engine.ensure(
                spec, label=kind.label, size=self._size
            )
        except FaasError as exc:
            progress(task, f"failed, its functions start on their services: {exc}", 1.0)
            return
        progress(task, f"{self._size} task(s)", 1.0)

    async def prepare(self, pool: FunctionPool) -> None:
        """A function added or changed while serving: open its kind's warm service."""
        if not self._started:
            return
        kind = self._kinds.get(pool.name)
        quiet: FunctionProgress = lambda *_: None  # noqa: E731
        if kind is not None and pool.name in self._codes and await self._build(kind, quiet):
            await self._open(kind, quiet)
        await self._close_unused()

    def replace(self, pool: FunctionPool) -> None:
        """New image or settings: its claimed tasks have the old ones; each is retired once
        its calls are done (`taken_back`), and the next cold start claims afresh."""
        for claimed in [c for c in self._claimed.values() if c.pool is pool]:
            pool.take_out(claimed.handle)

    async def remove(self, pool: FunctionPool) -> None:
        for claimed in [c for c in self._claimed.values() if c.pool is pool]:
            self._retire(claimed, "its function is gone")
        self._kinds.pop(pool.name, None)
        self._codes.pop(pool.name, None)
        self._recipes.pop(pool.name, None)
        await self._close_unused()

    async def _close_unused(self) -> None:
        """Remove the warm services of kinds no function has any more."""
        used = {self._kinds[name] for name in self._codes}
        for kind in [k for k in self._services if k not in used]:
            service = self._services.pop(kind)
            try:
                await self._engine.remove(service)
            except FaasError as exc:  # the teardown removes it
                log.warning(
                    "removing a warm service failed", extra={"service": service, "error": str(exc)}
                )

    # -- demand --------------------------------------------------------------------

    def _service_of(self, pool: FunctionPool) -> str | None:
        """The warm service `pool` claims from; None when it has none, or when its code is
        mounted (development) where the warm tasks mount none (a function added since)."""
        kind = self._kinds.get(pool.name)
        recipe = self._recipes.get(pool.name)
        if pool.name not in self._codes or kind is None or recipe is None:
            return None
        if recipe.code_mount is not None and recipe.code_mount not in self._code_mounts:
            return None
        return self._services.get(kind)

    def claim_for(self, pool: FunctionPool) -> None:
        """Claim warm tasks for the calls of `pool` that would wait (`claims_wanted`)."""
        service = self._service_of(pool)
        if service is None or pool.error is not None or pool.closed:
            return
        free = self._free.get(service, [])
        if not free:
            return
        limit = pool.slot_limit
        spare = sum(max(0, limit - h.in_flight) for h in pool.replicas)
        per_replica = pool.spec.scale.target_concurrency
        wanted = claims_wanted(pool.depth(), spare, self.claiming(pool), per_replica)
        for _ in range(min(wanted, len(free))):
            self._claiming[pool.name] = self._claiming.get(pool.name, 0) + 1
            self._spawn(self._claim(pool, service))

    def claiming(self, pool: FunctionPool) -> int:
        return self._claiming.get(pool.name, 0)

    def warm_handles(self, pool: FunctionPool) -> list[ReplicaHandle]:
        return [c.handle for c in self._claimed.values() if c.pool is pool]

    def _warm_load(self, pool: FunctionPool) -> tuple[int, int, int]:
        """(in flight, free slots, in service) of `pool`'s claimed tasks; the claims under
        way count as free slots. Draining ones still finish their calls, taking no more."""
        handles = self.warm_handles(pool)
        serving = [h for h in handles if h in pool.replicas]
        limit = pool.slot_limit
        spare = sum(max(0, limit - h.in_flight) for h in serving)
        spare += self.claiming(pool) * pool.spec.scale.target_concurrency
        return sum(h.in_flight for h in handles), spare, len(serving)

    def carried(self, pool: FunctionPool) -> int:
        """Calls of `pool` at this gateway that its claimed warm tasks carry: theirs in
        flight, and the waiting ones their free slots (and the claims under way) take."""
        in_flight, spare, _ = self._warm_load(pool)
        waiting = pool.local_demand() - pool.in_flight
        return in_flight + min(waiting, spare)

    def uncovered(self, pool: FunctionPool) -> tuple[int, int, int]:
        """(queued, in flight, ready) of `pool` that its service must carry."""
        warm_in_flight, spare, serving = self._warm_load(pool)
        queued, in_flight = uncovered(pool.depth(), pool.in_flight, warm_in_flight, spare)
        return queued, in_flight, pool.ready_count - serving

    async def _claim(self, pool: FunctionPool, service: str) -> None:
        began = time.perf_counter()
        try:
            for _ in range(CLAIM_ATTEMPTS):
                free = self._free.get(service, [])
                if not free or pool.closed:
                    return
                task = free.pop(0)
                self._tried.add(task.id)
                if await self._claim_one(pool, task, began):
                    return
        finally:
            self._claiming[pool.name] -= 1

    async def _claim_one(self, pool: FunctionPool, task: WarmTask, began: float) -> bool:
        """Claim `task` for `pool`; True when it serves the function now (or never will)."""
        recipe = self._recipes.get(pool.name)
        code = self._codes.get(pool.name)
        if recipe is None or code is None or task.address is None:
            return False
        spec = recipe.replica_spec(pool.spec)
        archive = warm_pool.init_archive(spec, code)
        name = f"{pool.name}.warm-{task.id[:12]}"
        shared = Replica(task.id, name, pool.name, task.address, task.key)
        replica = dataclasses.replace(shared, token=secrets.token_urlsafe(32))
        sent = time.perf_counter()
        try:
            await self._client.claim(shared, replica.token)
        except ClaimLost:
            log.info("warm task claimed by another", extra={"function": pool.name, "task": name})
            return False
        except ReplicaUnreachable:
            # Running, as Swarm says, is not listening yet (its watchdog is still starting),
            # or gone and not yet listed as gone: a later claim may try it again.
            self._tried.discard(task.id)
            return False
        except FaasError as exc:
            where = {"function": pool.name, "task": name, "error": str(exc)}
            log.warning("warm task unusable", extra=where)
            return False
        claimed_at = time.perf_counter()
        if not await self._logged_as_ours(task, replica.token):
            # Whatever answered is not a fresh watchdog (it may run some function's code,
            # which accepts anything): it gets nothing, and belongs to whoever claimed it.
            where = {"function": pool.name, "task": name}
            log.warning("warm task claimed first by another: not used", extra=where)
            return False
        verified_at = time.perf_counter()
        try:
            await self._client.init(replica, archive)
        except FunctionUnavailable as exc:
            pool.mark_failed(str(exc), exc.detail)
            self._spawn(self._tell_to_go(replica, "its function failed to import"))
            return True
        except FaasError as exc:
            log.warning(
                "warm task unusable",
                extra={"function": pool.name, "task": name, "error": str(exc)},
            )
            self._spawn(self._tell_to_go(replica, "its claim failed"))
            return False
        phases = {
            "claim_wait_ms": round((sent - began) * 1000, 1),
            "claim_ms": round((claimed_at - sent) * 1000, 1),
            "verify_ms": round((verified_at - claimed_at) * 1000, 1),
            "init_ms": round((time.perf_counter() - verified_at) * 1000, 1),
        }
        pool.observers.replica_started(replica)  # its output, from now on
        handle = pool.add(replica, cold_start=time.perf_counter() - began, phases=phases)
        if handle is None:  # the pool closed meanwhile
            self._spawn(self._tell_to_go(replica, "its function is gone"))
            return True
        now = asyncio.get_running_loop().time()
        self._claimed[task.id] = Claimed(pool, handle, task, now, now)
        return True

    async def _logged_as_ours(self, task: WarmTask, token: str) -> bool:
        """Whether the first claim `task`'s watchdog logged is `token`'s: the engine has its
        output, which only the watchdog writes before a claim (wire.CLAIMED)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VERIFY_WAIT
        delay = 0.002
        while True:
            try:
                logged = await self._engine.first_claim(task.id)
            except FaasError as exc:
                log.warning("reading a warm task's output failed", extra={"error": str(exc)})
                return False
            if logged is not None:
                return logged == wire.claim_digest(token)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(delay)  # the engine copies output asynchronously
            delay = min(delay * 2, 0.05)

    # -- what the engine runs, and retiring -------------------------------------------

    async def refresh(self, now: float) -> None:
        """List the warm tasks; forget claimed ones that are gone; retire idle ones."""
        if not self._services:
            return
        listing = await self._engine.tasks()
        lost = {task.id: task.lost for task in listing if task.lost}
        tasks = [task for task in listing if not task.lost]
        free: dict[str, list[WarmTask]] = {}
        running: dict[str, int] = {}
        for task in tasks:
            running[task.service] = running.get(task.service, 0) + 1
            if task.id not in self._tried and task.address is not None:
                free.setdefault(task.service, []).append(task)
        self._free, self._running = free, running
        listed = {task.id for task in tasks}
        self._tried &= listed  # a task that is gone is never listed again
        for task_id, claimed in list(self._claimed.items()):
            pool, handle = claimed.pool, claimed.handle
            if task_id not in listed:
                del self._claimed[task_id]
                why = lost.get(task_id)
                pool.forget(handle, why or "its warm task exited")
                if why is not None:  # silent, not closed: its calls would wait out their time
                    cut = self._client.lost(handle.replica, why)
                    where = {"function": pool.name, "task": handle.replica.name, "calls_cut": cut}
                    log.warning("claimed warm task lost with its node", extra=where)
                continue
            busy = handle.in_flight or handle.served != claimed.served
            claimed.served = handle.served
            if busy or (pool.depth() and handle in pool.replicas):
                claimed.last_busy = claimed.touched = now
            elif now - claimed.touched >= self._engine.claim_idle / 3:
                # a long idle_timeout: keep it from retiring itself (wire.CLAIM_IDLE_ENV)
                claimed.touched = now
                self._spawn(self._keep(handle.replica))
            if handle.in_flight or handle not in pool.replicas:
                continue
            if idle(claimed.last_busy, now, pool.spec.scale.idle_timeout):
                name = handle.replica.name
                log.info("warm task idle", extra={"function": pool.name, "task": name})
                pool.take_out(handle)  # back through `taken_back` once its calls are done

    async def _keep(self, replica: Replica) -> None:
        async def alive(_: Replica) -> None: ...

        deadline = asyncio.get_running_loop().time() + 5.0
        try:
            await self._client.wait_ready(replica, deadline=deadline, is_alive=alive)
        except FaasError as exc:  # gone: the next refresh forgets it
            where = {"task": replica.name, "error": str(exc)}
            log.warning("a claimed warm task did not answer", extra=where)

    def taken_back(self, handle: ReplicaHandle) -> bool:
        """A replica out of service finished its calls: retire it if it is a claimed task."""
        claimed = self._claimed.get(handle.replica.id)
        if claimed is None or claimed.handle is not handle:
            return False
        self._retire(claimed, "scaled down")
        return True

    def _retire(self, claimed: Claimed, why: str) -> None:
        self._claimed.pop(claimed.task.id, None)
        claimed.pool.take_out(claimed.handle)
        self._spawn(self._tell_to_go(claimed.handle.replica, why))

    async def _tell_to_go(self, replica: Replica, why: str) -> None:
        try:
            await self._client.retire(replica)
        except FaasError as exc:  # gone already, or it retires itself (wire.CLAIM_IDLE_ENV)
            log.warning(
                "retiring a warm task failed",
                extra={"function": replica.function, "task": replica.name, "error": str(exc)},
            )
            return
        where = {"function": replica.function, "task": replica.name, "why": why}
        log.info("warm task retired", extra=where)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def stop(self) -> None:
        """Retire every claimed task (Swarm refills their slots), then end what is under way."""
        retiring = [claimed.handle.replica for claimed in self._claimed.values()]
        self._claimed.clear()
        pending = list(self._work)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(
            *(self._tell_to_go(replica, "the gateway stops") for replica in retiring),
            return_exceptions=True,
        )
