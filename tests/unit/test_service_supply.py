"""The service supply (swarm, kubernetes) on a fake engine: tasks the engine runs are put
to work and retired, only the leading gateway sets counts, and a failed function's
service goes to zero."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from runtime.backends.base import ImageRequest, Replica, ReplicaSpec, ReplicaStatus, Task
from runtime.platform import Platform
from runtime.replica_client import ReplicaClient
from runtime.scaling.coordination import Follower
from runtime.supply.services import ServiceSupply
from tests.unit.fakes import NoEngine, project

T = TypeVar("T")


class Services(NoEngine):
    """A service engine in memory: `tasks` is what it runs now."""

    kind: Literal["services"] = "services"  # type: ignore[assignment]
    scales_itself = False

    def __init__(self) -> None:
        self.services: dict[str, int] = {}
        self.running: list[Task] = []
        self.set: list[tuple[str, int]] = []

    async def ensure_service(self, spec: ReplicaSpec) -> None:
        self.services.setdefault(spec.function, 0)

    async def remove_service(self, function: str) -> None:
        del self.services[function]

    async def set_replicas(self, function: str, count: int) -> None:
        self.set.append((function, count))
        self.services[function] = count

    async def desired_replicas(self) -> dict[str, int]:
        return dict(self.services)

    async def tasks(self) -> list[Task]:
        return list(self.running)

    async def status(self, replica_id: str) -> ReplicaStatus | None:
        for task in self.running:
            if task.id == replica_id:
                return ReplicaStatus(task.id, task.name, task.function, True)
        return None

    def run(self, function: str, number: int) -> Task:
        task = Task(f"t{number}", f"{function}.{number}", function, True, 0.0, "tok", f"a:{number}")
        self.running.append(task)
        return task


class Ready:
    """The replica client's readiness check: every task is ready at once; `cut` records
    the replicas whose calls the supply cut (`ReplicaClient.lost`)."""

    def __init__(self) -> None:
        self.cut: list[tuple[str, str]] = []

    def lost(self, replica: Replica, why: str) -> int:
        self.cut.append((replica.id, why))
        return 1

    async def wait_ready(
        self, replica: Replica, *, deadline: float, is_alive: Callable[[Replica], Awaitable[None]]
    ) -> None:
        pass

    async def close(self) -> None: ...


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


async def deployed(tmp_path: Path, engine: Services) -> tuple[Platform, ServiceSupply]:
    loaded = project(tmp_path, "f", scale="{min: 0, max: 4, target_concurrency: 1}")
    made = Platform(loaded, engine, client=cast(ReplicaClient, Ready()))
    pool = made.pools["f"]
    made._built(pool, ImageRequest("f", "faas-function:f", b""))
    await made.supply.prepare(pool)
    assert isinstance(made.supply, ServiceSupply)
    return made, made.supply


async def settled(supply: ServiceSupply) -> None:
    await supply.refresh()
    for _ in range(3):  # readiness checks run in tasks of their own
        await asyncio.sleep(0)


def test_tasks_the_engine_runs_are_put_to_work_and_retired(tmp_path: Path) -> None:
    async def main() -> None:
        engine = Services()
        made, supply = await deployed(tmp_path, engine)
        pool = made.pools["f"]
        first, second = engine.run("f", 1), engine.run("f", 2)
        await settled(supply)
        assert [h.replica.id for h in pool.replicas] == [first.id, second.id]
        busy = await pool.acquire()
        engine.running.remove(first if busy.replica.id == first.id else second)
        await settled(supply)  # gone from the engine: no more calls; its call finishes
        assert len(pool.replicas) == 1 and pool.draining == [busy]
        pool.release(busy)
        assert pool.draining == []
        await supply.stop()

    run(main())


def test_a_task_lost_with_its_node_is_dropped_and_its_calls_cut(tmp_path: Path) -> None:
    """Unlike a task Swarm stops (drained: its calls finish), one whose node died never
    answers: it leaves the pool at once and the calls on it are cut, to answer 502."""

    async def main() -> None:
        engine = Services()
        made, supply = await deployed(tmp_path, engine)
        client = cast(Ready, made.client)
        pool = made.pools["f"]
        first, second = engine.run("f", 1), engine.run("f", 2)
        await settled(supply)
        busy = await pool.acquire()
        lost = first if busy.replica.id == first.id else second
        engine.running.remove(lost)
        engine.running.append(dataclasses.replace(lost, running=False, lost="its node w1 is down"))
        await settled(supply)
        assert client.cut == [(lost.id, "its node w1 is down")]
        assert [h.replica.id for h in pool.replicas] != [lost.id] and pool.draining == []
        assert len(pool.replicas) == 1
        await supply.stop()

    run(main())


def test_the_leader_sets_counts_on_demand_and_a_follower_never(tmp_path: Path) -> None:
    async def main() -> None:
        engine = Services()
        made, supply = await deployed(tmp_path, engine)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        await asyncio.sleep(0)
        assert engine.set == [("f", 1)] and pool.starting == 1
        engine.run("f", 1)
        await settled(supply)
        await waiting
        made.autoscaler.reconcile(pool, 1.5)  # counted again on every tick
        assert pool.starting == 0 and engine.set == [("f", 1)]

        supply.coordination = Follower()
        extra = asyncio.get_running_loop().create_task(pool.acquire())
        made.autoscaler.reconcile(pool, 2.0)
        await asyncio.sleep(0)
        assert engine.set == [("f", 1)]  # only the leader sets counts
        extra.cancel()
        await supply.stop()

    run(main())


def test_a_failed_functions_service_goes_to_zero(tmp_path: Path) -> None:
    async def main() -> None:
        engine = Services()
        made, supply = await deployed(tmp_path, engine)
        pool = made.pools["f"]
        engine.services["f"] = 2
        await settled(supply)
        pool.mark_failed("its handler failed to import")
        made.autoscaler.reconcile(pool, 1.0)
        await asyncio.sleep(0)
        assert engine.set == [("f", 0)]
        assert [e.reason for e in made.autoscaler.events] == ["the function failed"]
        await supply.stop()

    run(main())
