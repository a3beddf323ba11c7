"""The running platform: every function's pool, its images, and the calls into them.

`deploy` prepares the engine (network, base images, function images built
in parallel), `invoke` sends one call to a replica, `shutdown` removes
everything the project started. The gateway talks only to this class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from runtime import requirements
from runtime.backends.base import Backend, ProgressCallback
from runtime.errors import FaasError, FunctionNotFound, InvocationTimeout, ReplicaUnreachable
from runtime.images import plan_image
from runtime.invocation import Invocation, InvocationResult
from runtime.pool import FunctionPool
from runtime.replica_client import ReplicaClient
from runtime.scaling.autoscaler import Autoscaler
from runtime.secrets import SecretStore
from runtime.spec import FunctionSpec, Project

log = logging.getLogger("faas.platform")

BUILD_PARALLELISM = 4

FunctionProgress = Callable[[str, str, float | None], None]
"""(function or "base", message, fraction done) for progress displays."""


def _quiet(_task: str, _message: str, _fraction: float | None) -> None:
    pass


class Platform:
    def __init__(
        self, project: Project, backend: Backend, secrets: SecretStore | None = None
    ) -> None:
        self.project = project
        self.backend = backend
        self.secrets = secrets
        self.client = ReplicaClient()
        self.pools: dict[str, FunctionPool] = {
            name: FunctionPool(spec, backend, self.client)
            for name, spec in project.functions.items()
        }
        self.autoscaler = Autoscaler(self.pools, backend)
        for pool in self.pools.values():
            pool.on_demand = self.autoscaler.wake
        self._autoscaling: asyncio.Task[None] | None = None

    def pool(self, name: str) -> FunctionPool:
        try:
            return self.pools[name]
        except KeyError:
            raise FunctionNotFound(f"no function named {name!r}") from None

    def function(self, name: str) -> FunctionSpec:
        return self.pool(name).spec

    async def deploy(self, progress: FunctionProgress = _quiet) -> None:
        """Build every function's image, start autoscaling, wait for `scale.min` replicas."""
        await self.build(progress)
        for pool in self.pools.values():
            self._mount_secrets(pool)
            pool.prepare_spare()
        self._autoscaling = asyncio.get_running_loop().create_task(self.autoscaler.run())
        self.autoscaler.wake()
        await asyncio.gather(
            *(self._wait_for_minimum(pool, progress) for pool in self.pools.values())
        )

    async def build(self, progress: FunctionProgress = _quiet) -> None:
        """Make sure every function's image exists.

        A function whose image cannot be built is marked failed; the others
        build regardless. Engine failures (no engine, no base image) raise.
        """
        await self.backend.prepare()
        base_ids: dict[str, str] = {}
        for base in sorted({spec.base_image for spec in self.project.functions.values()}):
            await self.backend.ensure_base_image(base, _for_task(progress, "base"))
            base_id = await self.backend.image_id(base)
            assert base_id is not None
            base_ids[base] = base_id
        limit = asyncio.Semaphore(BUILD_PARALLELISM)

        async def build(pool: FunctionPool) -> None:
            async with limit:
                await self._build(pool, base_ids[pool.spec.base_image], progress)

        await asyncio.gather(*(build(pool) for pool in self.pools.values()))

    async def _build(self, pool: FunctionPool, base_id: str, progress: FunctionProgress) -> None:
        name = pool.spec.name
        try:
            request = await asyncio.to_thread(
                plan_image, self.project, pool.spec, base_id, requirements.resolve
            )
            built = await self.backend.build_image(request, _for_task(progress, name))
        except FaasError as exc:
            pool.mark_failed(str(exc))
            progress(name, f"failed: {exc}", 1.0)
            return
        pool.mark_built(request.tag)
        progress(name, f"{'built' if built else 'up to date:'} {request.tag}", 1.0)

    def _mount_secrets(self, pool: FunctionPool) -> None:
        names = pool.spec.secrets
        if not names or pool.error is not None:
            return
        if self.secrets is None:
            pool.mark_failed("this platform was started without a secret store")
            return
        run_dir = self.project.root / ".faas" / "run" / self.project.name / pool.spec.name
        try:
            pool.secret_files = self.secrets.materialize(run_dir, names)
        except FaasError as exc:
            pool.mark_failed(str(exc))

    async def _wait_for_minimum(self, pool: FunctionPool, progress: FunctionProgress) -> None:
        wanted = pool.spec.scale.min
        if wanted == 0 or pool.error is not None:
            return
        name = pool.spec.name
        progress(name, f"waiting for {wanted} replica(s)", 0.0)
        while len(pool.replicas) < wanted and pool.error is None:
            await asyncio.sleep(0.05)
            progress(
                name, f"{len(pool.replicas)}/{wanted} replica(s) ready", len(pool.replicas) / wanted
            )
        if pool.error is not None:
            progress(name, f"failed: {pool.error}", 1.0)
        else:
            progress(name, f"{wanted} replica(s) ready", 1.0)

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        """Send one call to a ready replica (starting one if needed) and return its answer.

        The answer's body streams; the replica counts the call as in flight
        until the caller awaits `result.close()`.
        """
        pool = self.pool(invocation.function)
        timeout = pool.spec.timeout
        try:
            async with asyncio.timeout(timeout):
                handle = await pool.acquire()
        except TimeoutError:
            raise InvocationTimeout(
                f"{invocation.function} waited {timeout:g}s in its queue without a free replica"
            ) from None
        try:
            result = await self.client.send(handle.replica, invocation, timeout)
        except ReplicaUnreachable as exc:
            pool.release(handle)
            await pool.replica_failed(handle, exc)
            raise
        except BaseException:
            pool.release(handle)
            raise
        close_response = result.close

        async def close() -> None:
            try:
                await close_response()
            finally:
                pool.release(handle)

        result.close = close
        return result

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "state": pool.state.value,
                "replicas": len(pool.replicas),
                "starting": pool.starting,
                "draining": len(pool.draining),
                "queue_depth": pool.depth(),
                "in_flight": pool.in_flight,
                "image": pool.image,
                "error": pool.error,
                "routes": [
                    {"path": route.path, "methods": list(route.methods)}
                    for route in pool.spec.routes
                ],
                "scale": {
                    "min": pool.spec.scale.min,
                    "max": pool.spec.scale.max,
                    "target_concurrency": pool.spec.scale.target_concurrency,
                    "idle_timeout": pool.spec.scale.idle_timeout,
                },
                "last_cold_start_ms": (
                    round(pool.last_cold_start * 1000, 1) if pool.last_cold_start else None
                ),
                "last_cold_start_phases": pool.last_cold_start_phases,
            }
            for name, pool in self.pools.items()
        ]

    async def shutdown(self) -> None:
        """Stop every replica and remove the project's network."""
        if self._autoscaling is not None:
            self._autoscaling.cancel()
            await asyncio.gather(self._autoscaling, return_exceptions=True)
        await self.autoscaler.stop()
        await asyncio.gather(
            *(pool.stop_all() for pool in self.pools.values()), return_exceptions=True
        )
        try:
            await self.backend.teardown()
        finally:
            await self.client.close()
            await self.backend.close()


def _for_task(progress: FunctionProgress, task: str) -> ProgressCallback:
    def report(message: str, fraction: float | None) -> None:
        progress(task, message, fraction)

    return report
