"""Warm starts of a service supply on fakes: a call that would wait claims a warm task
(the loser of a claim takes the next), the function's service is not scaled for what
warm tasks carry, and an idle claimed task is retired."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from runtime.backends.base import ImageRequest, Replica, WarmSpec, WarmTask
from runtime.errors import ClaimLost, ReplicaUnreachable
from runtime.platform import Platform
from runtime.replica_client import ReplicaClient
from runtime.supply.services import ServiceSupply
from runtime.supply.warm_tasks import WarmTasks
from runtime.watchdog.wire import claim_digest
from tests.unit.fakes import project
from tests.unit.test_service_supply import Ready, Services, run

KEY = "k" * 43


class Warm:
    """A warm service in memory."""

    claim_idle = 30.0

    def __init__(self, *task_ids: str) -> None:
        self.tasks_now = [WarmTask(i, "warm-svc", KEY, f"{i}:8080", 0.0) for i in task_ids]
        self.ensured: list[WarmSpec] = []
        self.logged: dict[str, str] = {}
        """Task -> the first claim its watchdog logged (as the engine shows it)."""

    async def first_claim(self, task_id: str) -> str | None:
        return self.logged.get(task_id)

    async def ensure(self, spec: WarmSpec, *, label: str, size: int) -> str:
        self.ensured.append(spec)
        return "warm-svc"

    async def remove(self, service: str) -> None: ...

    async def tasks(self) -> list[WarmTask]:
        return list(self.tasks_now)


class Claims(Ready):
    """The replica client: claims of the tasks in `lost` are refused (another won them);
    a task in `impersonated` runs some function's code already: it accepts any claim, and
    its output shows the claim it really had."""

    def __init__(
        self, warm: Warm, lost: set[str], impersonated: frozenset[str] = frozenset()
    ) -> None:
        self.warm = warm
        self.lost = lost
        self.impersonated = impersonated
        self.starting: set[str] = set()
        self.claims: list[tuple[str, str, str]] = []
        self.archives: list[tuple[str, str]] = []
        self.retired: list[Replica] = []
        self.probed: list[Replica] = []

    async def claim(self, replica: Replica, token: str) -> None:
        self.claims.append((replica.id, replica.token, token))
        if replica.id in self.lost:
            raise ClaimLost("claimed by another")
        if replica.id in self.starting:
            raise ReplicaUnreachable("not listening yet", sent=False)
        if replica.id in self.impersonated:
            self.warm.logged.setdefault(replica.id, claim_digest("h" * 43))
        self.warm.logged.setdefault(replica.id, claim_digest(token))

    async def init(self, replica: Replica, archive: bytes) -> None:
        self.archives.append((replica.id, replica.token))

    async def retire(self, replica: Replica) -> None:
        self.retired.append(replica)

    async def wait_ready(
        self, replica: Replica, *, deadline: float, is_alive: Callable[[Replica], Awaitable[None]]
    ) -> None:
        self.probed.append(replica)


async def deployed(
    tmp_path: Path, warm: Warm, client: Claims
) -> tuple[Platform, ServiceSupply, Services]:
    engine = Services()
    typed = cast(ReplicaClient, client)
    tasks = WarmTasks(warm, engine, typed, size=len(warm.tasks_now))
    supply = ServiceSupply(engine, typed, warm=tasks)
    loaded = project(tmp_path, "f", scale="{min: 0, max: 4, idle_timeout: 5s}")
    made = Platform(loaded, engine, client=typed, supply=supply)
    pool = made.pools["f"]
    made._built(pool, ImageRequest("f", "faas-function:f", b"", {"app/functions/hello.py": b""}))
    base = {pool.spec.base_image: "sha256:base"}
    await supply.build([pool], base, lambda *_: None)
    await supply.start([pool], lambda *_: None)
    await supply.prepare(pool)
    await supply.refresh()
    return made, supply, engine


def test_a_cold_start_claims_a_warm_task_and_a_lost_claim_takes_the_next(tmp_path: Path) -> None:
    async def main() -> None:
        warm = Warm("w1", "w2")
        client = Claims(warm, lost={"w1"})
        made, supply, engine = await deployed(tmp_path, warm, client)
        assert [spec.limits.memory for spec in warm.ensured] == [made.pools["f"].spec.memory]
        status = supply.warm_status()
        assert status is not None and [(p.ready, p.held, p.functions) for p in status.pools] == [
            (2, 2, ("f",))
        ]
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        handle = await asyncio.wait_for(waiting, 5)
        # w1 was refused (another claimed it), w2 taken with a token of its own
        assert [(task, shared) for task, shared, _ in client.claims] == [("w1", KEY), ("w2", KEY)]
        assert handle.replica.id == "w2"
        assert handle.replica.token == client.claims[-1][2] != KEY
        assert client.archives == [("w2", handle.replica.token)]  # the function: w2 alone
        made.autoscaler.reconcile(pool, 1.1)
        await asyncio.sleep(0)
        assert engine.set == []  # the warm task carries the call: the service stays at zero
        pool.release(handle)

        assert supply.warm is not None
        await supply.warm.refresh(2.0)  # idle since the claim, not yet for a whole window
        assert client.retired == [] and pool.replicas == [handle]
        loop_now = asyncio.get_running_loop().time()
        await supply.warm.refresh(loop_now + 10.0)
        await asyncio.sleep(0)
        assert pool.replicas == []
        assert [r.id for r in client.retired] == ["w2"]
        assert client.retired[0].token == handle.replica.token  # retired with its own token
        await supply.stop()

    run(main())


def test_without_a_free_warm_task_the_service_scales(tmp_path: Path) -> None:
    async def main() -> None:
        warm = Warm("w1")
        client = Claims(warm, lost={"w1"})
        made, _, engine = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        for _ in range(5):
            await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.1)
        await asyncio.sleep(0)
        assert [task for task, _, _ in client.claims] == ["w1"]  # tried once, never again
        assert engine.set == [("f", 1)]
        waiting.cancel()
        await made.supply.stop()

    run(main())


def test_a_function_gone_retires_its_claimed_tasks(tmp_path: Path) -> None:
    async def main() -> None:
        warm = Warm("w1")
        client = Claims(warm, lost=set())
        made, supply, _ = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        handle = await asyncio.wait_for(waiting, 5)
        pool.release(handle)
        await supply.remove(pool)
        await asyncio.sleep(0)
        assert [r.id for r in client.retired] == ["w1"]
        await supply.stop()

    run(main())


def test_short_calls_between_two_looks_keep_a_claimed_task_and_a_long_window_is_kept_alive(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        warm = Warm("w1")
        client = Claims(warm, lost=set())
        made, supply, _ = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        pool.release(await asyncio.wait_for(waiting, 5))
        assert supply.warm is not None
        now = asyncio.get_running_loop().time()
        for step in range(1, 4):  # a call between every two looks, none in flight at a look
            pool.release(await pool.acquire())
            await supply.warm.refresh(now + 4.0 * step)
        assert client.retired == [] and len(pool.replicas) == 1
        # idle_timeout (5 s) is shorter than claim_idle / 3 here: retired, never probed
        await supply.warm.refresh(now + 4.0 * 3 + 5.0)
        await asyncio.sleep(0)
        assert [r.id for r in client.retired] == ["w1"] and client.probed == []
        await supply.stop()

    run(main())


def test_a_claimed_task_idle_for_long_is_probed_so_it_does_not_retire_itself(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        warm = Warm("w1")
        client = Claims(warm, lost=set())
        warm.claim_idle = 3.0  # below the function's idle_timeout (5 s)
        made, supply, _ = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        pool.release(await asyncio.wait_for(waiting, 5))
        assert supply.warm is not None
        now = asyncio.get_running_loop().time()
        await supply.warm.refresh(now)  # sees the call
        await supply.warm.refresh(now + 1.5)
        await asyncio.sleep(0)
        assert [r.id for r in client.probed] == ["w1"] and client.retired == []
        await supply.stop()

    run(main())


def test_a_task_that_accepts_a_claim_someone_else_made_first_gets_nothing(tmp_path: Path) -> None:
    """A claimed task runs a function's code, which can answer a claim as a fresh watchdog
    would; its output (through the engine) shows the first claim, not ours."""

    async def main() -> None:
        warm = Warm("w1", "w2")
        client = Claims(warm, lost=set(), impersonated=frozenset({"w1"}))
        made, supply, _ = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        handle = await asyncio.wait_for(waiting, 5)
        assert [task for task, _, _ in client.claims] == ["w1", "w2"]
        assert [task for task, _ in client.archives] == ["w2"]  # w1 never got the function
        assert handle.replica.id == "w2" and client.retired == []
        pool.release(handle)
        await supply.stop()

    run(main())


def test_a_task_not_listening_yet_is_tried_again_later(tmp_path: Path) -> None:
    async def main() -> None:
        warm = Warm("w1", "w2")
        client = Claims(warm, lost=set())
        client.starting = {"w1"}  # Swarm says running; its watchdog is still starting
        made, supply, _ = await deployed(tmp_path, warm, client)
        pool = made.pools["f"]
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        made.autoscaler.reconcile(pool, 1.0)
        handle = await asyncio.wait_for(waiting, 5)
        assert handle.replica.id == "w2"
        await supply.refresh()
        status = supply.warm_status()
        assert status is not None and status.pools[0].ready == 1  # w1, free again
        pool.release(handle)
        await supply.stop()

    run(main())
