"""The running platform: every function's pool, its images, and the calls into them.

`deploy` prepares the engine (network, base images, function images built
in parallel), `invoke` sends one call to a replica, `apply` moves to a new
functions.yaml, `shutdown` removes everything the project started. The
gateway talks only to this class.

Where replicas come from is the replica supply's (runtime/supply/), chosen once
here from the backend's kind; nothing below asks which kind it is. Each pool
(runtime/pool.py) is the function's call queue; what pools report goes to one
observer list (runtime/observers.py), shared by every pool, so an observer
added once also hears about the functions a reload adds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from runtime import requirements
from runtime.backends.base import AnyBackend, ImageRequest, Replica
from runtime.debug_relay import DEFAULT_PORT as DEFAULT_DEBUG_PORT
from runtime.debug_relay import DebugRelays
from runtime.debugger import resolve_debugger
from runtime.errors import (
    FaasError,
    FunctionNotFound,
    FunctionUnavailable,
    InvocationTimeout,
    ReplicaUnreachable,
)
from runtime.images import code_mount, plan_image, requirements_target
from runtime.invocation import Invocation, InvocationResult
from runtime.loghub import LogHub, ReplicaOutput
from runtime.observers import Observers, PoolObserver
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.redact import LiveRedactor
from runtime.replica_client import ReplicaClient
from runtime.scaling.autoscaler import Autoscaler
from runtime.scaling.coordination import Coordination
from runtime.secrets import SecretStore, secret_names
from runtime.spec import FunctionSpec, Project, ScalePolicy
from runtime.supply import FunctionProgress, Recipe, ReplicaSupply, supply_for
from runtime.supply.base import for_task
from runtime.tunnel_client import TunnelConnection

__all__ = ["Changes", "FunctionProgress", "Platform"]

T = TypeVar("T")

log = logging.getLogger("faas.platform")

BUILD_PARALLELISM = 4
COLD_START_WAIT = 30.0
UNSENT_ATTEMPTS = 3
"""Replicas a call may try when it cannot connect to them (it was never delivered)."""


def _quiet(_task: str, _message: str, _fraction: float | None) -> None:
    pass


class Platform:
    def __init__(
        self,
        project: Project,
        backend: AnyBackend,
        secrets: SecretStore | None = None,
        *,
        dev: bool = False,
        coordination: Coordination | None = None,
        supply: ReplicaSupply | None = None,
        client: ReplicaClient | None = None,
        debug_port: int = DEFAULT_DEBUG_PORT,
    ) -> None:
        """`supply` and `client` replace the ones `backend` would get (tests);
        `debug_port`: the first port on 127.0.0.1 for debugged functions (0: any)."""
        self.project = project
        self.backend = backend
        self.secrets = secrets
        self.dev = dev
        """Development: code is mounted into replicas, not baked, and can be reloaded."""
        self.debuggers = DebugRelays(debug_port)
        """Debugged functions' ports on 127.0.0.1 (development only)."""
        if client is None:
            client = ReplicaClient(
                max_answer=project.gateway.max_response_size,
                max_request=project.gateway.max_body_size,
            )
        self.client = client
        self.logs = LogHub()
        self.redact = LiveRedactor(self._secret_values)
        """Masks every secret value the project knows, in logs, `describe()` and errors."""
        self.logs.redact = self.redact
        if supply is None:
            gateway = project.gateway
            supply = supply_for(
                backend,
                client,
                warm_pool=gateway.warm_pool,
                warm_pool_memory=gateway.warm_pool_memory,
                warm_tasks=gateway.warm_tasks,
                coordination=coordination,
            )
        self.supply = supply
        self.pools: dict[str, FunctionPool] = {}
        self.observers = Observers()
        """Everything pools report goes here; add to it with `observe`."""
        self.autoscaler = Autoscaler(self.pools, self.supply, self.observers)
        self._history = _History(self)
        self.observe(self.autoscaler)  # a call starting to wait wakes it
        self.observe(self._history)
        self._backlogs: list[Callable[[str], int]] = []
        self._secret_files: dict[str, Mapping[str, Path]] = {}
        self._base_ids: dict[str, str] = {}
        self._autoscaling: asyncio.Task[None] | None = None
        for spec in project.functions.values():
            self._add_pool(spec)

    def _add_pool(self, spec: FunctionSpec) -> FunctionPool:
        pool = FunctionPool(
            spec, self.observers, take_back=self.supply.take_back, backlog=self._backlog
        )
        self.pools[spec.name] = pool
        self.supply.add(pool)
        return pool

    def observe(self, observer: PoolObserver) -> None:
        """Tell `observer` what every function reports, including functions added later."""
        self.observers.add(observer)

    def count_backlog(self, backlog: Callable[[str], int]) -> Callable[[], None]:
        """Count `backlog(function)` (work waiting elsewhere: async calls, events) toward
        every function's queue depth; returns what stops counting it."""
        self._backlogs.append(backlog)

        def stop() -> None:
            if backlog in self._backlogs:
                self._backlogs.remove(backlog)

        return stop

    def _backlog(self, function: str) -> int:
        return sum(backlog(function) for backlog in self._backlogs)

    def demand(self, function: str) -> None:
        """Work for `function` started waiting outside its queue: scale it now."""
        self.observers.demand(function)

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
        pools = list(self.pools.values())
        for pool in pools:
            self._mount_secrets(pool)
        await self.build(progress)
        await self.supply.start(pools, progress)
        await asyncio.gather(*(self.supply.prepare(pool) for pool in pools))
        self._autoscaling = asyncio.get_running_loop().create_task(self.autoscaler.run())
        self.autoscaler.wake()
        await self._relay_debuggers()  # bound before the replicas start: a port in use fails now
        await asyncio.gather(*(self._wait_for_minimum(pool, progress) for pool in pools))

    async def build(self, progress: FunctionProgress = _quiet) -> None:
        """Make sure every function's image exists.

        A function whose image cannot be built is marked failed; the others
        build regardless. Engine failures (no engine, no base image) raise.
        """
        await self.backend.prepare()
        pools = list(self.pools.values())
        await self._build_all(pools, progress)
        await self.supply.build(pools, self._base_ids, progress)

    async def _build_all(self, pools: list[FunctionPool], progress: FunctionProgress) -> None:
        for base in sorted({pool.spec.base_image for pool in pools} - set(self._base_ids)):
            await self.backend.ensure_base_image(base, for_task(progress, "base"))
            base_id = await self.backend.image_id(base)
            assert base_id is not None
            self._base_ids[base] = base_id
        limit = asyncio.Semaphore(BUILD_PARALLELISM)

        async def build(pool: FunctionPool) -> None:
            async with limit:
                await self._build(pool, progress)

        await asyncio.gather(*(build(pool) for pool in pools))

    async def _plan(self, pool: FunctionPool) -> ImageRequest:
        base_id = self._base_ids.get(pool.spec.base_image) or ""
        target = await requirements_target(self.backend, base_id)
        return await asyncio.to_thread(
            plan_image, self.project, pool.spec, base_id,
            functools.partial(requirements.resolve, target=target),
            bake_code=not self.dev, interpreter=target.interpreter,
        )  # fmt: skip

    async def _build(self, pool: FunctionPool, progress: FunctionProgress) -> None:
        name = pool.spec.name
        try:
            request = await self._plan(pool)
            built = await self.backend.build_image(request, for_task(progress, name))
            debugger = await self._debugger(pool)
        except FaasError as exc:
            pool.mark_failed(self.redact(str(exc)))
            progress(name, f"failed: {exc}", 1.0)
            return
        self._built(pool, request, debugger)
        progress(name, f"{'built' if built else 'up to date:'} {request.tag}", 1.0)

    def _built(
        self, pool: FunctionPool, request: ImageRequest, debugger: str | None = None
    ) -> None:
        """The function's image exists: its replicas are made from it from now on."""
        mount = code_mount(self.project, pool.spec) if self.dev else None
        secret_files = self._secret_files.get(pool.name, {})
        recipe = Recipe(request.tag, request.code, secret_files, mount, debugger)
        self.supply.use(pool, recipe)
        pool.mark_built(request.tag)

    async def _debugger(self, pool: FunctionPool) -> str | None:
        """Where debugpy is on the host, for a debugged function in development."""
        if not (self.dev and pool.spec.debug):
            return None
        return str(await asyncio.to_thread(resolve_debugger))

    async def _relay_debuggers(self) -> None:
        """A port on 127.0.0.1 for each debugged function, relayed to its replica."""
        if self.dev:
            await self.debuggers.sync(self.pools)

    def set_scale(self, name: str, minimum: int, maximum: int) -> ScalePolicy:
        """Override a function's replica bounds until functions.yaml is next applied."""
        pool = self.pool(name)
        if minimum < 0 or maximum < 1 or minimum > maximum:
            raise FaasError(
                f"expected 0 <= min <= max and max >= 1, got min {minimum}, max {maximum}"
            )
        if pool.spec.debug and (minimum, maximum) != (1, 1):
            raise FaasError(f"{name} is being debugged: it keeps exactly one replica")
        scale = dataclasses.replace(pool.spec.scale, min=minimum, max=maximum)
        pool.spec = dataclasses.replace(pool.spec, scale=scale)
        self.autoscaler.wake()
        return scale

    # -- development: changes while serving ------------------------------------------

    async def reload_code(self, names: list[str]) -> dict[str, tuple[int, str | None]]:
        """Have the replicas of `names` import their current code: name -> (replicas, error)."""
        pools = [self.pools[n] for n in names if n in self.pools]
        results = await asyncio.gather(*(self._reload(pool) for pool in pools))
        return {pool.spec.name: result for pool, result in zip(pools, results, strict=True)}

    async def _reload(self, pool: FunctionPool) -> tuple[int, str | None]:
        """Ask every ready replica to import the current code; (reloaded, first error)."""
        error: str | None = None
        reloaded = 0
        for handle in pool.replicas:
            try:
                await self.client.reload(handle.replica)
                reloaded += 1
            except FunctionUnavailable as exc:
                error = error or str(exc)
            except ReplicaUnreachable:
                continue  # it is going away; its successor imports the new code
        self._history.reload_errors[pool.name] = error
        if error is None and pool.error is not None and not pool.replicas:
            pool.clear_failure()  # a failed import was fixed: the next call starts afresh
        return reloaded, error

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
            try:
                request = await self._plan(pool)
                await self.backend.build_image(request, for_task(progress, name))
                debugger = await self._debugger(pool)
            except FaasError as exc:
                progress(name, f"rebuild failed, the previous image keeps serving: {exc}", 1.0)
                continue
            if request.tag != pool.image:
                self._built(pool, request, debugger)
                pool.clear_failure()
                await self.supply.replace(pool)
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
        self.client.max_request = project.gateway.max_body_size
        changes = Changes()
        for name in [n for n in self.pools if n not in project.functions]:
            await self.supply.remove(self.pools.pop(name))
            self.autoscaler.forget(name)
            self._history.forget(name)
            self._secret_files.pop(name, None)
            changes.removed.append(name)
        added: list[FunctionPool] = []
        for name, spec in project.functions.items():
            existing = self.pools.get(name)
            if existing is None:
                added.append(self._add_pool(spec))
                changes.added.append(name)
            elif spec != existing.spec:
                before, existing.spec = existing.spec, spec
                changes.updated.append(name)
                if _replica_inputs(before) != _replica_inputs(spec):
                    changes.rolled.append(name)
        if added:
            for pool in added:
                self._mount_secrets(pool)
            await self._build_all(added, progress)
            for pool in added:
                await self.supply.prepare(pool)
        for name in changes.rolled:
            pool = self.pools[name]
            self._mount_secrets(pool)
            await self._build_all([pool], progress)
            await self.supply.replace(pool)
        self.autoscaler.wake()
        await self._relay_debuggers()
        return changes

    def _mount_secrets(self, pool: FunctionPool) -> None:
        """Write the function's secrets where its replicas mount them (before its build,
        which makes its `Recipe`)."""
        names = pool.spec.secrets
        self._secret_files[pool.name] = {}
        if not names or pool.error is not None:
            return
        if self.secrets is None:
            pool.mark_failed("this platform was started without a secret store")
            return
        run_dir = self.project.root / ".faas" / "run" / self.project.name / pool.spec.name
        try:
            self._secret_files[pool.name] = self.secrets.materialize(run_dir, names)
        except FaasError as exc:
            pool.mark_failed(str(exc))

    async def _wait_for_minimum(self, pool: FunctionPool, progress: FunctionProgress) -> None:
        wanted = pool.spec.scale.min
        if wanted == 0 or pool.error is not None:
            return
        name = pool.spec.name
        progress(name, f"waiting for {wanted} replica(s)", 0.0)
        while pool.ready_count < wanted and pool.error is None:
            await asyncio.sleep(0.05)
            progress(
                name, f"{pool.ready_count}/{wanted} replica(s) ready", pool.ready_count / wanted
            )
        if pool.error is not None:
            progress(name, f"failed: {pool.error}", 1.0)
        else:
            progress(name, f"{wanted} replica(s) ready", 1.0)

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        """Send one call to a ready replica (starting one if needed) and return its answer.

        The answer's body streams; the replica counts the call as in flight
        until the caller awaits `result.close()`. At most once: a call is sent to
        another replica only when it could not connect to the first (`sent=False`).
        """
        pool = self.pool(invocation.function)
        spec = pool.spec
        result, handle = await self._on_a_replica(
            pool,
            lambda replica: self.client.send(
                replica,
                invocation,
                spec.timeout,
                spec.max_duration,
                stream_body=spec.request_body == "stream",
            ),
        )
        close_response = result.close

        async def close() -> None:
            try:
                await close_response()
            finally:
                pool.release(handle)

        result.close = close
        return result

    async def open_socket(self, invocation: Invocation) -> OpenSocket:
        """Start a WebSocket call on a ready replica (starting one if needed).

        The socket holds one of the replica's slots until `OpenSocket.close()`, like a
        call in flight: the autoscaler counts it, and a replica taken out of service
        sets `leaving` for its sockets to close.
        """
        pool = self.pool(invocation.function)
        spec = pool.spec
        tunnel, handle = await self._on_a_replica(
            pool,
            lambda replica: self.client.open_tunnel(
                replica, invocation, spec.timeout, spec.max_message_size
            ),
        )
        return OpenSocket(tunnel, handle, lambda: pool.release(handle))

    async def _on_a_replica(
        self, pool: FunctionPool, send: Callable[[Replica], Awaitable[T]]
    ) -> tuple[T, ReplicaHandle]:
        """`send` on a replica taken from the pool; the handle stays taken for the caller.

        At most once: a call that could not even connect (its replica died as it was handed
        out) is not lost, it waits for another replica; one that reached a replica is not
        sent again.
        """
        attempt = 1
        while True:
            handle = await self._acquire(pool)
            try:
                return await send(handle.replica), handle
            except ReplicaUnreachable as exc:
                serving = pool.set_aside(handle)
                pool.release(handle)
                await self.supply.unreachable(pool, handle, exc, was_serving=serving)
                if exc.sent or attempt == UNSENT_ATTEMPTS:
                    raise
                attempt += 1
            except BaseException:
                pool.release(handle)
                raise

    async def _acquire(self, pool: FunctionPool) -> ReplicaHandle:
        # Behind busy replicas a call waits at most its timeout; while the function has
        # none ready it waits for the start, which the engine may make slow (a failed
        # start answers at once).
        limit = pool.spec.timeout
        wait = limit if pool.ready_count else max(limit, COLD_START_WAIT)
        try:
            async with asyncio.timeout(wait):
                return await pool.acquire()
        except TimeoutError:
            raise InvocationTimeout(
                f"{pool.spec.name} waited {wait:g}s in its queue without a free replica"
            ) from None

    def describe(self) -> list[dict[str, Any]]:
        """Every function's state for the admin API and `faas ls`, secret values masked."""
        return self.redact.value(self._describe())  # type: ignore[no-any-return]

    def _describe(self) -> list[dict[str, Any]]:
        history = self._history
        return [
            {
                "name": name,
                "state": pool.state.value,
                "replicas": pool.ready_count,
                "replica_names": [handle.replica.name for handle in pool.replicas],
                "starting": pool.starting,
                "draining": len(pool.draining),
                "queue_depth": pool.depth(),
                "in_flight": pool.in_flight,
                "image": pool.image,
                "error": pool.error,
                "error_detail": pool.error_detail if pool.error is not None else None,
                "reload_error": history.reload_errors.get(name),
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
                "debug": self.debuggers.address(name),
                **history.last_cold_start(name),
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
        await self.debuggers.close()
        await self.supply.stop()
        try:
            if remove_replicas:
                await self.backend.teardown()
        finally:
            await self.client.close()
            await self.backend.close()


class _History(PoolObserver):
    """What `describe` tells beyond the pools' state: the last cold start and the last
    reload error of each function; and every started replica's output, followed."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.cold_starts: dict[str, tuple[float, dict[str, float]]] = {}
        self.reload_errors: dict[str, str | None] = {}
        """Why the last code reload failed (the previous code keeps serving), if it did."""

    def replica_started(self, replica: Replica) -> None:
        platform = self._platform
        output = ReplicaOutput(
            platform.logs, replica.function, replica.name, asyncio.get_running_loop()
        )
        platform.backend.follow_logs(replica.id, output.feed)

    def cold_start(self, function: str, seconds: float, phases: Mapping[str, float]) -> None:
        self.cold_starts[function] = (seconds, dict(phases))

    def last_cold_start(self, function: str) -> dict[str, Any]:
        seconds, phases = self.cold_starts.get(function, (0.0, {}))
        return {
            "last_cold_start_ms": round(seconds * 1000, 1) if seconds else None,
            "last_cold_start_phases": phases,
        }

    def forget(self, function: str) -> None:
        self.cold_starts.pop(function, None)
        self.reload_errors.pop(function, None)


@dataclass(eq=False)
class OpenSocket:
    """A WebSocket call's tunnel to its replica, holding one of the replica's slots."""

    tunnel: TunnelConnection
    handle: ReplicaHandle
    release: Callable[[], None]
    released: bool = False

    def close(self) -> None:
        """Close the tunnel (if still open) and give the slot back; idempotent."""
        self.tunnel.close()
        if not self.released:
            self.released = True
            self.release()


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
        spec.debug,
    )
