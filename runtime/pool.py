"""One function's call queue and the slots of its ready replicas.

The way httpcore's connection pool assigns requests to connections: a call
takes a free slot on a ready replica (at most `slot_limit` calls in flight per
replica, the least busy first) or waits in the function's queue, bounded by
`scale.max_queue`. Whenever a slot frees or a replica is added, the oldest
waiting call gets it (FIFO).

The pool neither starts nor stops anything. The replica supply
(runtime/supply/) adds the replicas it made ready, takes out of service the
ones it drains, and takes back each replica the pool no longer routes to once
its last call has finished (`take_back`). What happens here is reported to the
platform's observers (runtime/observers.py): a call starting to wait (so the
autoscaler goes 0 -> 1 at once), a cold start, a lost replica.

A failed function (`mark_failed`) answers every waiting and later call with
its error until the failure is cleared.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from runtime.backends.base import Replica
from runtime.errors import FunctionUnavailable, QueueFull
from runtime.observers import PoolObserver
from runtime.spec import FunctionSpec

log = logging.getLogger("faas.pool")

BURST_FACTOR = 4
"""How far past `target_concurrency` a replica of a function with no `scale.concurrency`
takes calls while others start (`FunctionPool.slot_limit`)."""


class FunctionState(StrEnum):
    BUILDING = "building"
    IDLE = "idle"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


@dataclass(eq=False)
class ReplicaHandle:
    replica: Replica
    in_flight: int = 0
    served: int = 0
    """Calls it was given: whoever samples it sees that calls came and went between two looks."""
    started_at: float = field(default_factory=time.time)
    leaving: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once it is taken out of service: its open WebSockets close (code 1001)."""


def no_backlog(function: str) -> int:
    return 0


class FunctionPool:
    def __init__(
        self,
        spec: FunctionSpec,
        observers: PoolObserver,
        *,
        take_back: Callable[[FunctionPool, ReplicaHandle], None],
        backlog: Callable[[str], int] = no_backlog,
    ) -> None:
        self.spec = spec
        """Its settings now (the platform replaces them on a reload or a scale override)."""
        self.observers = observers
        self.starting = 0
        """Replicas asked for and not ready yet. Written by the replica supply only."""
        self._take_back = take_back
        """The supply's: a replica out of service whose calls have finished is its again."""
        self._backlog = backlog
        """Work waiting outside this pool (async calls, events) that counts toward depth."""
        self._image: str | None = None
        self._error: str | None = None
        self._error_detail: str | None = None
        self._ready: list[ReplicaHandle] = []
        self._draining: list[ReplicaHandle] = []
        self._aside: list[ReplicaHandle] = []
        """Replicas a call could not reach, until the supply knows whether they run."""
        self._waiters: collections.deque[asyncio.Future[ReplicaHandle]] = collections.deque()
        self._closed = False

    # -- state ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def image(self) -> str | None:
        """The image its replicas run; None until it is built."""
        return self._image

    @property
    def error(self) -> str | None:
        """Why the function is unavailable, as callers are told; None while it is not."""
        return self._error

    @property
    def error_detail(self) -> str | None:
        """What failed inside the function (for the admin API and logs, never callers)."""
        return self._error_detail

    @property
    def replicas(self) -> list[ReplicaHandle]:
        """The replicas in service (ready), in the order they were added (a copy)."""
        return list(self._ready)

    @property
    def ready_count(self) -> int:
        """How many replicas are in service (without copying them)."""
        return len(self._ready)

    @property
    def draining(self) -> list[ReplicaHandle]:
        """Replicas out of service that still finish calls (a copy)."""
        return list(self._draining)

    @property
    def closed(self) -> bool:
        """The function was removed, or the platform stops: nothing is added any more."""
        return self._closed

    @property
    def state(self) -> FunctionState:
        if self._error is not None:
            return FunctionState.FAILED
        if self._image is None:
            return FunctionState.BUILDING
        if self._ready:
            return FunctionState.READY
        if self.starting:
            return FunctionState.STARTING
        return FunctionState.IDLE

    @property
    def slot_limit(self) -> int:
        """Calls in flight per replica: `scale.concurrency` when set (a hard limit); else
        `target_concurrency`, which is what the autoscaler aims for rather than a limit,
        so while calls wait for replicas still starting, ready ones take up to
        BURST_FACTOR times as many (those calls would otherwise wait out the starts)."""
        scale = self.spec.scale
        if scale.concurrency:
            return scale.concurrency
        if self.starting and self._waiters:
            return scale.target_concurrency * BURST_FACTOR
        return scale.target_concurrency

    @property
    def in_flight(self) -> int:
        return sum(h.in_flight for h in self._ready) + sum(h.in_flight for h in self._draining)

    def depth(self) -> int:
        """Queue depth as the autoscaler sees it: the one place it is read."""
        return len(self._waiters) + self._backlog(self.spec.name)

    def local_demand(self) -> int:
        """Calls waiting in this gateway's queue or in flight here (not the shared backlog)."""
        return len(self._waiters) + self.in_flight

    def mark_built(self, image: str) -> None:
        self._image = image

    def mark_failed(self, reason: str, detail: str | None = None) -> None:
        """`reason` is told to callers; `detail` (what failed inside the function) is logged
        and shown to the admin API only."""
        self._error = reason
        self._error_detail = detail
        extra = {"function": self.spec.name, "error": reason}
        if detail:
            extra["detail"] = detail
        log.error("function failed", extra=extra)
        self._fail_waiters(
            FunctionUnavailable(f"function {self.spec.name} is unavailable: {reason}")
        )

    def clear_failure(self) -> None:
        """The cause is gone (a fixed import, a new image): the next call starts afresh."""
        self._error = None
        self._error_detail = None

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    # -- calls ---------------------------------------------------------------

    async def acquire(self) -> ReplicaHandle:
        """A replica slot for one call; waits in the queue when none is free.

        The caller bounds the wait (asyncio.timeout) and must `release` the slot.
        """
        if self._error is not None:
            raise FunctionUnavailable(f"function {self.spec.name} is unavailable: {self._error}")
        if self._image is None:
            raise FunctionUnavailable(f"function {self.spec.name} is still being built")
        if not self._waiters:
            handle = self._free_replica()
            if handle is not None:
                handle.in_flight += 1
                handle.served += 1
                return handle
        if len(self._waiters) >= self.spec.scale.max_queue:
            raise QueueFull(
                f"{self.spec.name} has {len(self._waiters)} calls waiting, its limit "
                f"(scale.max_queue); retry later",
                retry_after=1.0,
            )
        waiter: asyncio.Future[ReplicaHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.observers.demand(self.spec.name)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # a slot was handed over as we gave up
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self, handle: ReplicaHandle) -> None:
        handle.in_flight -= 1
        if handle in self._draining:
            if handle.in_flight == 0:
                self._draining.remove(handle)
                self._take_back(self, handle)
            return
        self._dispatch()

    def can_take_now(self) -> bool:
        """Whether a call arriving now would get a replica slot without waiting."""
        return not self._waiters and self._free_replica() is not None

    def _free_replica(self) -> ReplicaHandle | None:
        best: ReplicaHandle | None = None
        limit = self.slot_limit
        for handle in self._ready:
            if handle.in_flight < limit and (best is None or handle.in_flight < best.in_flight):
                best = handle
        return best

    def _dispatch(self) -> None:
        while self._waiters:
            handle = self._free_replica()
            if handle is None:
                return
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            handle.in_flight += 1
            handle.served += 1
            waiter.set_result(handle)

    # -- replicas in and out of service --------------------------------------------

    def add(
        self, replica: Replica, cold_start: float, phases: Mapping[str, float] | None = None
    ) -> ReplicaHandle | None:
        """Put a ready replica to work; the oldest waiting calls get its slots.

        None when the pool is closed: the replica stays the caller's, to stop.
        """
        if self._closed:
            return None
        handle = ReplicaHandle(replica)
        self._ready.append(handle)
        self._dispatch()
        self.observers.cold_start(self.spec.name, cold_start, phases or {})
        log.info(
            "replica ready",
            extra={
                "function": self.spec.name,
                "replica": replica.name,
                "cold_start_ms": round(cold_start * 1000, 1),
                **(phases or {}),
            },
        )
        return handle

    def drain(self, count: int) -> list[ReplicaHandle]:
        """Take `count` replicas out of service, least busy first; each goes back to the
        supply once idle."""
        chosen = sorted(self._ready, key=lambda h: (h.in_flight, -h.started_at))[:count]
        for handle in chosen:
            self.take_out(handle)
        return chosen

    def take_out(self, handle: ReplicaHandle) -> bool:
        """Route no more calls to `handle` (a successor replaces it, or the engine stops it);
        its calls in flight finish first. False when it was not in service."""
        if handle not in self._ready:
            return False
        self._ready.remove(handle)
        handle.leaving.set()
        if handle.in_flight:
            self._draining.append(handle)
        else:
            self._take_back(self, handle)
        return True

    def set_aside(self, handle: ReplicaHandle) -> bool:
        """A call could not reach the replica: route nothing more to it until the supply
        knows why (`put_back` or `forget`). Returns whether it was in service.

        Without setting it aside first, every call queued behind it would be handed
        the dead replica's freed slot, and fail in turn, before the engine answers.
        """
        if handle not in self._ready:
            return False
        self._ready.remove(handle)
        self._aside.append(handle)
        return True

    def put_back(self, handle: ReplicaHandle) -> bool:
        """A replica set aside still runs: route calls to it again. False when the pool
        closed meanwhile (the caller stops it)."""
        if handle not in self._aside:
            return True  # decided already
        self._aside.remove(handle)
        if self._closed:
            return False
        self._ready.append(handle)
        self._dispatch()
        return True

    def forget(self, handle: ReplicaHandle, why: str) -> bool:
        """Drop a replica that exited (in service, set aside or draining). Returns whether
        it was this pool's: its container, if any, is then the caller's to remove."""
        for replicas in (self._ready, self._aside, self._draining):
            if handle in replicas:
                replicas.remove(handle)
                break
        else:
            return False
        log.warning(
            "replica lost",
            extra={"function": self.spec.name, "replica": handle.replica.name, "why": why},
        )
        self.observers.replica_lost(handle.replica, why)
        return True

    def holds(self) -> list[ReplicaHandle]:
        """Every replica this pool routes to or waits on: in service, set aside, draining."""
        return [*self._ready, *self._aside, *self._draining]

    def close(self) -> list[ReplicaHandle]:
        """Fail every waiting call and give up every replica in service or draining
        (returned, for the caller to stop): the function was removed, or the platform
        stops. One set aside is the caller of `put_back`'s."""
        self._closed = True
        self._fail_waiters(FunctionUnavailable(f"{self.spec.name} is shutting down"))
        handles = [*self._ready, *self._draining]
        self._ready, self._draining = [], []
        for handle in handles:
            handle.leaving.set()
        return handles
