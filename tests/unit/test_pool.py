"""The call queue and slot accounting of one function (runtime/pool.py), on the in-memory
supply: who gets a slot, in what order, and what happens when replicas come and go."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runtime.errors import FunctionUnavailable, QueueFull
from runtime.observers import PoolObserver
from runtime.pool import BURST_FACTOR, FunctionPool, FunctionState, ReplicaHandle
from runtime.supply.memory import MemorySupply
from tests.unit.fakes import built, platform, project

T = TypeVar("T")

ONE_SLOT = "{max: 2, concurrency: 1, target_concurrency: 1}"
TWO_SLOTS = "{max: 2, concurrency: 2, target_concurrency: 2}"
SHORT_QUEUE = "{max: 1, concurrency: 1, target_concurrency: 1, max_queue: 2}"


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


async def pool_with(
    tmp_path: Path, replicas: int, scale: str = "{min: 0, max: 4}"
) -> tuple[FunctionPool, MemorySupply]:
    made, supply, _ = platform(project(tmp_path, "f", scale=scale))
    built(made)
    pool = made.pools["f"]
    for _ in range(replicas):
        await supply.start_replica(pool)
    return pool, supply


async def waiting(pool: FunctionPool, count: int) -> list[asyncio.Task[ReplicaHandle]]:
    """`count` calls queued behind busy replicas, in this order."""
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.get_running_loop().create_task(pool.acquire()))
        await asyncio.sleep(0)
    return tasks


def test_calls_get_slots_in_the_order_they_arrived(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, ONE_SLOT)
        first = await pool.acquire()
        queued = await waiting(pool, 3)
        assert pool.depth() == 3 and pool.in_flight == 1
        served = []
        handle = first
        for task in queued:
            pool.release(handle)
            handle = await task
            served.append(queued.index(task))
            assert all(not t.done() for t in queued[queued.index(task) + 1 :])
        assert served == [0, 1, 2]
        pool.release(handle)
        assert pool.in_flight == 0 and pool.depth() == 0

    run(main())


def test_a_replica_takes_as_many_calls_as_it_has_slots(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, TWO_SLOTS)
        first, second = await pool.acquire(), await pool.acquire()
        assert first is second and first.in_flight == 2
        assert not pool.can_take_now()
        (third,) = await waiting(pool, 1)
        assert not third.done()
        pool.release(first)
        assert await third is first and first.in_flight == 2

    run(main())


def test_calls_go_to_the_least_busy_replica(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 2, TWO_SLOTS)
        handles = [await pool.acquire() for _ in range(4)]
        assert [h.in_flight for h in pool.replicas] == [2, 2]
        assert len({id(h) for h in handles}) == 2

    run(main())


def test_a_full_queue_refuses_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, SHORT_QUEUE)
        await pool.acquire()
        await waiting(pool, 2)
        with pytest.raises(QueueFull):
            await pool.acquire()

    run(main())


def test_calls_queued_behind_a_lost_replica_go_to_another(tmp_path: Path) -> None:
    async def main() -> None:
        pool, supply = await pool_with(tmp_path, 2, ONE_SLOT)
        lost, kept = await pool.acquire(), await pool.acquire()
        queued = await waiting(pool, 2)
        supply.lose(lost.replica)
        await supply.refresh()  # the engine says it is gone
        assert pool.replicas == [kept]
        pool.release(lost)  # its call ended in an error: the slot is not reused
        assert not any(t.done() for t in queued)
        pool.release(kept)
        assert await queued[0] is kept
        pool.release(kept)
        assert await queued[1] is kept

    run(main())


def test_a_cancelled_wait_leaves_the_queue_and_a_handed_slot_goes_back(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, ONE_SLOT)
        handle = await pool.acquire()
        gone, stays = await waiting(pool, 2)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert pool.depth() == 1
        pool.release(handle)
        assert await stays is handle and handle.in_flight == 1

    run(main())


def test_a_failed_function_fails_its_waiting_calls_until_cleared(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 0)
        queued = await waiting(pool, 2)
        pool.mark_failed("its handler failed to import", detail="NameError: x")
        for task in queued:
            with pytest.raises(FunctionUnavailable, match="failed to import"):
                await task
        assert pool.state is FunctionState.FAILED and pool.error_detail == "NameError: x"
        with pytest.raises(FunctionUnavailable):
            await pool.acquire()
        pool.clear_failure()
        assert pool.error is None and pool.state.value == FunctionState.IDLE

    run(main())


def test_draining_takes_the_least_busy_and_gives_busy_ones_back_when_idle(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        pool, supply = await pool_with(tmp_path, 2, TWO_SLOTS)
        busy = await pool.acquire()
        idle = next(h for h in pool.replicas if h is not busy)
        assert pool.drain(1) == [idle]
        assert supply.stopped == [idle.replica.id]  # idle: back at once
        assert pool.drain(1) == [busy] and pool.draining == [busy]
        assert supply.stopped == [idle.replica.id]  # busy: its call finishes first
        pool.release(busy)
        assert pool.draining == [] and supply.stopped == [idle.replica.id, busy.replica.id]

    run(main())


def test_a_replica_set_aside_gets_no_calls_until_put_back(tmp_path: Path) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, ONE_SLOT)
        handle = await pool.acquire()
        assert pool.set_aside(handle)
        pool.release(handle)
        (queued,) = await waiting(pool, 1)
        assert not queued.done() and pool.replicas == []
        assert pool.put_back(handle)
        assert await queued is handle

    run(main())


def test_closing_fails_waiting_calls_and_gives_every_replica_up(tmp_path: Path) -> None:
    async def main() -> None:
        pool, supply = await pool_with(tmp_path, 2, ONE_SLOT)
        first, second = await pool.acquire(), await pool.acquire()
        pool.drain(1)
        (queued,) = await waiting(pool, 1)
        handles = pool.close()
        assert {id(h) for h in handles} == {id(first), id(second)}
        with pytest.raises(FunctionUnavailable, match="shutting down"):
            await queued
        await supply.start_replica(pool)  # a start ending now: its replica is stopped
        assert pool.replicas == [] and supply.stopped[-1] == supply.started[-1].id

    run(main())


def test_the_pool_reports_demand_cold_starts_and_losses(tmp_path: Path) -> None:
    class Recorder(PoolObserver):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def demand(self, function: str) -> None:
            self.seen.append(f"demand {function}")

        def cold_start(self, function: str, seconds: float, phases: object) -> None:
            self.seen.append(f"cold start {function}")

        def replica_lost(self, replica: object, why: str) -> None:
            self.seen.append(f"lost: {why}")

    async def main() -> None:
        made, supply, _ = platform(project(tmp_path, "f"))
        built(made)
        recorder = Recorder()
        made.observe(recorder)
        pool = made.pools["f"]
        (queued,) = await waiting(pool, 1)
        await supply.start_replica(pool)
        handle = await queued
        supply.lose(handle.replica)
        await supply.refresh()
        assert recorder.seen == ["demand f", "cold start f", "lost: it exited"]

    run(main())


SOFT_TWO = "{max: 4, target_concurrency: 2}"
"""No `concurrency`: 2 calls per replica is what the autoscaler aims for, not a limit."""


@pytest.mark.parametrize(
    ("scale", "starting", "most"),
    [
        (SOFT_TWO, 1, 2 * BURST_FACTOR),  # calls wait for a start: ready replicas take more
        (SOFT_TWO, 0, 2),  # nothing starting: the target
        (TWO_SLOTS, 1, 2),  # a hard limit stays one
    ],
    ids=["soft target, a replica starting", "soft target, none starting", "hard limit"],
)
def test_ready_replicas_take_more_calls_while_others_start_unless_limited(
    tmp_path: Path, scale: str, starting: int, most: int
) -> None:
    async def main() -> None:
        pool, _ = await pool_with(tmp_path, 1, scale)
        pool.starting = starting  # as the supply counts a start under way
        handle = await pool.acquire()
        handle_again = await pool.acquire()
        assert handle is handle_again
        queued = await waiting(pool, 2 * BURST_FACTOR)
        pool.release(handle_again)  # a slot frees: the waiting calls are dispatched
        await asyncio.sleep(0)
        assert handle.in_flight == most
        assert sum(t.done() for t in queued) == most - 1
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        pool.starting = 0

    run(main())
