"""What a replica supply does for the platform, and what a function's replicas are made of.

A supply is chosen once per platform (`runtime.supply.supply_for`) from the
backend's `kind`; the platform and the autoscaler then call only this
protocol, so neither knows whether replicas are containers the gateway starts
itself or tasks an engine runs for a service. The calls, in a function's life:

    add(pool)                  the platform made a pool for a function
    use(pool, recipe)          its image is built: replicas are made from `recipe`
    build(...), start(...)     once every image is built, at deploy: what functions share
    prepare(pool)              get it ready: its kind's warm pool, or its service
    observe / scale            every autoscaler tick: count for `decide`, apply its result
    refresh()                  every `refresh_interval`: learn what the engine lost or runs
    unreachable(...)           a call could not reach a replica: keep it or forget it
    take_back(pool, handle)    a replica out of service finished its last call
    replace(pool)              new image or settings: roll its replicas
    remove(pool)               the function is gone
    stop()                     the platform stops

Why a protocol rather than one backend interface with optional verbs: the two
kinds differ in what the gateway does, not only in how the engine is called
(it starts each container and keeps warm watchdogs; or it sets a
count and learns which tasks run). Each kind's way lives in one place, and the
pool (runtime/pool.py) stays the call queue only, testable on `MemorySupply`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.backends.base import Backend, ProgressCallback, ReplicaSpec
from runtime.errors import FaasError, ReplicaUnreachable
from runtime.images import plan_warm_image
from runtime.pool import FunctionPool, ReplicaHandle
from runtime.scaling.decide import Observation
from runtime.spec import FunctionSpec
from runtime.warm_kinds import WarmKind

log = logging.getLogger("faas.supply")

FunctionProgress = Callable[[str, str, float | None], None]
"""(function or "base", message, fraction done) for progress displays."""


def for_task(progress: FunctionProgress, task: str) -> ProgressCallback:
    """`progress` as a backend reports to it, about `task`."""

    def report(message: str, fraction: float | None) -> None:
        progress(task, message, fraction)

    return report


async def build_warm_image(
    backend: Backend,
    base_id: str,
    deps: Mapping[str, bytes],
    kind: WarmKind,
    task: str,
    progress: FunctionProgress,
    *,
    otherwise: str,
) -> str | None:
    """Build the warm image of `kind` (its requirements `deps`); its tag, or None when it
    did not build, reported as "failed, `otherwise`" (how its functions start instead)."""
    request = plan_warm_image(base_id, deps, kind.system_packages)
    try:
        await backend.build_image(request, for_task(progress, task))
    except FaasError as exc:
        progress(task, f"failed, {otherwise}: {exc}", 1.0)
        return None
    return request.tag


@dataclass(frozen=True)
class Recipe:
    """What a function's replicas are made from, besides its settings (`FunctionSpec`):
    set by the platform after each build (`ReplicaSupply.use`)."""

    image: str
    code: Mapping[str, bytes] = field(default_factory=dict)
    """The code and requirements the image holds (`app/...`, `deps/...`), which a warm
    watchdog is sent instead of starting the image."""
    secret_files: Mapping[str, Path] = field(default_factory=dict)
    """Secret name -> the host file holding its value."""
    code_mount: tuple[str, str] | None = None
    """Development: (host path, container path) of the code, mounted instead of baked."""
    debugger: str | None = None
    """Development, a debugged function: the host directory holding debugpy."""

    def replica_spec(self, spec: FunctionSpec) -> ReplicaSpec:
        """One replica's: the function's settings now, this recipe, a token of its own."""
        return ReplicaSpec(
            function=spec.name,
            image=self.image,
            token=secrets.token_urlsafe(32),
            handler_file=spec.handler_file,
            handler_name=spec.handler_name,
            environment=spec.environment,
            memory=spec.memory,
            cpus=spec.cpus,
            timeout=spec.timeout,
            secret_files={name: str(path) for name, path in self.secret_files.items()},
            code_mount=self.code_mount,
            isolation=spec.isolation,
            debugger=self.debugger,
        )


@dataclass(frozen=True)
class WarmPoolStatus:
    """One warm pool, for `faas ls`, /metrics and the dashboard."""

    pool: str
    """The kind's label (runtime/warm_kinds.py)."""
    ready: int
    held: int
    """Ready, on their way, or being handed over or removed: what counts against `target`."""
    target: int
    """How many it keeps now, from recent cold starts and the memory budget."""
    per_watchdog: int | None
    """Bytes one of its watchdogs holds, as measured; None: not yet measured."""
    preload: tuple[str, ...]
    functions: tuple[str, ...]
    """The functions that start from it."""

    @property
    def memory(self) -> int:
        """Bytes its watchdogs hold together (as measured, one for each held)."""
        return (self.per_watchdog or 0) * self.held


@dataclass(frozen=True)
class WarmStatus:
    maximum: int
    """`gateway.warm_pool`: the most a pool keeps."""
    budget: int
    """`gateway.warm_pool_memory`: bytes all pools may hold together."""
    pools: tuple[WarmPoolStatus, ...]

    def to_json(self) -> dict[str, Any]:
        """What the admin API answers (`GET /system/functions`, under `warm`)."""
        return {
            "maximum": self.maximum,
            "memory_budget": self.budget,
            "memory": sum(pool.memory for pool in self.pools),
            "pools": [
                {
                    "pool": pool.pool,
                    "ready": pool.ready,
                    "held": pool.held,
                    "target": pool.target,
                    "per_watchdog": pool.per_watchdog,
                    "memory": pool.memory,
                    "preload": list(pool.preload),
                    "functions": list(pool.functions),
                }
                for pool in self.pools
            ],
        }


class ReplicaSupply(Protocol):
    """Provides a platform's replicas; see the module docstring for when each is called."""

    @property
    def refresh_interval(self) -> float:
        """Seconds between two `refresh` calls."""

    def warm_status(self) -> WarmStatus | None:
        """What the warm pools hold now; None when this supply keeps none."""

    def local_demand(self, pool: FunctionPool) -> int:
        """Calls of `pool` waiting or in flight at this gateway that the replicas every
        gateway shares must carry (what it tells the leading gateway, cluster/gateways.py)."""

    def add(self, pool: FunctionPool) -> None:
        """A function's pool exists (at start, or added by a reload)."""

    def use(self, pool: FunctionPool, recipe: Recipe) -> None:
        """From now on, `pool`'s replicas are made from `recipe`."""

    async def build(
        self,
        pools: Sequence[FunctionPool],
        base_ids: Mapping[str, str],
        progress: FunctionProgress,
    ) -> None:
        """The function images are built (`base_ids`: base image -> content id): build
        what the functions share (the warm watchdogs' image)."""

    async def start(self, pools: Sequence[FunctionPool], progress: FunctionProgress) -> None:
        """Start what the functions share (warm watchdogs), before any is prepared."""

    async def prepare(self, pool: FunctionPool) -> None:
        """Get a built function ready to start replicas; mark it failed if it cannot be."""

    async def replace(self, pool: FunctionPool) -> None:
        """New image or settings: successors start before their predecessors stop."""

    async def remove(self, pool: FunctionPool) -> None:
        """The function is gone: close its pool and stop what it had."""

    def observe(self, pool: FunctionPool, now: float) -> Observation | None:
        """What the scale decision for `pool` is made on; None when this gateway does not
        decide its count now (not built, failed with nothing to stop, not the leader)."""

    def scale(self, pool: FunctionPool, current: int, desired: int) -> int:
        """Move `pool` from `current` replicas (ready and starting) toward `desired`;
        returns the count it moved to."""

    async def refresh(self) -> None:
        """Compare the pools with what the engine runs: forget or retire the replicas it
        lost, put to work the ones it started. May raise; the next call tries again."""

    async def unreachable(
        self,
        pool: FunctionPool,
        handle: ReplicaHandle,
        error: ReplicaUnreachable,
        *,
        was_serving: bool,
    ) -> None:
        """A call could not reach `handle` (set aside when `was_serving`): put it back if
        it still runs, else forget it."""

    def take_back(self, pool: FunctionPool, handle: ReplicaHandle) -> None:
        """A replica out of service has finished its last call."""

    async def stop(self) -> None:
        """Stop everything under way and every pool's replicas (the platform stops)."""


async def still_running(backend: Backend, pool: FunctionPool, handle: ReplicaHandle) -> bool:
    """Whether the engine runs a replica a call could not reach; an engine that does not
    answer counts as running (the next `refresh` forgets it once it is listed as gone)."""
    try:
        status = await backend.status(handle.replica.id)
    except Exception as exc:
        log.warning(
            "checking an unreachable replica failed",
            extra={"function": pool.name, "replica": handle.replica.name,
                   "error": str(exc) or type(exc).__name__},
        )  # fmt: skip
        return True
    return status is not None and status.running
