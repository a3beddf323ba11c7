"""Replica supplies: where a function's replicas come from.

The platform and the autoscaler ask a `ReplicaSupply` (base.py) for replicas
and never learn which kind of engine runs them. One supply per kind of
backend, chosen once, here, from the backend's `kind`:

- containers.py  `ContainerSupply`: containers the gateway creates, starts and
                 stops itself (docker): warm pools by kind of function
                 (runtime/warm_pool.py), removals with retries and the orphan
                 sweep (runtime/reconcile.py)
- starts.py      `ContainerStarts`: one function's container starts, readiness, rolls
- services.py    `ServiceSupply`: a service per function whose count the engine
                 keeps (swarm, kubernetes): set counts (the leading gateway only),
                 adopt and retire the tasks the engine runs
- warm_tasks.py  `WarmTasks`: a service supply's warm starts, on claimed tasks of
                 warm services (swarm)
- memory.py      `MemorySupply`: replicas in memory, for tests without an engine
- base.py        the protocol, `Recipe` (what replicas are made from)

A new engine or sandbox runtime is a backend of an existing kind (a setting
of its supply) or a new supply here, never a branch in the platform.
"""

from __future__ import annotations

from runtime.backends.base import AnyBackend, Backend, WarmServiceBackend
from runtime.replica_client import ReplicaClient
from runtime.scaling.coordination import Coordination, Follower
from runtime.supply.base import FunctionProgress, Recipe, ReplicaSupply
from runtime.supply.containers import ContainerSupply
from runtime.supply.services import ServiceSupply
from runtime.supply.warm_tasks import WarmTasks

__all__ = [
    "FunctionProgress",
    "Recipe",
    "ReplicaSupply",
    "shares_replicas",
    "supply_for",
]


def supply_for(
    backend: AnyBackend,
    client: ReplicaClient,
    *,
    warm_pool: int = 0,
    warm_pool_memory: int = 0,
    warm_tasks: int = 0,
    coordination: Coordination | None = None,
) -> ReplicaSupply:
    """The supply for `backend`'s kind. `warm_pool`, `warm_pool_memory`: the most warm
    watchdogs one pool keeps, and the bytes all may hold (containers); `warm_tasks`: tasks
    per warm service (services that keep them: swarm); `coordination`:
    who sets counts among the gateways sharing the services."""
    if backend.kind == "services":
        if backend.scales_itself:
            coordination = Follower()
        warm = None
        if isinstance(backend, WarmServiceBackend) and warm_tasks > 0:
            warm = WarmTasks(backend.warm_services(), backend, client, size=warm_tasks)
        return ServiceSupply(backend, client, coordination, warm)
    return ContainerSupply(backend, client, warm_pool=warm_pool, warm_pool_memory=warm_pool_memory)


def shares_replicas(backend: Backend) -> bool:
    """Whether the gateways of a project share this backend's replicas (services), so
    they must agree on who sets the counts."""
    return backend.kind == "services"
