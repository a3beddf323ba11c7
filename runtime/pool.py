"""The replicas of one function: starting them on demand and picking one per call.

A call that finds no ready replica waits while one starts; concurrent first
calls share that one start. A replica that stops answering is checked with
the backend and dropped once it has exited, so the next call starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

from runtime.backends.base import Backend, Replica, ReplicaSpec
from runtime.errors import FunctionUnavailable, ReplicaStartError, ReplicaUnreachable
from runtime.replica_client import ReplicaClient
from runtime.spec import FunctionSpec

log = logging.getLogger("faas.pool")

READY_TIMEOUT = 30.0


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
    started_at: float = field(default_factory=time.time)


class FunctionPool:
    def __init__(self, spec: FunctionSpec, backend: Backend, client: ReplicaClient) -> None:
        self.spec = spec
        self.image: str | None = None
        self.error: str | None = None
        self.replicas: list[ReplicaHandle] = []
        self.last_cold_start: float | None = None
        self._backend = backend
        self._client = client
        self._starting: asyncio.Task[ReplicaHandle] | None = None
        self._building = True

    @property
    def state(self) -> FunctionState:
        if self.error is not None:
            return FunctionState.FAILED
        if self._building:
            return FunctionState.BUILDING
        if self.replicas:
            return FunctionState.READY
        if self._starting is not None:
            return FunctionState.STARTING
        return FunctionState.IDLE

    @property
    def in_flight(self) -> int:
        return sum(handle.in_flight for handle in self.replicas)

    def mark_built(self, image: str) -> None:
        self.image = image
        self._building = False

    def mark_failed(self, reason: str) -> None:
        self.error = reason
        self._building = False
        log.error("function failed", extra={"function": self.spec.name, "error": reason})

    async def acquire(self) -> ReplicaHandle:
        """A replica for one call, counted as in flight until `release`."""
        handle = await self._pick()
        handle.in_flight += 1
        return handle

    def release(self, handle: ReplicaHandle) -> None:
        handle.in_flight -= 1
        handle.served += 1

    async def _pick(self) -> ReplicaHandle:
        if self.error is not None:
            raise FunctionUnavailable(f"function {self.spec.name} is unavailable: {self.error}")
        if self.image is None:
            raise FunctionUnavailable(f"function {self.spec.name} is still being built")
        if self.replicas:
            return min(self.replicas, key=lambda handle: handle.in_flight)
        if self._starting is None:
            self._starting = asyncio.create_task(self._start_replica())
            self._starting.add_done_callback(self._start_finished)
        return await asyncio.shield(self._starting)

    def _start_finished(self, task: asyncio.Task[ReplicaHandle]) -> None:
        self._starting = None
        if not task.cancelled() and task.exception() is None:
            self.replicas.append(task.result())

    async def scale_to(self, count: int) -> None:
        """Start replicas until `count` are ready (used for `scale.min`)."""
        while len(self.replicas) < count and self.error is None:
            handle = await self._start_replica()
            self.replicas.append(handle)

    async def _start_replica(self) -> ReplicaHandle:
        assert self.image is not None
        began = time.perf_counter()
        spec = ReplicaSpec(
            function=self.spec.name,
            image=self.image,
            token=secrets.token_urlsafe(32),
            environment=self.spec.environment,
            memory=self.spec.memory,
            cpus=self.spec.cpus,
        )
        replica = await self._backend.start(spec)
        loop = asyncio.get_running_loop()
        try:
            await self._client.wait_ready(
                replica, deadline=loop.time() + READY_TIMEOUT, is_alive=self._check_alive
            )
        except FunctionUnavailable as exc:
            self.mark_failed(str(exc))
            await self._backend.stop(replica.id, grace=0)
            raise
        except BaseException:
            await self._backend.stop(replica.id, grace=0)
            raise
        self.last_cold_start = time.perf_counter() - began
        log.info(
            "replica ready",
            extra={
                "function": self.spec.name,
                "replica": replica.name,
                "cold_start_ms": round(self.last_cold_start * 1000, 1),
            },
        )
        return ReplicaHandle(replica)

    async def _check_alive(self, replica: Replica) -> None:
        status = await self._backend.status(replica.id)
        if status is None or not status.running:
            tail = (await self._backend.logs(replica.id, tail=20)).strip()
            code = status.exit_code if status else None
            reason = f"replica {replica.name} exited with code {code} before it was ready"
            if tail:
                reason += f"; its last output:\n{tail}"
            raise ReplicaStartError(reason)

    async def replica_failed(self, handle: ReplicaHandle, error: ReplicaUnreachable) -> None:
        """A call could not reach the replica: drop it if it is gone."""
        status = await self._backend.status(handle.replica.id)
        if status is not None and status.running:
            return
        log.warning(
            "replica lost",
            extra={"function": self.spec.name, "replica": handle.replica.name, "error": str(error)},
        )
        if handle in self.replicas:
            self.replicas.remove(handle)
        await self._backend.stop(handle.replica.id, grace=0)

    async def stop_all(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        handles, self.replicas = self.replicas, []
        await asyncio.gather(
            *(self._backend.stop(h.replica.id, grace=2) for h in handles), return_exceptions=True
        )
