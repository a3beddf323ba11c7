"""The running platform: every function's pool, its images, and the calls into them.

`deploy` prepares the engine (network, base images, function images built
in parallel), `invoke` sends one call to a replica, `shutdown` removes
everything the project started. The gateway talks only to this class.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime import requirements, warm_pool
from runtime.backends.base import (
    DEFAULT_PIDS,
    Backend,
    ImageRequest,
    Limits,
    ProgressCallback,
    Replica,
    has_warm_pool,
    is_service_backend,
    lists_containers,
)
from runtime.errors import FaasError, FunctionNotFound, InvocationTimeout, ReplicaUnreachable
from runtime.images import code_mount, plan_image, plan_warm_image
from runtime.invocation import Invocation, InvocationResult
from runtime.loghub import LogHub, ReplicaOutput
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.reconcile import Reconciler, Removals
from runtime.redact import LiveRedactor
from runtime.replica_client import ReplicaClient
from runtime.scaling.autoscaler import Autoscaler
from runtime.scaling.coordination import Coordination, Follower
from runtime.scaling.services import ServiceAutoscaler
from runtime.secrets import SecretStore, secret_names
from runtime.spec import FunctionSpec, Project, ScalePolicy
from runtime.warm_pool import WarmPool
from runtime.watchdog import wire

log = logging.getLogger("faas.platform")

BUILD_PARALLELISM = 4
COLD_START_WAIT = 30.0
UNSENT_ATTEMPTS = 3
"""Replicas a call may try when it cannot connect to them (it was never delivered)."""
SERVICE_ATTEMPTS = 3
SERVICE_RETRY_DELAY = 1.0

FunctionProgress = Callable[[str, str, float | None], None]
"""(function or "base", message, fraction done) for progress displays."""


def _quiet(_task: str, _message: str, _fraction: float | None) -> None:
    pass


class Platform:
    def __init__(
        self,
        project: Project,
        backend: Backend,
        secrets: SecretStore | None = None,
        *,
        dev: bool = False,
        coordination: Coordination | None = None,
    ) -> None:
        self.project = project
        self.backend = backend
        self.secrets = secrets
        self.dev = dev
        """Development: code is mounted into replicas, not baked, and can be reloaded."""
        self.client = ReplicaClient(max_answer=project.gateway.max_response_size)
        self.logs = LogHub()
        self.redact = LiveRedactor(self._secret_values)
        """Masks every secret value the project knows, in logs, `describe()` and errors."""
        self.logs.redact = self.redact
        self.pools: dict[str, FunctionPool] = {}
        self.removals = Removals(backend)
        """Containers being removed, with retries (runtime/reconcile.py)."""
        self.autoscaler: Autoscaler
        if is_service_backend(backend):
            if getattr(backend, "scales_itself", False):
                coordination = Follower()
            self.autoscaler = ServiceAutoscaler(self.pools, backend, self.client, coordination)
        else:
            self.autoscaler = Autoscaler(self.pools, backend)
            if lists_containers(backend):
                self.autoscaler.reconciler = Reconciler(
                    backend, self.tracked_containers, self.removals
                )
        for spec in project.functions.values():
            self.pools[spec.name] = self._new_pool(spec)
        self._autoscaling: asyncio.Task[None] | None = None
        self._base_ids: dict[str, str] = {}
        self.warm: WarmPool | None = None
        """The project's warm watchdogs (runtime/warm_pool.py), once their image is built."""
        self._warm_image: str | None = None

    def _new_pool(self, spec: FunctionSpec) -> FunctionPool:
        pool = FunctionPool(spec, self.backend, self.client, self.removals)
        pool.on_demand = self.autoscaler.wake
        pool.on_replica_started = self._follow_logs
        if self.dev:
            pool.code_mount = code_mount(self.project, spec)
        return pool

    def _follow_logs(self, replica: Replica) -> None:
        loop = asyncio.get_running_loop()
        output = ReplicaOutput(self.logs, replica.function, replica.name, loop)
        self.backend.follow_logs(replica.id, output.feed)

    def _secret_values(self) -> list[bytes]:
        if self.secrets is None:
            return []
        return self.secrets.known_values(secret_names(self.project))

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
        await self._start_warm_pool(progress)
        for pool in self.pools.values():
            self._mount_secrets(pool)
        await asyncio.gather(*(self._prepare_replicas(pool) for pool in self.pools.values()))
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
        await self._build_all(list(self.pools.values()), progress)
        await self._build_warm_image(progress)

    async def _build_all(self, pools: list[FunctionPool], progress: FunctionProgress) -> None:
        for base in sorted({pool.spec.base_image for pool in pools} - set(self._base_ids)):
            await self.backend.ensure_base_image(base, _for_task(progress, "base"))
            base_id = await self.backend.image_id(base)
            assert base_id is not None
            self._base_ids[base] = base_id
        limit = asyncio.Semaphore(BUILD_PARALLELISM)

        async def build(pool: FunctionPool) -> None:
            async with limit:
                await self._build(pool, self._base_ids[pool.spec.base_image], progress)

        await asyncio.gather(*(build(pool) for pool in pools))

    def _warm_base(self) -> str | None:
        """The base image warm watchdogs run on: the one most functions use."""
        bases = collections.Counter(pool.spec.base_image for pool in self.pools.values())
        return bases.most_common(1)[0][0] if bases else None

    async def _build_warm_image(self, progress: FunctionProgress) -> None:
        base = self._warm_base()
        if not has_warm_pool(self.backend) or self.project.gateway.warm_pool == 0 or base is None:
            return
        request = plan_warm_image(self._base_ids[base])
        try:
            await self.backend.build_image(request, _for_task(progress, "warm pool"))
        except FaasError as exc:
            progress("warm pool", f"failed, functions start on new containers: {exc}", 1.0)
            return
        self._warm_image = request.tag

    async def _start_warm_pool(self, progress: FunctionProgress) -> None:
        size = self.project.gateway.warm_pool
        if self._warm_image is None or not has_warm_pool(self.backend):
            return
        if not any(pool.warm_code is not None for pool in self.pools.values()):
            return  # every function needs its own image: warm watchdogs would only idle
        mounts = sorted({code_mount(self.project, p.spec) for p in self.pools.values()})
        self.warm = WarmPool(
            self.backend,
            self.client,
            size,
            self._warm_image,
            self._common_limits(),
            mounts if self.dev else (),
            self.removals,
        )
        for pool in self.pools.values():
            pool.warm = self.warm
        self.warm.fill()
        progress("warm pool", f"starting {size} warm watchdog(s)", 1.0)

    def _common_limits(self) -> Limits:
        """The limits most functions that start warm run under: warm watchdogs start under
        them, so starting those functions needs no update of the limits."""
        limits = collections.Counter(
            (p.spec.memory, p.spec.cpus, DEFAULT_PIDS)
            for p in self.pools.values()
            if p.warm_code is not None
        )
        return Limits(*limits.most_common(1)[0][0])

    def _set_built(self, pool: FunctionPool, request: ImageRequest) -> None:
        pool.mark_built(request.tag)
        code = request.code
        eligible = pool.spec.base_image == self._warm_base() and warm_pool.fits(code)
        if self.dev:  # warm watchdogs mount the code, if this function's directory is theirs
            if self.warm is not None:
                eligible = eligible and pool.code_mount in self.warm.code_mounts
            code = {n: content for n, content in code.items() if n.startswith(wire.INIT_DEPS)}
        pool.warm_code = code if eligible else None
        if self.warm is not None:
            pool.warm = self.warm

    async def _build(self, pool: FunctionPool, base_id: str, progress: FunctionProgress) -> None:
        name = pool.spec.name
        try:
            request = await asyncio.to_thread(
                plan_image,
                self.project,
                pool.spec,
                base_id,
                requirements.resolve,
                bake_code=not self.dev,
            )
            built = await self.backend.build_image(request, _for_task(progress, name))
        except FaasError as exc:
            pool.mark_failed(self.redact(str(exc)))
            progress(name, f"failed: {exc}", 1.0)
            return
        self._set_built(pool, request)
        progress(name, f"{'built' if built else 'up to date:'} {request.tag}", 1.0)

    def set_scale(self, name: str, minimum: int, maximum: int) -> ScalePolicy:
        """Override a function's replica bounds until functions.yaml is next applied."""
        pool = self.pool(name)
        if minimum < 0 or maximum < 1 or minimum > maximum:
            raise FaasError(
                f"expected 0 <= min <= max and max >= 1, got min {minimum}, max {maximum}"
            )
        scale = dataclasses.replace(pool.spec.scale, min=minimum, max=maximum)
        pool.spec = dataclasses.replace(pool.spec, scale=scale)
        self.autoscaler.wake()
        return scale

    # -- development: changes while serving ------------------------------------------

    async def reload_code(self, names: list[str]) -> dict[str, tuple[int, str | None]]:
        """Have the replicas of `names` import their current code: name -> (replicas, error)."""
        pools = [self.pools[n] for n in names if n in self.pools]
        results = await asyncio.gather(*(pool.reload_code() for pool in pools))
        return {pool.spec.name: result for pool, result in zip(pools, results, strict=True)}

    async def rebuild(self, names: list[str], progress: FunctionProgress = _quiet) -> list[str]:
        """Build the images of `names` again (requirements changed) and roll those that changed.

        The old replicas serve until their successors are ready; a failed build keeps
        them serving and is reported. Returns the functions whose replicas were rolled.
        """
        rolled: list[str] = []
        for name in names:
            pool = self.pools.get(name)
            if pool is None:
                continue
            base_id = self._base_ids.get(pool.spec.base_image) or ""
            try:
                request = await asyncio.to_thread(
                    plan_image, self.project, pool.spec, base_id, requirements.resolve,
                    bake_code=not self.dev,
                )  # fmt: skip
                await self.backend.build_image(request, _for_task(progress, name))
            except FaasError as exc:
                progress(name, f"rebuild failed, the previous image keeps serving: {exc}", 1.0)
                continue
            if request.tag != pool.image:
                self._set_built(pool, request)
                pool.error = None
                await self._replace_replicas(pool)
                rolled.append(name)
        return rolled

    async def apply(self, project: Project, progress: FunctionProgress = _quiet) -> Changes:
        """Move to a new functions.yaml: add, remove and update functions, touching no others.

        Settings the gateway reads per call (routes, auth, scale) take effect at once;
        settings a replica is made with (handler, environment, limits, secrets,
        requirements, base image) roll its replicas.
        """
        self.project = project
        self.redact.refresh()
        self.client.max_answer = project.gateway.max_response_size
        changes = Changes()
        for name in [n for n in self.pools if n not in project.functions]:
            await self.pools.pop(name).stop_all()
            await self._remove_replicas(name)
            changes.removed.append(name)
        added: list[FunctionPool] = []
        for name, spec in project.functions.items():
            existing = self.pools.get(name)
            if existing is None:
                self.pools[name] = self._new_pool(spec)
                added.append(self.pools[name])
                changes.added.append(name)
            elif spec != existing.spec:
                before, existing.spec = existing.spec, spec
                changes.updated.append(name)
                if _replica_inputs(before) != _replica_inputs(spec):
                    changes.rolled.append(name)
        if added:
            await self._build_all(added, progress)
            for pool in added:
                self._mount_secrets(pool)
                await self._prepare_replicas(pool)
        for name in changes.rolled:
            pool = self.pools[name]
            pool.code_mount = code_mount(project, pool.spec) if self.dev else None
            self._mount_secrets(pool)
            await self._build_all([pool], progress)
            await self._replace_replicas(pool)
        self.autoscaler.wake()
        return changes

    async def _prepare_replicas(self, pool: FunctionPool) -> None:
        """Get a function ready to start replicas: a spare container, or its service."""
        if pool.error is not None or pool.image is None:
            return
        if not is_service_backend(self.backend):
            pool.prepare_spare()
            return
        for attempt in range(1, SERVICE_ATTEMPTS + 1):
            try:
                await self.backend.ensure_service(pool.replica_spec())
                return
            except FaasError as exc:
                if attempt == SERVICE_ATTEMPTS:
                    pool.mark_failed(str(exc))
                    return
                # An engine under load (a swarm manager mid-election, a busy daemon) can
                # refuse one write; failing the function for good would be out of proportion.
                log.warning(
                    "making the function's service failed; trying again",
                    extra={"function": pool.spec.name, "error": str(exc), "attempt": attempt},
                )
                await asyncio.sleep(SERVICE_RETRY_DELAY * attempt)

    async def _replace_replicas(self, pool: FunctionPool) -> None:
        """New image or settings: successors start before their predecessors stop."""
        if is_service_backend(self.backend):
            await self._prepare_replicas(pool)  # the engine rolls the service's tasks
        else:
            await pool.roll()

    async def _remove_replicas(self, function: str) -> None:
        if is_service_backend(self.backend):
            assert isinstance(self.autoscaler, ServiceAutoscaler)
            self.autoscaler.forget_function(function)
            await self.backend.remove_service(function)

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
        attempt = 1
        while True:
            handle = await self._acquire(pool)
            try:
                result = await self.client.send(handle.replica, invocation, timeout)
                break
            except ReplicaUnreachable as exc:
                serving = pool.set_aside(handle)
                pool.release(handle)
                await pool.replica_failed(handle, exc, was_serving=serving)
                # A call that could not even connect (its replica died as it was handed
                # out) is not lost: it waits for another replica.
                if exc.sent or attempt == UNSENT_ATTEMPTS:
                    raise
                attempt += 1
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

    async def _acquire(self, pool: FunctionPool) -> ReplicaHandle:
        # Behind busy replicas a call waits at most its timeout; while the function has
        # none ready it waits for the start, which the engine may make slow (a failed
        # start answers at once).
        limit = pool.spec.timeout
        wait = limit if pool.replicas else max(limit, COLD_START_WAIT)
        try:
            async with asyncio.timeout(wait):
                return await pool.acquire()
        except TimeoutError:
            raise InvocationTimeout(
                f"{pool.spec.name} waited {wait:g}s in its queue without a free replica"
            ) from None

    def tracked_containers(self) -> set[str]:
        """The containers some pool is responsible for: any other is an orphan."""
        tracked = set().union(*(pool.container_ids() for pool in self.pools.values()))
        if self.warm is not None:
            tracked |= self.warm.container_ids()
        return tracked

    def describe(self) -> list[dict[str, Any]]:
        """Every function's state for the admin API and `faas ls`, secret values masked."""
        return self.redact.value(self._describe())  # type: ignore[no-any-return]

    def _describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "state": pool.state.value,
                "replicas": len(pool.replicas),
                "replica_names": [handle.replica.name for handle in pool.replicas],
                "starting": pool.starting,
                "draining": len(pool.draining),
                "queue_depth": pool.depth(),
                "in_flight": pool.in_flight,
                "image": pool.image,
                "error": pool.error,
                "error_detail": pool.error_detail if pool.error is not None else None,
                "reload_error": pool.reload_error,
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

    async def shutdown(self, *, remove_replicas: bool = True) -> None:
        """Stop every replica and remove the project's network.

        `remove_replicas=False` leaves a service backend's services to the other
        gateways that share them.
        """
        if self._autoscaling is not None:
            self._autoscaling.cancel()
            await asyncio.gather(self._autoscaling, return_exceptions=True)
        await self.autoscaler.stop()
        if self.warm is not None:
            await self.warm.close()
        await asyncio.gather(
            *(pool.stop_all() for pool in self.pools.values()), return_exceptions=True
        )
        await self.removals.close()  # the teardown removes whatever they were retrying
        try:
            if remove_replicas:
                await self.backend.teardown()
        finally:
            await self.client.close()
            await self.backend.close()


@dataclass
class Changes:
    """What `Platform.apply` did, by function name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    rolled: list[str] = field(default_factory=list)
    """Of `updated`, functions whose replicas were replaced."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.updated)


def _replica_inputs(spec: FunctionSpec) -> tuple[object, ...]:
    """The settings a replica is created with; a change to any of them replaces replicas."""
    return (
        spec.handler_file,
        spec.handler_name,
        dict(spec.environment),
        spec.timeout,
        spec.memory,
        spec.cpus,
        spec.requirements,
        spec.base_image,
        spec.secrets,
    )


def _for_task(progress: FunctionProgress, task: str) -> ProgressCallback:
    def report(message: str, fraction: float | None) -> None:
        progress(task, message, fraction)

    return report
