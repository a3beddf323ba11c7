"""The loop that observes every function, calls `decide`, and applies the result.

It wakes on a short interval, and at once when a call starts waiting in a
queue, so 0 -> 1 does not wait for a tick. Scale-up starts replicas in the
background; scale-down drains the least busy ones. Every second it also
compares the pools with what the backend reports and forgets replicas whose
container has exited, so the next decision replaces them; and, with a
`reconciler` (runtime/reconcile.py), every few seconds it removes the
containers that no pool tracks, off the scaling path.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from runtime.backends.base import Backend
from runtime.pool import FunctionPool
from runtime.reconcile import Reconciler
from runtime.scaling.decide import Decision, History, Observation, decide

log = logging.getLogger("faas.scale")

TICK = 0.25
HEALTH_INTERVAL = 1.0


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    """Wall-clock time (epoch seconds)."""
    function: str
    before: int
    after: int
    reason: str


class Autoscaler:
    health_interval = HEALTH_INTERVAL

    def __init__(self, pools: Mapping[str, FunctionPool], backend: Backend) -> None:
        self.pools = pools
        self.events: collections.deque[ScaleEvent] = collections.deque(maxlen=500)
        self.on_scale: Callable[[ScaleEvent], None] = lambda event: None
        self._backend = backend
        self._histories: dict[str, History] = {name: History() for name in pools}
        self._wake = asyncio.Event()
        self._starts: set[asyncio.Task[None]] = set()
        self.reconciler: Reconciler | None = None
        """Removes the containers no pool tracks, when the backend can list them."""
        self._sweep: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_health_check = loop.time() + self.health_interval
        next_sweep = loop.time()
        while True:
            try:
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            now = loop.time()
            for pool in self.pools.values():
                self.reconcile(pool, now)
            if now >= next_health_check:
                next_health_check = now + self.health_interval
                try:
                    await self.check_health()
                except Exception as exc:  # the engine did not answer: the next one tries again
                    log.warning("health check failed", extra={"error": str(exc) or repr(exc)})
            if self.reconciler is not None and now >= next_sweep:
                next_sweep = now + self.reconciler.interval
                if self._sweep is None or self._sweep.done():
                    self._sweep = loop.create_task(self._reconcile_containers(self.reconciler))

    async def _reconcile_containers(self, reconciler: Reconciler) -> None:
        try:
            await reconciler.sweep()
        except Exception as exc:  # the engine did not answer: the next sweep tries again
            log.warning(
                "listing the project's containers failed",
                extra={"error": str(exc) or type(exc).__name__},
            )

    def reconcile(self, pool: FunctionPool, now: float) -> None:
        if pool.error is not None or pool.image is None:
            return
        ready, starting = len(pool.replicas), max(0, pool.starting - pool.replacing)
        observation = Observation(now, pool.depth(), pool.in_flight, ready, starting)
        decision = self._decide(pool, observation)
        current, desired = ready + starting, decision.desired
        if desired > current:
            for _ in range(desired - current):
                task = asyncio.get_running_loop().create_task(pool.start_replica())
                self._starts.add(task)
                task.add_done_callback(self._started)
        elif desired < current:
            desired = current - len(pool.drain(min(current - desired, ready)))
        if desired != current:
            self._record(pool.spec.name, current, desired, decision.reason)

    def _decide(self, pool: FunctionPool, observation: Observation) -> Decision:
        """Decide, and remember the window that the next decision needs."""
        name = pool.spec.name
        decision = decide(observation, pool.spec.scale, self._histories.get(name, History()))
        self._histories[name] = decision.history
        return decision

    def _record(self, function: str, before: int, after: int, reason: str) -> None:
        event = ScaleEvent(time.time(), function, before, after, reason)
        self.events.append(event)
        log.info(
            f"scale {function} {before} -> {after}",
            extra={"function": function, "reason": reason},
        )
        self.on_scale(event)

    async def check_health(self) -> None:
        listed_at = time.time()
        running = {status.id for status in await self._backend.replicas() if status.running}
        for pool in self.pools.values():
            for handle in [*pool.replicas, *pool.draining]:
                if handle.started_at < listed_at and handle.replica.id not in running:
                    pool.forget(handle, "its container exited")

    def _started(self, task: asyncio.Task[None]) -> None:
        self._starts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a replica start failed unexpectedly", exc_info=task.exception())

    async def stop(self) -> None:
        tasks = [*self._starts, *([self._sweep] if self._sweep is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
