"""`Platform.invoke` and the autoscaler on the in-memory supply: calls reach replicas, a
call is sent at most once, scale decisions are applied, and every observer hears about
the functions a reload adds."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from runtime.errors import FunctionUnavailable, ReplicaUnreachable
from runtime.invocation import InvocationResult
from tests.unit.fakes import built, call, platform, project

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


async def answer(result: InvocationResult) -> bytes:
    body = b"".join([chunk async for chunk in result.body])
    await result.close()
    return body


def test_a_call_at_zero_waits_for_the_replica_its_demand_starts(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, _ = platform(project(tmp_path, "f"))
        await made.deploy()
        try:
            assert supply.started == []  # min 0: nothing runs
            result = await made.invoke(call("f"))
            assert result.status == 200 and await answer(result) == b"f-1"
            assert [(e.before, e.after) for e in made.autoscaler.events] == [(0, 1)]
            assert made.pools["f"].in_flight == 0
        finally:
            await made.shutdown()

    run(main())


def test_a_call_that_never_reached_its_replica_goes_to_another(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, replicas = platform(project(tmp_path, "f"))
        built(made)
        pool = made.pools["f"]
        await supply.start_replica(pool)
        await supply.start_replica(pool)
        dead = pool.replicas[0].replica
        supply.lose(dead)  # it died as the call was handed to it
        replicas.unreachable[dead.name] = False  # could not connect: nothing was sent
        result = await made.invoke(call("f", "one"))
        assert await answer(result) == b"f-2"
        assert replicas.sent == [("f-1", "one"), ("f-2", "one")]
        assert [h.replica.name for h in pool.replicas] == ["f-2"]  # the dead one forgotten

    run(main())


def test_a_replica_that_refused_a_connection_but_runs_stays_in_service(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, replicas = platform(project(tmp_path, "f"))
        built(made)
        pool = made.pools["f"]
        await supply.start_replica(pool)
        await supply.start_replica(pool)
        replicas.unreachable["f-1"] = False
        result = await made.invoke(call("f", "one"))
        assert await answer(result) == b"f-2"
        assert sorted(h.replica.name for h in pool.replicas) == ["f-1", "f-2"]

    run(main())


def test_a_call_that_was_sent_is_never_sent_again(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, replicas = platform(project(tmp_path, "f"))
        built(made)
        pool = made.pools["f"]
        await supply.start_replica(pool)
        await supply.start_replica(pool)
        replicas.unreachable["f-1"] = True  # the connection broke after the request went out
        with pytest.raises(ReplicaUnreachable):  # the gateway answers 502
            await made.invoke(call("f", "one"))
        assert replicas.sent == [("f-1", "one")]
        assert pool.in_flight == 0

    run(main())


def test_a_call_stops_trying_after_a_few_unreachable_replicas(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, replicas = platform(project(tmp_path, "f"))
        built(made)
        pool = made.pools["f"]
        for _ in range(4):
            await supply.start_replica(pool)
        for replica in supply.started:
            replicas.unreachable[replica.name] = False
        with pytest.raises(ReplicaUnreachable):
            await made.invoke(call("f", "one"))
        assert len(replicas.sent) == 3  # UNSENT_ATTEMPTS replicas, then it gives up

    run(main())


def test_scale_decisions_are_applied_up_on_demand_and_down_after_the_idle_window(
    tmp_path: Path,
) -> None:
    """With a clock of our own: the loop's `reconcile` at chosen times."""

    async def main() -> None:
        scale = "{min: 0, max: 4, target_concurrency: 1, idle_timeout: 10}"
        made, supply, _ = platform(project(tmp_path, "f", scale=scale))
        built(made)
        pool, scaler = made.pools["f"], made.autoscaler
        scaler.reconcile(pool, 0.0)
        assert supply.started == []  # nothing waits: it stays at zero
        waiting = asyncio.get_running_loop().create_task(pool.acquire())
        await asyncio.sleep(0)
        scaler.reconcile(pool, 1.0)  # one call waiting: 0 -> 1 at once
        handle = await waiting
        assert [h.replica.name for h in pool.replicas] == ["f-1"]
        pool.release(handle)
        for now in (2.0, 6.0, 11.5):  # idle since t=2, but the 1 is still in the window
            scaler.reconcile(pool, now)
            assert len(pool.replicas) == 1
        scaler.reconcile(pool, 12.5)
        assert pool.replicas == [] and supply.stopped == ["m1"]
        assert [(e.before, e.after, e.reason) for e in scaler.events] == [
            (0, 1, "1 queued + 0 in flight at 1 per replica"),
            (1, 0, "idle for 10s"),
        ]

    run(main())


def test_a_function_whose_handler_fails_to_import_fails_its_calls(tmp_path: Path) -> None:
    async def main() -> None:
        made, supply, _ = platform(project(tmp_path, "f"))
        supply.fail_next(FunctionUnavailable("its handler failed to import", detail="Bad"))
        await made.deploy()
        try:
            with pytest.raises(FunctionUnavailable, match="failed to import"):
                await made.invoke(call("f"))
            (row,) = made.describe()
            assert (row["state"], row["error_detail"]) == ("failed", "Bad")
        finally:
            await made.shutdown()

    run(main())


def samples(metrics: Metrics, name: str) -> dict[str, float]:
    """`name`'s samples by function label."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels["function"]] = sample.value
    return found


def test_metrics_count_the_cold_starts_of_functions_a_reload_adds(tmp_path: Path) -> None:
    async def main() -> None:
        made, _, _ = platform(project(tmp_path, "first"))
        metrics = Metrics(made)
        await made.deploy()
        try:
            await answer(await made.invoke(call("first")))
            changes = await made.apply(project(tmp_path, "first", "added"))
            assert changes.added == ["added"]
            await answer(await made.invoke(call("added")))
            counted = samples(metrics, "faas_cold_start_seconds_count")
            assert counted == {"first": 1.0, "added": 1.0}
            scaled = samples(metrics, "faas_scale_events_total")
            assert scaled == {"first": 1.0, "added": 1.0}
            _, added = made.describe()
            assert added["last_cold_start_phases"] == {} and added["replicas"] == 1
        finally:
            await made.shutdown()

    run(main())


def test_removing_a_function_stops_its_replicas_and_fails_its_waiting_calls(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        one_slot = "{max: 1, concurrency: 1, target_concurrency: 1}"
        made, supply, _ = platform(project(tmp_path, "kept", "removed", scale=one_slot))
        built(made)
        removed = made.pools["removed"]
        await supply.start_replica(removed)
        handle = await removed.acquire()
        queued = asyncio.get_running_loop().create_task(removed.acquire())
        await asyncio.sleep(0)
        changes = await made.apply(project(tmp_path, "kept", scale=one_slot))
        assert changes.removed == ["removed"] and list(made.pools) == ["kept"]
        with pytest.raises(FunctionUnavailable):
            await queued
        assert supply.stopped == [handle.replica.id]

    run(main())
