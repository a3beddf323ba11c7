"""Replicas as the tasks of a service whose count the engine keeps (swarm, kubernetes).

Each function is a service (`ensure_service`, tried again when an engine under
load refuses a write). Every `refresh` the gateway lists its project's tasks:
a task that runs and has an address is checked for readiness and put to work;
one that no longer runs (the engine stopped it, scaled down, or it crashed) is
retired, its calls in flight finishing. The gateway that leads (see
runtime/scaling/coordination.py) decides each function's count on the demand
of all gateways and sets it on the service; with an engine that scales itself
(Kubernetes with KEDA) no gateway leads, and every gateway only follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

from runtime.backends.base import Replica, ServiceBackend, Task
from runtime.errors import FaasError, FunctionUnavailable, ReplicaStartError, ReplicaUnreachable
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.replica_client import ReplicaClient
from runtime.scaling.coordination import Alone, Coordination, Demand
from runtime.scaling.decide import Observation
from runtime.supply.base import FunctionProgress, Recipe, WarmStatus, still_running
from runtime.supply.warm_tasks import WarmTasks

log = logging.getLogger("faas.scale")

SYNC_INTERVAL = 0.25
READY_TIMEOUT = 60.0
SERVICE_ATTEMPTS = 3
SERVICE_RETRY_DELAY = 1.0


class ServiceSupply:
    refresh_interval = SYNC_INTERVAL

    def warm_status(self) -> WarmStatus | None:
        return None if self.warm is None else self.warm.status()

    def local_demand(self, pool: FunctionPool) -> int:
        """Less what this gateway's claimed warm tasks carry: they serve it alone."""
        if self.warm is None:
            return pool.local_demand()
        return max(0, pool.local_demand() - self.warm.carried(pool))

    def __init__(
        self,
        backend: ServiceBackend,
        client: ReplicaClient,
        coordination: Coordination | None = None,
        warm: WarmTasks | None = None,
    ) -> None:
        self.backend = backend
        self.warm = warm
        """Claims of warm tasks (warm_tasks.py), when the backend keeps warm services."""
        self.coordination: Coordination = coordination or Alone()
        self.counts: dict[str, int] = {}
        """The replica count each service is set to, as last read or set."""
        self._client = client
        self._pools: dict[str, FunctionPool] = {}
        self._recipes: dict[str, Recipe] = {}
        self._handles: dict[str, ReplicaHandle] = {}
        """Task id -> the handle of a task at work."""
        self._readying: dict[str, asyncio.Task[None]] = {}
        self._settings: dict[str, asyncio.Task[None]] = {}
        """Function -> the change of its count on its way to the engine."""

    # -- functions -----------------------------------------------------------------

    def add(self, pool: FunctionPool) -> None:
        self._pools[pool.name] = pool

    def use(self, pool: FunctionPool, recipe: Recipe) -> None:
        self._recipes[pool.name] = recipe
        if self.warm is not None:
            self.warm.use(pool, recipe)

    async def build(
        self,
        pools: Sequence[FunctionPool],
        base_ids: Mapping[str, str],
        progress: FunctionProgress,
    ) -> None:
        """The warm services' images, if any: the engine starts every function's own task
        from its function's image."""
        if self.warm is not None:
            await self.warm.build(pools, base_ids, progress)

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        """The warm services, if any."""
        if self.warm is not None:
            await self.warm.start(pools, progress)

    async def prepare(self, pool: FunctionPool) -> None:
        """Create or update the function's service; fail the function once every attempt
        was refused."""
        recipe = self._recipes.get(pool.name)
        if pool.error is not None or pool.image is None or recipe is None:
            return
        if self.warm is not None:
            await self.warm.prepare(pool)
        for attempt in range(1, SERVICE_ATTEMPTS + 1):
            try:
                await self.backend.ensure_service(recipe.replica_spec(pool.spec))
                return
            except FaasError as exc:
                if attempt == SERVICE_ATTEMPTS:
                    pool.mark_failed(str(exc))
                    return
                # An engine under load (a swarm manager mid-election, a busy daemon) can
                # refuse one write; failing the function for good would be out of proportion.
                log.warning(
                    "making the function's service failed; trying again",
                    extra={"function": pool.name, "error": str(exc), "attempt": attempt},
                )
                await asyncio.sleep(SERVICE_RETRY_DELAY * attempt)

    async def replace(self, pool: FunctionPool) -> None:
        if self.warm is not None:
            self.warm.replace(pool)
        await self.prepare(pool)  # the engine rolls the service's tasks

    async def remove(self, pool: FunctionPool) -> None:
        if self._pools.get(pool.name) is pool:
            del self._pools[pool.name]
            self._recipes.pop(pool.name, None)
        if self.warm is not None:
            await self.warm.remove(pool)
        pool.close()  # the engine stops the tasks of a service being removed
        self.counts.pop(pool.name, None)
        for task_id, handle in list(self._handles.items()):
            if handle.replica.function == pool.name:
                del self._handles[task_id]
        await self.backend.remove_service(pool.name)

    # -- scaling -------------------------------------------------------------------

    def observe(self, pool: FunctionPool, now: float) -> Observation | None:
        """Counts come from the service; demand from every gateway. Only the leader decides,
        and for a failed function only while its service still has replicas."""
        if pool.image is None:
            return None
        current = self.counts.get(pool.name, 0)
        queued, in_flight, ready = pool.depth(), pool.in_flight, pool.ready_count
        claiming = 0
        if self.warm is not None:  # claimed warm tasks carry what they can: not the service
            self.warm.claim_for(pool)
            claiming = self.warm.claiming(pool)
            queued, in_flight, ready = self.warm.uncovered(pool)
        ready = min(ready, current)
        pool.starting = current - ready + claiming
        if not self.coordination.leads() or (pool.error is not None and current == 0):
            return None
        demand = self.coordination.demand(pool.name, Demand(queued, in_flight))
        return Observation(now, demand.queued, demand.in_flight, ready, current - ready)

    def scale(self, pool: FunctionPool, current: int, desired: int) -> int:
        name = pool.name
        pool.starting = max(0, desired - min(pool.ready_count, current))
        self.counts[name] = desired
        previous = self._settings.get(name)
        self._settings[name] = asyncio.get_running_loop().create_task(
            self._set(name, desired, previous)
        )
        return desired

    async def _set(self, function: str, count: int, previous: asyncio.Task[None] | None) -> None:
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self.backend.set_replicas(function, count)
        except FaasError as exc:
            log.warning(
                "setting the replica count failed",
                extra={"function": function, "replicas": count, "error": str(exc)},
            )

    def take_back(self, pool: FunctionPool, handle: ReplicaHandle) -> None:
        """Nothing to stop: the engine stops the tasks it scales down; a claimed warm task
        is told to exit."""
        if self.warm is not None:
            self.warm.taken_back(handle)

    # -- what the engine runs --------------------------------------------------------

    async def refresh(self) -> None:
        """Make every pool's replicas the running tasks of its service."""
        if self.warm is not None:
            await self.warm.refresh(asyncio.get_running_loop().time())
        tasks = await self.backend.tasks()
        counts = await self.backend.desired_replicas()
        for name in self._pools:
            setting = self._settings.get(name)
            # While our own change is on its way, the engine still reports the old count.
            if setting is None or setting.done():
                self.counts[name] = counts.get(name, 0)
        running = {task.id: task for task in tasks if task.running}
        lost = {task.id: task.lost for task in tasks if task.lost}
        for task in running.values():
            pool = self._pools.get(task.function)
            if (
                pool is not None
                and task.address is not None
                and task.id not in self._handles
                and task.id not in self._readying
            ):
                checking = asyncio.get_running_loop().create_task(self._put_to_work(pool, task))
                self._readying[task.id] = checking
        for task_id, handle in list(self._handles.items()):
            if task_id not in running:
                del self._handles[task_id]
                pool = self._pools.get(handle.replica.function)
                why = lost.get(task_id)
                if why is not None:
                    self._lose(pool, handle, why)
                elif pool is not None and pool.take_out(handle):
                    log.info(
                        "replica retired",
                        extra={"function": pool.name, "replica": handle.replica.name},
                    )
        for task_id, checking in list(self._readying.items()):
            if task_id not in running:
                checking.cancel()

    def _lose(self, pool: FunctionPool | None, handle: ReplicaHandle, why: str) -> None:
        """A task that will never answer again: out of service, its calls cut (502)."""
        if pool is not None:
            pool.forget(handle, why)
        cut = self._client.lost(handle.replica, why)
        log.warning(
            "replica lost with its node",
            extra={"function": handle.replica.function, "replica": handle.replica.name,
                   "why": why, "calls_cut": cut},
        )  # fmt: skip

    async def _put_to_work(self, pool: FunctionPool, task: Task) -> None:
        assert task.address is not None
        replica = Replica(task.id, task.name, task.function, task.address, task.token)
        try:
            loop = asyncio.get_running_loop()
            pool.observers.replica_started(replica)
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except FunctionUnavailable as exc:  # the handler does not import: no task will do
            pool.mark_failed(str(exc), exc.detail)
            return
        except FaasError as exc:
            log.warning(
                "replica did not become ready",
                extra={"function": task.function, "replica": task.name, "error": str(exc)},
            )
            return
        finally:
            self._readying.pop(task.id, None)
        # A removed function's pool is closed: the engine stops the tasks of its service.
        handle = pool.add(replica, cold_start=max(0.0, time.time() - task.created_at))
        if handle is not None:
            self._handles[task.id] = handle

    async def _check_alive(self, replica: Replica) -> None:
        status = await self.backend.status(replica.id)
        if status is None or not status.running:
            raise ReplicaStartError(
                f"replica {replica.name} stopped before it was ready "
                f"(exit code {status.exit_code if status else None})"
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
            if was_serving:
                pool.put_back(handle)  # a closed pool's tasks are the engine's to stop
            return
        pool.forget(handle, str(error))

    async def stop(self) -> None:
        if self.warm is not None:
            await self.warm.stop()
        pending = [*self._readying.values(), *self._settings.values()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        for pool in self._pools.values():
            pool.close()
