"""The loop that observes every function, calls `decide`, and has the supply apply it.

It wakes on a short interval, and at once when work starts waiting (it
observes demand, runtime/observers.py), so 0 -> 1 does not wait for a tick.
What is counted and how a count is reached is the replica supply's
(runtime/supply/): containers started and drained, or a service's count set
by the leading gateway. Every `supply.refresh_interval` the supply compares
the pools with what the engine runs. A failed function is brought to zero when
its supply has something to stop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.observers import PoolObserver
from runtime.pool import FunctionPool
from runtime.scaling.decide import History, decide
from runtime.supply.base import ReplicaSupply

log = logging.getLogger("faas.scale")

TICK = 0.25


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    """Wall-clock time (epoch seconds)."""
    function: str
    before: int
    after: int
    reason: str


class Autoscaler(PoolObserver):
    def __init__(
        self,
        pools: Mapping[str, FunctionPool],
        supply: ReplicaSupply,
        observers: PoolObserver,
    ) -> None:
        self.pools = pools
        self.events: collections.deque[ScaleEvent] = collections.deque(maxlen=500)
        self._supply = supply
        self._observers = observers
        self._histories: dict[str, History] = {}
        self._wake = asyncio.Event()

    def demand(self, function: str) -> None:
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            now = loop.time()
            for pool in list(self.pools.values()):
                self.reconcile(pool, now)
            if now >= next_refresh:
                next_refresh = now + self._supply.refresh_interval
                try:
                    await self._supply.refresh()
                except Exception as exc:  # the engine did not answer: the next one tries again
                    log.warning("health check failed", extra={"error": str(exc) or repr(exc)})
            try:
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    def reconcile(self, pool: FunctionPool, now: float) -> None:
        """One decision for `pool` at loop time `now`, applied through the supply."""
        observation = self._supply.observe(pool, now)
        if observation is None:
            return
        current = observation.ready + observation.starting
        if pool.error is not None:
            desired, reason = 0, "the function failed"
        else:
            name = pool.name
            decision = decide(observation, pool.spec.scale, self._histories.get(name, History()))
            self._histories[name] = decision.history
            desired, reason = decision.desired, decision.reason
        if desired == current:
            return
        after = self._supply.scale(pool, current, desired)
        if after != current:
            self._record(pool.name, current, after, reason)

    def forget(self, function: str) -> None:
        """A function was removed: its decisions start afresh if it comes back."""
        self._histories.pop(function, None)

    def _record(self, function: str, before: int, after: int, reason: str) -> None:
        event = ScaleEvent(time.time(), function, before, after, reason)
        self.events.append(event)
        log.info(
            f"scale {function} {before} -> {after}",
            extra={"function": function, "reason": reason},
        )
        self._observers.scaled(event)
