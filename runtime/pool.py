"""The replicas of one function, and the queue of calls waiting for them.

A call takes a free slot on a ready replica (at most `slot_limit` calls in
flight per replica) or waits in the function's queue, which is bounded by
`scale.max_queue`. Whenever a slot frees or a replica becomes ready, the
oldest waiting call gets it. The pool never decides how many replicas to
run: it starts and drains them when the autoscaler says so, and tells the
autoscaler when a call starts waiting so that 0 -> 1 happens at once.

A cold start takes a watchdog from the project's warm pool when the function
can be sent to one (runtime/warm_pool.py); otherwise the function keeps one
replica created ahead (a stopped container, no process), so a cold start is a
container start, not a create and a start.

Every container of a start is tracked by this pool from the moment the engine
gives its id (`container_ids`) until it is ready or removed: whatever fails
after that (the engine, readiness, the import, an observer, the caller's
cancellation) hands it to `Removals`, which retries; see runtime/reconcile.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from runtime.backends.base import Backend, CreatedReplica, Replica, ReplicaSpec
from runtime.errors import (
    FaasError,
    FunctionUnavailable,
    QueueFull,
    ReplicaStartError,
    ReplicaUnreachable,
)
from runtime.reconcile import Removals
from runtime.replica_client import ReplicaClient
from runtime.spec import FunctionSpec
from runtime.warm_pool import WarmPool

log = logging.getLogger("faas.pool")

READY_TIMEOUT = 30.0
SPARE_DELAY = 1.0
START_FAILURES_BEFORE_FAILED = 3
"""Consecutive replica start failures (not import errors) after which the function is failed."""
WARM_ATTEMPTS = 2
"""Warm watchdogs a start tries before it starts a container of its own."""


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
    started_at: float = field(default_factory=time.time)


ColdStartObserver = Callable[[str, float], None]


class FunctionPool:
    def __init__(
        self,
        spec: FunctionSpec,
        backend: Backend,
        client: ReplicaClient,
        removals: Removals | None = None,
    ) -> None:
        self.spec = spec
        self.image: str | None = None
        self.error: str | None = None
        self.error_detail: str | None = None
        self.replicas: list[ReplicaHandle] = []
        self.draining: list[ReplicaHandle] = []
        self.starting = 0
        self.replacing = 0
        """Of `starting`, replicas that replace running ones (a roll): not new capacity."""
        self.last_cold_start: float | None = None
        self.last_cold_start_phases: dict[str, float] = {}
        """Where the last cold start went: getting a container, starting it, readiness."""
        self.on_demand: Callable[[], None] = lambda: None
        """Called when a call starts waiting: the autoscaler wakes up."""
        self.on_cold_start: ColdStartObserver = lambda function, seconds: None
        self.on_replica_started: Callable[[Replica], None] = lambda replica: None
        """Called once a replica's container runs (before it is ready): logs follow it."""
        self.secret_files: dict[str, Path] = {}
        self.code_mount: tuple[str, str] | None = None
        self.reload_error: str | None = None
        """Why the last code reload failed (the previous code keeps serving), if it did."""
        self.backlog: Callable[[], int] = lambda: 0
        """Work waiting outside this pool (async calls, events) that counts toward depth."""
        self._backend = backend
        self._client = client
        self._removals = removals if removals is not None else Removals(backend)
        self._pending: set[str] = set()
        """Containers of starts under way, once the engine has given their id."""
        self._aside: list[ReplicaHandle] = []
        """Replicas set aside by `set_aside` until `replica_failed` decides."""
        self._waiters: collections.deque[asyncio.Future[ReplicaHandle]] = collections.deque()
        self._spare: asyncio.Task[CreatedReplica] | None = None
        self._start_failures = 0
        self._building = True
        self._closed = False
        self._spare_timer: asyncio.TimerHandle | None = None
        self.warm: WarmPool | None = None
        """The project's warm watchdogs, when the backend has them."""
        self.warm_code: Mapping[str, bytes] | None = None
        """The code a warm watchdog is sent (`app/...`; empty in development, where warm
        watchdogs mount it); None: this function cannot start on one (requirements,
        another base image)."""

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> FunctionState:
        if self.error is not None:
            return FunctionState.FAILED
        if self._building:
            return FunctionState.BUILDING
        if self.replicas:
            return FunctionState.READY
        if self.starting:
            return FunctionState.STARTING
        return FunctionState.IDLE

    @property
    def slot_limit(self) -> int:
        scale = self.spec.scale
        return scale.concurrency or scale.target_concurrency

    @property
    def in_flight(self) -> int:
        return sum(h.in_flight for h in self.replicas) + sum(h.in_flight for h in self.draining)

    def depth(self) -> int:
        """Queue depth as the autoscaler sees it: the one place it is read."""
        return len(self._waiters) + self.backlog()

    def local_demand(self) -> int:
        """Calls waiting in this gateway's queue or in flight here (not the shared backlog)."""
        return len(self._waiters) + self.in_flight

    def mark_built(self, image: str) -> None:
        self.image = image
        self._building = False

    def mark_failed(self, reason: str, detail: str | None = None) -> None:
        """`reason` is told to callers; `detail` (what failed inside the function) is logged
        and shown to the admin API only."""
        self.error = reason
        self.error_detail = detail
        self._building = False
        extra = {"function": self.spec.name, "error": reason}
        if detail:
            extra["detail"] = detail
        log.error("function failed", extra=extra)
        error = FunctionUnavailable(f"function {self.spec.name} is unavailable: {reason}")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    # -- calls ---------------------------------------------------------------

    async def acquire(self) -> ReplicaHandle:
        """A replica slot for one call; waits in the queue when none is free.

        The caller bounds the wait (asyncio.timeout) and must `release` the slot.
        """
        if self.error is not None:
            raise FunctionUnavailable(f"function {self.spec.name} is unavailable: {self.error}")
        if self.image is None:
            raise FunctionUnavailable(f"function {self.spec.name} is still being built")
        if not self._waiters:
            handle = self._free_replica()
            if handle is not None:
                handle.in_flight += 1
                return handle
        if len(self._waiters) >= self.spec.scale.max_queue:
            raise QueueFull(
                f"{self.spec.name} has {len(self._waiters)} calls waiting, its limit "
                f"(scale.max_queue); retry later",
                retry_after=1.0,
            )
        waiter: asyncio.Future[ReplicaHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.on_demand()
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # a slot was handed over as we gave up
            else:
                self._remove_waiter(waiter)
            raise

    def release(self, handle: ReplicaHandle) -> None:
        handle.in_flight -= 1
        if handle in self.draining:
            if handle.in_flight == 0:
                self.draining.remove(handle)
                self._stop(handle)
            return
        self._dispatch()

    def can_take_now(self) -> bool:
        """Whether a call arriving now would get a replica slot without waiting."""
        return not self._waiters and self._free_replica() is not None

    def _free_replica(self) -> ReplicaHandle | None:
        best: ReplicaHandle | None = None
        for handle in self.replicas:
            if handle.in_flight < self.slot_limit and (
                best is None or handle.in_flight < best.in_flight
            ):
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
            waiter.set_result(handle)

    def _remove_waiter(self, waiter: asyncio.Future[ReplicaHandle]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    # -- replicas --------------------------------------------------------------

    def replica_spec(self) -> ReplicaSpec:
        assert self.image is not None
        return ReplicaSpec(
            function=self.spec.name,
            image=self.image,
            token=secrets.token_urlsafe(32),
            handler_file=self.spec.handler_file,
            handler_name=self.spec.handler_name,
            environment=self.spec.environment,
            memory=self.spec.memory,
            cpus=self.spec.cpus,
            timeout=self.spec.timeout,
            secret_files={name: str(path) for name, path in self.secret_files.items()},
            code_mount=self.code_mount,
        )

    @property
    def starts_warm(self) -> bool:
        return self.warm is not None and self.warm_code is not None

    def container_ids(self) -> set[str]:
        """Every container this pool is responsible for now (for the reconcile): its
        replicas, the ones draining, the starts under way and the spare."""
        handles = [*self.replicas, *self.draining, *self._aside]
        ids = {h.replica.id for h in handles} | self._pending
        spare = self._spare
        if spare is not None and spare.done() and _succeeded(spare):
            ids.add(spare.result().id)
        return ids

    def prepare_spare(self) -> None:
        """Create the next replica ahead of need, unless one is being made already.

        A function that starts on warm watchdogs keeps none: at zero it holds nothing.
        """
        if self.starts_warm:
            return
        if self._spare is None and self.image is not None and not self.error and not self._closed:
            self._spare = asyncio.get_running_loop().create_task(
                self._backend.create(self.replica_spec())
            )

    async def _take_spare(self) -> CreatedReplica:
        spare, self._spare = self._spare, None
        if spare is not None:
            try:
                return await spare
            except FaasError as exc:
                log.warning(
                    "spare replica unusable", extra={"function": self.spec.name, "error": str(exc)}
                )
        return await self._backend.create(self.replica_spec())

    async def start_replica(self) -> None:
        """Start one replica and put it to work once its watchdog answers ready.

        Never raises for a failed start (it is logged and counted); every container
        it made is tracked or being removed when it returns, cancelled or not.
        """
        if self.starts_warm:
            for _ in range(WARM_ATTEMPTS):  # one may have died while it waited
                started = await self._start_warm()
                if started is None:
                    break  # none came in time: a container of its own
                if started:
                    return
        await self._start_container()

    async def _start_warm(self) -> bool | None:
        """Start on a warm watchdog: True when started (or the function failed), False
        when the watchdog could not take it, None when none came."""
        assert self.warm is not None and self.warm_code is not None
        began = time.perf_counter()
        # Counted while it waits for a warm watchdog too, or the autoscaler would start
        # another for the same demand.
        self.starting += 1
        try:
            started = await self.warm.start(self.replica_spec(), self.warm_code)
        except FunctionUnavailable as exc:
            self.mark_failed(str(exc), exc.detail)
            return True
        except Exception as exc:
            log.warning(
                "warm watchdog unusable",
                extra={"function": self.spec.name, "error": str(exc) or type(exc).__name__},
            )
            return False
        finally:
            self.starting -= 1
        if started is None:
            return None
        replica, phases = started
        # The warm pool tracked it up to here; from here it is this pool's.
        if self._ready(replica, time.perf_counter() - began, phases):
            self._notify_started(replica)
        return True

    async def _start_container(self) -> None:
        self.starting += 1
        began = time.perf_counter()
        replica_id: str | None = None
        try:
            created = await self._take_spare()
            replica_id = created.id
            self._pending.add(replica_id)
            created_at = time.perf_counter()
            replica = await self._backend.start(created)
            started_at = time.perf_counter()
            self._notify_started(replica)
            loop = asyncio.get_running_loop()
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except BaseException as exc:
            if replica_id is not None:
                self._pending.discard(replica_id)
                why = f"a start of {self.spec.name} failed: {type(exc).__name__}"
                self._removals.remove(replica_id, why=why)
            if not isinstance(exc, Exception):
                raise  # cancelled: the container is being removed
            self._start_failed(exc)
            return
        finally:
            self.starting -= 1
        self._pending.discard(replica.id)
        ready_at = time.perf_counter()
        self._start_failures = 0
        phases = {
            "create_ms": round((created_at - began) * 1000, 1),
            "start_ms": round((started_at - created_at) * 1000, 1),
            "ready_ms": round((ready_at - started_at) * 1000, 1),
        }
        if not self._ready(replica, ready_at - began, phases):
            return
        # The next spare is created a little later, so that creating it does not compete
        # for the engine and the GIL with the calls this replica is about to serve.
        self._spare_timer = asyncio.get_running_loop().call_later(SPARE_DELAY, self.prepare_spare)

    def _start_failed(self, exc: Exception) -> None:
        if isinstance(exc, FunctionUnavailable):
            self.mark_failed(str(exc), exc.detail)
            return
        self._start_failures += 1
        log.warning(
            "replica failed to start",
            extra={
                "function": self.spec.name,
                "error": str(exc) or type(exc).__name__,
                "attempt": self._start_failures,
            },
        )
        if self._start_failures >= START_FAILURES_BEFORE_FAILED:
            self.mark_failed(str(exc) or type(exc).__name__)

    def _notify_started(self, replica: Replica) -> None:
        """Tell the observer (log following) that a container runs; its failure is not
        the replica's."""
        try:
            self.on_replica_started(replica)
        except Exception as exc:
            log.warning(
                "following a replica's output failed",
                extra={"function": self.spec.name, "replica": replica.name, "error": str(exc)},
            )

    def _ready(self, replica: Replica, cold_start: float, phases: dict[str, float]) -> bool:
        """A started replica answered ready: put it to work. False when this pool is
        closed (its function was removed or the gateway stops): it is removed instead."""
        if self._closed:
            self._removals.remove(replica.id, why=f"{self.spec.name} is shutting down")
            return False
        self.last_cold_start = cold_start
        self.last_cold_start_phases = phases
        self.replicas.append(ReplicaHandle(replica))
        self._dispatch()
        try:
            self.on_cold_start(self.spec.name, cold_start)
        except Exception as exc:
            log.warning(
                "recording a cold start failed",
                extra={"function": self.spec.name, "error": str(exc)},
            )
        log.info(
            "replica ready",
            extra={
                "function": self.spec.name,
                "replica": replica.name,
                "cold_start_ms": round(cold_start * 1000, 1),
                **phases,
            },
        )
        return True

    def adopt(self, replica: Replica, cold_start: float) -> None:
        """Put to work a ready replica that the engine started (service backends)."""
        if self._closed:
            return  # the engine stops the tasks of a service being removed
        self._start_failures = 0
        self._ready(replica, cold_start, {})

    def retire(self, handle: ReplicaHandle) -> None:
        """Stop routing to a replica the engine is stopping; its calls in flight finish."""
        if handle in self.replicas:
            self.replicas.remove(handle)
            if handle.in_flight:
                self.draining.append(handle)
            log.info(
                "replica retired",
                extra={"function": self.spec.name, "replica": handle.replica.name},
            )

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._backend.status(replica.id)
        if status is None or not status.running:
            tail = (await self._backend.logs(replica.id, tail=20)).strip()
            code = status.exit_code if status else None
            reason = f"replica {replica.name} exited with code {code} before it was ready"
            if tail:
                reason += f"; its last output:\n{tail}"
            raise ReplicaStartError(reason)

    def drain(self, count: int) -> list[ReplicaHandle]:
        """Take `count` replicas out of service, least busy first; each stops once idle."""
        chosen = sorted(self.replicas, key=lambda h: (h.in_flight, -h.started_at))[:count]
        for handle in chosen:
            self.replicas.remove(handle)
            if handle.in_flight == 0:
                self._stop(handle)
            else:
                self.draining.append(handle)
        return chosen

    def _stop(self, handle: ReplicaHandle) -> None:
        """Stop an idle replica taken out of service (its calls have finished)."""
        self._removals.remove(handle.replica.id, grace=self.spec.timeout, why="scaled down")

    def set_aside(self, handle: ReplicaHandle) -> bool:
        """A call could not reach the replica: route nothing more to it until
        `replica_failed` knows why. Returns whether it was serving."""
        if handle not in self.replicas:
            return False
        self.replicas.remove(handle)
        self._aside.append(handle)
        return True

    async def replica_failed(
        self, handle: ReplicaHandle, error: ReplicaUnreachable, *, was_serving: bool
    ) -> None:
        """Drop a replica set aside (`set_aside`) if it is gone; one still running serves on.

        Without setting it aside first, every call queued behind it would be handed
        the dead replica's freed slot, and fail in turn, before the engine answers.
        """
        try:
            status = await self._backend.status(handle.replica.id)
            running = status is not None and status.running
        except Exception as exc:  # unknown counts as running: the health check forgets
            # it once the engine lists it as gone
            log.warning(
                "checking an unreachable replica failed",
                extra={"function": self.spec.name, "replica": handle.replica.name,
                       "error": str(exc) or type(exc).__name__},
            )  # fmt: skip
            running = True
        finally:
            with contextlib.suppress(ValueError):
                self._aside.remove(handle)
        if running:
            if was_serving and handle not in self.replicas:
                if self._closed:
                    self._removals.remove(handle.replica.id, why=f"{self.spec.name} stopped")
                else:
                    self.replicas.append(handle)
                    self._dispatch()
            return
        if was_serving:
            self.replicas.append(handle)  # so that `forget` logs and removes it
        self.forget(handle, str(error))

    def forget(self, handle: ReplicaHandle, why: str) -> None:
        """Remove a replica that exited; its container is removed in the background."""
        if handle not in self.replicas and handle not in self.draining:
            return
        log.warning(
            "replica lost",
            extra={"function": self.spec.name, "replica": handle.replica.name, "why": why},
        )
        if handle in self.replicas:
            self.replicas.remove(handle)
        else:
            self.draining.remove(handle)
        self._removals.remove(handle.replica.id, why="its container exited")

    async def reload_code(self) -> tuple[int, str | None]:
        """Ask every ready replica to import the current code; (reloaded, first error)."""
        error: str | None = None
        reloaded = 0
        for handle in list(self.replicas):
            try:
                await self._client.reload(handle.replica)
                reloaded += 1
            except FunctionUnavailable as exc:
                error = error or str(exc)
            except ReplicaUnreachable:
                continue  # it is going away; its successor imports the new code
        self.reload_error = error
        if error is None and self.error is not None and not self.replicas:
            self.error = None  # a failed import was fixed: the next call starts afresh
            self._start_failures = 0
        return reloaded, error

    async def roll(self) -> None:
        """Replace every replica (new image or settings): start new ones, then drain the old.

        Calls keep going to the old replicas until their successors are ready.
        """
        old = list(self.replicas)
        self.discard_spare()
        self.replacing += len(old)
        try:
            await asyncio.gather(*(self.start_replica() for _ in old))
        finally:
            self.replacing -= len(old)
        for handle in old:
            if handle in self.replicas:
                self.replicas.remove(handle)
                if handle.in_flight:
                    self.draining.append(handle)
                else:
                    self._stop(handle)
        self.prepare_spare()

    def discard_spare(self) -> None:
        """Drop the replica created ahead: it was made from an image or settings now stale."""
        spare, self._spare = self._spare, None
        if spare is None:
            return
        if spare.done():
            self._discard_created(spare)
        else:  # a creation under way: removed once the engine answers
            spare.add_done_callback(self._discard_created)

    def _discard_created(self, spare: asyncio.Task[CreatedReplica]) -> None:
        if _succeeded(spare):
            self._removals.remove(spare.result().id, why="a stale spare replica")

    async def stop_all(self) -> None:
        self._closed = True
        if self._spare_timer is not None:
            self._spare_timer.cancel()
        handles = self.replicas + self.draining
        self.replicas, self.draining = [], []
        error = FunctionUnavailable(f"{self.spec.name} is shutting down")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        why = f"{self.spec.name} is shutting down"
        stops = [self._removals.remove(h.replica.id, grace=2, why=why) for h in handles]
        self.discard_spare()
        await asyncio.gather(*stops, return_exceptions=True)


def _succeeded(task: asyncio.Task[CreatedReplica]) -> bool:
    """A finished creation that made a container (reading its exception marks it seen)."""
    return not task.cancelled() and task.exception() is None
