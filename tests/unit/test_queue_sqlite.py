"""The SQLite queue: its states, its in-memory counts, and what a crash leaves behind."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from runtime.errors import QueueFull
from runtime.events.queue import CallbackState, Kind, Message, Result, State
from runtime.events.sqlite import QueueLocked, SqliteQueue

T = TypeVar("T")
NOW = 1_700_000_000.0
LIMITS = {"a": 100, "b": 100}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def run(scenario: Callable[[SqliteQueue, Clock], Awaitable[T]], path: Path) -> T:
    async def main() -> T:
        clock = Clock()
        queue = SqliteQueue(path, clock)
        await queue.open(clock.now)
        try:
            return await scenario(queue, clock)
        finally:
            await queue.close()

    return asyncio.run(main())


def event(number: int, created: float = NOW, topic: str = "orders.created") -> Message:
    return Message(f"e{number}", Kind.EVENT, created, body=b"{}", topic=topic)


def call(call_id: str, callback: str | None = None) -> Message:
    return Message(call_id, Kind.CALL, NOW, path="/x", query=b"q=1", callback_url=callback)


def test_fan_out_lease_and_finish(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        due: list[str] = []
        queue.on_due = due.append
        await queue.enqueue(event(1), ["a", "b"], LIMITS)
        assert due == ["a", "b"]
        assert (queue.pending("a"), queue.pending("b")) == (1, 1)
        (delivery,) = await queue.lease("a", 10, NOW, 30)
        assert (delivery.function, delivery.attempt, delivery.message) == ("a", 1, event(1))
        assert (queue.pending("a"), queue.backlog("a")) == (0, 1)
        assert await queue.lease("a", 10, NOW, 30) == []
        assert await queue.finish(delivery, State.DONE, Result(200), NOW + 1)
        assert (queue.pending("a"), queue.backlog("a"), queue.backlog("b")) == (0, 0, 1)
        assert await queue.counts() == {"a": {"done": 1}, "b": {"pending": 1}}
        # acknowledging twice, or after the lease is gone, is refused
        assert not await queue.finish(delivery, State.DONE, Result(200), NOW + 1)

    run(scenario, tmp_path / "q.db")


def test_oldest_first_and_only_what_is_due(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        for number in (3, 1, 2):
            await queue.enqueue(event(number, NOW + number), ["a"], LIMITS)
        assert queue.pending("a") == 0  # all in the future
        clock.now = NOW + 2
        assert queue.pending("a") == 2
        assert queue.earliest_due() == {"a": NOW + 1}
        leased = await queue.lease("a", 10, NOW + 2, 30)
        assert [d.message.id for d in leased] == ["e1", "e2"]
        assert queue.earliest_due() == {"a": NOW + 3}

    run(scenario, tmp_path / "q.db")


def test_retry_counts_the_attempt_and_release_does_not(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a"], LIMITS)
        (first,) = await queue.lease("a", 1, NOW, 30)
        assert await queue.retry(first, Result(503, error="busy"), NOW + 5)
        assert queue.pending("a") == 0 and queue.backlog("a") == 1
        clock.now = NOW + 5
        (second,) = await queue.lease("a", 1, NOW + 5, 30)
        assert second.attempt == 2
        assert await queue.release(second, NOW + 5)
        (third,) = await queue.lease("a", 1, NOW + 5, 30)
        assert third.attempt == 2  # the released attempt never reached a handler

    run(scenario, tmp_path / "q.db")


def test_backlog_limit_is_all_or_nothing(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        limits = {"a": 2, "b": 100}
        await queue.enqueue(event(1), ["a", "b"], limits)
        await queue.enqueue(event(2), ["a", "b"], limits)
        with pytest.raises(QueueFull) as caught:
            await queue.enqueue(event(3), ["a", "b"], limits)
        assert "max_backlog" in str(caught.value)
        assert (queue.backlog("a"), queue.backlog("b")) == (2, 2)  # b got nothing either
        # leased work still counts: it is not delivered yet
        await queue.lease("a", 2, NOW, 30)
        with pytest.raises(QueueFull):
            await queue.enqueue(event(4), ["a"], limits)

    run(scenario, tmp_path / "q.db")


def test_concurrent_publishes_never_overshoot_the_limit(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> list[bool]:
        async def publish(number: int) -> bool:
            try:
                await queue.enqueue(event(number), ["a"], {"a": 10})
            except QueueFull:
                return False
            return True

        return list(await asyncio.gather(*(publish(n) for n in range(50))))

    accepted = run(scenario, tmp_path / "q.db")
    assert accepted.count(True) == 10


def test_a_crash_leaves_nothing_in_limbo(tmp_path: Path) -> None:
    path = tmp_path / "q.db"

    async def before(queue: SqliteQueue, clock: Clock) -> None:
        for number in range(5):
            await queue.enqueue(event(number), ["a"], LIMITS)
        leased = await queue.lease("a", 3, NOW, 3600)
        await queue.finish(leased[0], State.DONE, Result(200), NOW)
        # the gateway dies here with two deliveries leased for an hour

    async def after(queue: SqliteQueue, clock: Clock) -> None:
        assert (queue.pending("a"), queue.backlog("a")) == (4, 4)
        leased = await queue.lease("a", 10, NOW, 30)
        assert sorted(d.message.id for d in leased) == ["e1", "e2", "e3", "e4"]
        assert {d.message.id: d.attempt for d in leased} == {"e1": 2, "e2": 2, "e3": 1, "e4": 1}

    run(before, path)
    run(after, path)


def test_expired_leases_are_reclaimed_while_running(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a"], LIMITS)
        (stuck,) = await queue.lease("a", 1, NOW, 10)
        due: list[str] = []
        queue.on_due = due.append
        assert await queue.reclaim_expired(NOW + 5) == 0
        assert await queue.reclaim_expired(NOW + 11) == 1
        assert due == ["a"]
        clock.now = NOW + 11
        assert queue.pending("a") == 1
        # the stuck worker's late answer no longer counts
        assert not await queue.finish(stuck, State.DONE, Result(200), NOW + 12)
        (again,) = await queue.lease("a", 1, NOW + 11, 10)
        assert again.attempt == 2

    run(scenario, tmp_path / "q.db")


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "q.db"

    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        second = SqliteQueue(path)
        with pytest.raises(QueueLocked, match="another gateway"):
            await second.open(NOW)

    run(scenario, path)
    run(lambda queue, clock: asyncio.sleep(0), path)  # the lock went with the first owner


def test_cancel_only_while_waiting(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(call("c1"), ["a"], LIMITS)
        await queue.enqueue(call("c2"), ["a"], LIMITS)
        assert await queue.cancel("c1", NOW) is State.CANCELLED
        assert queue.pending("a") == 1
        (running,) = await queue.lease("a", 5, NOW, 30)
        assert running.message.id == "c2"
        assert await queue.cancel("c2", NOW) is State.LEASED
        assert await queue.cancel("nope", NOW) is None
        await queue.enqueue(event(1), ["a"], LIMITS)
        assert await queue.cancel("e1", NOW) is None  # events are not calls
        record = await queue.call("c1")
        assert record is not None and record.state is State.CANCELLED

    run(scenario, tmp_path / "q.db")


def test_call_records_and_callbacks(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(call("c1", "http://127.0.0.1:9/cb"), ["a"], LIMITS)
        record = await queue.call("c1")
        assert record is not None
        assert (record.state, record.attempts, record.result) == (State.PENDING, 0, None)
        (delivery,) = await queue.lease("a", 1, NOW, 30)
        assert (delivery.message.path, delivery.message.query) == ("/x", b"q=1")
        result = Result(201, (("content-type", "text/plain"),), b"made", None, 0.25)
        await queue.finish(delivery, State.DONE, result, NOW + 1)
        record = await queue.call("c1")
        assert record is not None
        assert (record.state, record.attempts, record.result) == (State.DONE, 1, result)
        assert record.callback_state is CallbackState.PENDING
        assert queue.next_callback_due() == NOW + 1

        (job,) = await queue.lease_callbacks(NOW + 1, 10, 30)
        assert (job.call_id, job.url, job.attempt, job.result) == (
            "c1",
            "http://127.0.0.1:9/cb",
            1,
            result,
        )
        assert queue.next_callback_due() == NOW + 31  # leased
        await queue.callback_finished(job, None, 503, "busy", NOW + 2)
        assert queue.next_callback_due() == NOW + 2
        (job,) = await queue.lease_callbacks(NOW + 2, 10, 30)
        assert job.attempt == 2
        await queue.callback_finished(job, CallbackState.SENT, 200, None, 0)
        assert queue.next_callback_due() is None
        record = await queue.call("c1")
        assert record is not None
        assert (record.callback_state, record.callback_attempts, record.callback_status) == (
            CallbackState.SENT,
            2,
            200,
        )

    run(scenario, tmp_path / "q.db")


def test_event_results_are_not_kept(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a"], LIMITS)
        (delivery,) = await queue.lease("a", 1, NOW, 30)
        await queue.finish(delivery, State.DONE, Result(200, (), b"big" * 1000), NOW)

    path = tmp_path / "q.db"
    run(scenario, path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT result_body FROM deliveries").fetchall() == [(None,)]


def test_dead_letters_replay_and_drop(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a", "b"], LIMITS)
        for function in ("a", "b"):
            (delivery,) = await queue.lease(function, 1, NOW, 30)
            await queue.finish(delivery, State.DEAD, Result(500, error="boom"), NOW + 1)
        letters = await queue.dead_letters()
        assert [(d.function, d.attempts, d.status, d.error) for d in letters] == [
            ("a", 1, 500, "boom"),
            ("b", 1, 500, "boom"),
        ]
        assert [d.function for d in await queue.dead_letters("b")] == ["b"]
        dead_a, dead_b = letters
        assert queue.backlog("a") == 0  # dead letters do not hold back new work

        assert await queue.replay(dead_a.id, NOW + 2)
        assert not await queue.replay(dead_a.id, NOW + 2)  # no longer dead
        clock.now = NOW + 2
        (again,) = await queue.lease("a", 1, NOW + 2, 30)
        assert (again.message.id, again.attempt) == ("e1", 1)

        assert await queue.drop(dead_b.id)
        assert not await queue.drop(dead_b.id)
        assert await queue.dead_letters() == []

    run(scenario, tmp_path / "q.db")


def test_purge_forgets_finished_work_but_not_dead_letters(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a"], LIMITS)  # done long ago
        await queue.enqueue(event(2), ["a", "b"], LIMITS)  # done for a, dead for b
        await queue.enqueue(event(3), ["a"], LIMITS)  # done just now
        one, two, three = await queue.lease("a", 3, NOW, 30)
        await queue.finish(one, State.DONE, Result(200), NOW)
        await queue.finish(two, State.DONE, Result(200), NOW)
        await queue.finish(three, State.DONE, Result(200), NOW + 100)
        (dead,) = await queue.lease("b", 1, NOW, 30)
        await queue.finish(dead, State.DEAD, Result(500), NOW)
        assert await queue.purge(NOW + 50) == 1
        assert await queue.counts() == {"a": {"done": 2}, "b": {"dead": 1}}
        assert len(await queue.dead_letters()) == 1

    run(scenario, tmp_path / "q.db")


def test_fire_records_and_enqueues_together(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        assert await queue.last_fired("tick", "* * * * * UTC") is None
        firing = Message("f1", Kind.CRON, NOW, topic="faas.cron")
        assert await queue.fire("tick", "* * * * * UTC", NOW, firing, limit=1)
        assert await queue.last_fired("tick", "* * * * * UTC") == NOW
        assert queue.pending("tick") == 1
        # over the backlog: recorded as fired (no catch-up later) but nothing stored
        second = Message("f2", Kind.CRON, NOW + 60, topic="faas.cron")
        assert not await queue.fire("tick", "* * * * * UTC", NOW + 60, second, limit=1)
        assert await queue.last_fired("tick", "* * * * * UTC") == NOW + 60
        assert queue.backlog("tick") == 1

    run(scenario, tmp_path / "q.db")


def test_group_commit_keeps_up(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await asyncio.gather(*(queue.enqueue(event(n), ["a", "b"], {"a": 10**6, "b": 10**6})
                               for n in range(2000)))  # fmt: skip
        assert (queue.pending("a"), queue.pending("b")) == (2000, 2000)

    run(scenario, tmp_path / "q.db")


def test_files_are_owner_only(tmp_path: Path) -> None:
    async def scenario(queue: SqliteQueue, clock: Clock) -> None:
        await queue.enqueue(event(1), ["a"], LIMITS)

    run(scenario, tmp_path / "state" / "q.db")
    for path in (tmp_path / "state").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
