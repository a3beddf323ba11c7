"""Autoscaling for service backends (Swarm): set replica counts, learn the replicas.

Every tick the gateway lists its project's tasks: a task that runs and has an
address is checked for readiness and put to work; a task that no longer runs
(the engine stopped it, scaled down, or it crashed) is retired, its calls in
flight finishing. The gateway that leads (see `coordination`) also decides each
function's count on the demand of all gateways and sets it on the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from runtime.backends.base import Replica, ServiceBackend, Task
from runtime.errors import FaasError, FunctionUnavailable, ReplicaStartError
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.replica_client import ReplicaClient
from runtime.scaling.autoscaler import Autoscaler
from runtime.scaling.coordination import Alone, Coordination, Demand
from runtime.scaling.decide import Observation

log = logging.getLogger("faas.scale")

SYNC_INTERVAL = 0.25
READY_TIMEOUT = 60.0


class ServiceAutoscaler(Autoscaler):
    health_interval = SYNC_INTERVAL

    def __init__(
        self,
        pools: Mapping[str, FunctionPool],
        backend: ServiceBackend,
        client: ReplicaClient,
        coordination: Coordination | None = None,
    ) -> None:
        super().__init__(pools, backend)
        self.coordination: Coordination = coordination or Alone()
        self.counts: dict[str, int] = {}
        """The replica count each service is set to, as last read or set."""
        self._services = backend
        self._client = client
        self._handles: dict[str, ReplicaHandle] = {}
        """Task id -> the handle of a task at work."""
        self._readying: dict[str, asyncio.Task[None]] = {}
        self._settings: dict[str, asyncio.Task[None]] = {}
        """Function -> the change of its count on its way to the engine."""

    def reconcile(self, pool: FunctionPool, now: float) -> None:
        if pool.image is None:
            return
        name = pool.spec.name
        current = self.counts.get(name, 0)
        if pool.error is not None:
            # A failed function answers from its recorded error; its tasks would only idle.
            if current > 0 and self.coordination.leads():
                self._change(name, current, 0, "the function failed")
            return
        ready = min(len(pool.replicas), current)
        pool.starting = current - ready
        if not self.coordination.leads():
            return
        demand = self.coordination.demand(name, Demand(pool.depth(), pool.in_flight))
        observation = Observation(now, demand.queued, demand.in_flight, ready, current - ready)
        decision = self._decide(pool, observation)
        if decision.desired == current:
            return
        pool.starting = max(0, decision.desired - ready)
        self._change(name, current, decision.desired, decision.reason)

    def _change(self, name: str, current: int, desired: int, reason: str) -> None:
        self.counts[name] = desired
        self._record(name, current, desired, reason)
        previous = self._settings.get(name)
        self._settings[name] = asyncio.get_running_loop().create_task(
            self._set(name, desired, previous)
        )

    async def _set(self, function: str, count: int, previous: asyncio.Task[None] | None) -> None:
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await self._services.set_replicas(function, count)
        except FaasError as exc:
            log.warning(
                "setting the replica count failed",
                extra={"function": function, "replicas": count, "error": str(exc)},
            )

    async def check_health(self) -> None:
        """Make every pool's replicas the running tasks of its service."""
        tasks = await self._services.tasks()
        counts = await self._services.desired_replicas()
        for name in self.pools:
            setting = self._settings.get(name)
            # While our own change is on its way, the engine still reports the old count.
            if setting is None or setting.done():
                self.counts[name] = counts.get(name, 0)
        running = {task.id: task for task in tasks if task.running}
        for task in running.values():
            pool = self.pools.get(task.function)
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
                pool = self.pools.get(handle.replica.function)
                if pool is not None:
                    pool.retire(handle)
        for task_id, checking in list(self._readying.items()):
            if task_id not in running:
                checking.cancel()

    async def _put_to_work(self, pool: FunctionPool, task: Task) -> None:
        assert task.address is not None
        replica = Replica(task.id, task.name, task.function, task.address, task.token)
        try:
            loop = asyncio.get_running_loop()
            pool.on_replica_started(replica)
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
        if pool.spec.name not in self.pools or self.pools[pool.spec.name] is not pool:
            return  # the function was removed or replaced meanwhile
        pool.adopt(replica, cold_start=max(0.0, time.time() - task.created_at))
        self._handles[task.id] = pool.replicas[-1]

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._services.status(replica.id)
        if status is None or not status.running:
            raise ReplicaStartError(
                f"replica {replica.name} stopped before it was ready "
                f"(exit code {status.exit_code if status else None})"
            )

    def forget_function(self, function: str) -> None:
        """Drop what is known of a function's tasks (it was removed)."""
        self.counts.pop(function, None)
        for task_id, handle in list(self._handles.items()):
            if handle.replica.function == function:
                del self._handles[task_id]

    async def stop(self) -> None:
        await super().stop()
        pending = [*self._readying.values(), *self._settings.values()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
