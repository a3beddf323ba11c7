"""A replica supply with no engine: replicas exist in memory only.

What httpx's MockTransport is to a client, this is to the platform: the pool,
`Platform.invoke` and the autoscaler's loop run on it unchanged, without
Docker, in microseconds. A start is immediate, or waits while `hold` is set;
`fail_next` makes the next starts fail; `lose` makes the "engine" lose a
replica, as a crash would (the next `refresh`, or a call that cannot reach it,
finds out). Paired with a fake replica client (tests/unit/fakes.py).

It is also the smallest complete supply: a new engine starts from here.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from runtime.backends.base import Replica
from runtime.errors import FunctionUnavailable, ReplicaUnreachable
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.scaling.decide import Observation
from runtime.supply.base import FunctionProgress, Recipe

log = logging.getLogger("faas.supply")


class MemorySupply:
    refresh_interval = 0.05

    def local_demand(self, pool: FunctionPool) -> int:
        return pool.local_demand()

    def warm_status(self) -> None:
        return None

    def __init__(self) -> None:
        self.pools: dict[str, FunctionPool] = {}
        self.recipes: dict[str, Recipe] = {}
        self.running: dict[str, Replica] = {}
        """Replica id -> replica, for every replica the "engine" runs."""
        self.started: list[Replica] = []
        self.stopped: list[str] = []
        """Ids of the replicas taken back (scaled down, drained, shut down), in order."""
        self.hold: asyncio.Event | None = None
        """While set to an event that is not set, starts wait for it."""
        self._faults: collections.deque[Exception] = collections.deque()
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what tests do to it -----------------------------------------------------------

    def fail_next(self, *errors: Exception) -> None:
        """The next starts fail with these, in order (FunctionUnavailable fails the function)."""
        self._faults.extend(errors)

    def lose(self, replica: Replica) -> None:
        """The replica exits without a word, as a crashed container would."""
        self.running.pop(replica.id, None)

    # -- the supply --------------------------------------------------------------------

    def add(self, pool: FunctionPool) -> None:
        self.pools[pool.name] = pool

    def use(self, pool: FunctionPool, recipe: Recipe) -> None:
        self.recipes[pool.name] = recipe

    async def build(
        self,
        pools: Sequence[FunctionPool],
        base_ids: Mapping[str, str],
        progress: FunctionProgress,
    ) -> None:
        pass

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        pass

    async def prepare(self, pool: FunctionPool) -> None:
        pass

    async def start_replica(self, pool: FunctionPool) -> None:
        pool.starting += 1
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self._faults:
                raise self._faults.popleft()
        except FunctionUnavailable as exc:
            pool.mark_failed(str(exc), exc.detail)
            return
        except Exception as exc:
            log.warning("replica failed to start", extra={"function": pool.name, "error": str(exc)})
            return
        finally:
            pool.starting -= 1
        number = next(self._numbers)
        replica = Replica(f"m{number}", f"{pool.name}-{number}", pool.name, f"memory:{number}", "")
        self.running[replica.id] = replica
        self.started.append(replica)
        pool.observers.replica_started(replica)
        if pool.add(replica, cold_start=0.0) is None:
            self._stop(replica.id)

    async def replace(self, pool: FunctionPool) -> None:
        old = list(pool.replicas)
        await asyncio.gather(*(self.start_replica(pool) for _ in old))
        for handle in old:
            pool.take_out(handle)

    async def remove(self, pool: FunctionPool) -> None:
        if self.pools.get(pool.name) is pool:
            del self.pools[pool.name]
        for handle in pool.close():
            self._stop(handle.replica.id)

    def observe(self, pool: FunctionPool, now: float) -> Observation | None:
        if pool.error is not None or pool.image is None:
            return None
        return Observation(now, pool.depth(), pool.in_flight, pool.ready_count, pool.starting)

    def scale(self, pool: FunctionPool, current: int, desired: int) -> int:
        if desired > current:
            for _ in range(desired - current):
                self._spawn(self.start_replica(pool))
            return desired
        return current - len(pool.drain(min(current - desired, pool.ready_count)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh(self) -> None:
        for pool in list(self.pools.values()):
            for handle in [*pool.replicas, *pool.draining]:
                if handle.replica.id not in self.running:
                    pool.forget(handle, "it exited")

    async def unreachable(
        self,
        pool: FunctionPool,
        handle: ReplicaHandle,
        error: ReplicaUnreachable,
        *,
        was_serving: bool,
    ) -> None:
        if handle.replica.id in self.running:
            if was_serving and not pool.put_back(handle):
                self._stop(handle.replica.id)
            return
        pool.forget(handle, str(error))

    def take_back(self, pool: FunctionPool, handle: ReplicaHandle) -> None:
        self._stop(handle.replica.id)

    def _stop(self, replica_id: str) -> None:
        self.running.pop(replica_id, None)
        self.stopped.append(replica_id)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self.pools.values():
            for handle in pool.close():
                self._stop(handle.replica.id)
