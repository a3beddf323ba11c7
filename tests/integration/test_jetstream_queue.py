"""The JetStream queue against a real nats-server: one gateway, two sharing work, and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import pytest
from nats.js.errors import BadRequestError

from runtime.errors import PayloadTooLarge, QueueFull
from runtime.events.jetstream import names
from runtime.events.jetstream.store import JetStreamQueue, QueueUnavailable
from runtime.events.queue import CallbackState, Delivery, Kind, Message, Result, State
from tests.nats_server import NatsServer

T = TypeVar("T")
PROJECT = "demo"
LIMITS = {"a": 100, "b": 100}
Open = Callable[..., Awaitable[JetStreamQueue]]


def run(server: NatsServer, scenario: Callable[[Open], Awaitable[T]]) -> T:
    """Run `scenario` with a factory of queues ("gateways"), all closed afterwards."""

    async def main() -> T:
        queues: list[JetStreamQueue] = []

        async def open_queue(**options: float) -> JetStreamQueue:
            queue = JetStreamQueue(
                server.url, PROJECT, refresh_interval=0.05, poll_interval=0.1, **options
            )
            await queue.open(time.time())
            queues.append(queue)
            return queue

        try:
            return await asyncio.wait_for(scenario(open_queue), 30)
        finally:
            for queue in queues:
                await queue.close()

    return asyncio.run(main())


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def lease_soon(
    queue: JetStreamQueue, function: str, lease_for: float = 30, within: float = 5.0
) -> list[Delivery]:
    """Lease what falls due `within` seconds: the server applies a nak a moment after it."""
    deadline = time.monotonic() + within
    while not (deliveries := await queue.lease(function, 10, time.time(), lease_for)):
        assert time.monotonic() < deadline, f"nothing of {function} fell due"
        await asyncio.sleep(0.05)
    return deliveries


def event(number: int, topic: str = "orders.created") -> Message:
    return Message(f"e{number}", Kind.EVENT, time.time(), body=b"{}", topic=topic)


def call(call_id: str, callback: str | None = None) -> Message:
    return Message(
        call_id, Kind.CALL, time.time(), path="/x", query=b"q=\xff", callback_url=callback
    )


def test_fan_out_lease_and_finish(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        due: list[str] = []
        queue.on_due = due.append
        message = event(1)
        await queue.enqueue(message, ["a", "b"], LIMITS)
        assert due == ["a", "b"]
        assert (queue.pending("a"), queue.pending("b"), queue.backlog("a")) == (1, 1, 1)
        (delivery,) = await queue.lease("a", 10, time.time(), 30)
        assert (delivery.function, delivery.attempt, delivery.message) == ("a", 1, message)
        assert (queue.pending("a"), queue.backlog("a")) == (0, 1)
        assert await queue.lease("a", 10, time.time(), 30) == []
        assert await queue.finish(delivery, State.DONE, Result(200), time.time())
        assert (queue.pending("a"), queue.backlog("a"), queue.backlog("b")) == (0, 0, 1)
        assert not await queue.finish(delivery, State.DONE, Result(200), time.time())
        assert await queue.counts() == {"b": {"pending": 1}}

    run(nats_server, scenario)


def test_limits_are_all_or_nothing(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        limits = {"a": 5, "b": 1}
        await queue.enqueue(event(1), ["a", "b"], limits)
        with pytest.raises(QueueFull):
            await queue.enqueue(event(2), ["a", "b"], limits)
        assert (queue.backlog("a"), queue.backlog("b")) == (1, 1)
        await asyncio.sleep(0.2)  # the server agrees once refreshed
        assert (queue.backlog("a"), queue.backlog("b")) == (1, 1)
        big = Message("big", Kind.EVENT, time.time(), body=b"x" * (2 << 20))
        with pytest.raises(PayloadTooLarge, match="max_payload"):
            await queue.enqueue(big, ["a"], limits)

    run(nats_server, scenario)


def test_retry_with_backoff_then_dead_letter_replay_and_drop(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(event(1), ["a"], LIMITS)
        for attempt in (1, 2):
            (delivery,) = await queue.lease("a", 10, time.time(), 30)
            assert delivery.attempt == attempt
            due_at = time.time() + 0.3
            assert await queue.retry(delivery, Result(503), due_at)
            assert queue.pending("a") == 0
            assert queue.earliest_due()["a"] == pytest.approx(due_at)
            assert await queue.lease("a", 10, time.time(), 30) == []  # not due yet
            await asyncio.sleep(max(queue.earliest_due()["a"] - time.time(), 0) + 0.05)
            assert queue.pending("a") == 1
        (delivery,) = await queue.lease("a", 10, time.time(), 30)
        assert delivery.attempt == 3
        assert await queue.finish(delivery, State.DEAD, Result(500, error="boom"), time.time())
        (letter,) = await queue.dead_letters()
        assert (letter.message_id, letter.function, letter.attempts, letter.status) == (
            "e1",
            "a",
            3,
            500,
        )
        assert await queue.dead_letters("b") == []
        assert (await queue.counts())["a"] == {"dead": 1}
        assert queue.backlog("a") == 0
        assert await queue.replay(letter.id, time.time())
        assert not await queue.replay(letter.id, time.time())
        assert await queue.dead_letters() == []
        (again,) = await queue.lease("a", 10, time.time(), 30)
        assert (again.attempt, again.message) == (1, delivery.message)  # attempts start afresh
        assert await queue.finish(again, State.DEAD, Result(500), time.time())
        (letter,) = await queue.dead_letters("a")
        assert await queue.drop(letter.id)
        assert not await queue.drop(letter.id)
        assert await queue.dead_letters() == []

    run(nats_server, scenario)


def test_release_does_not_count_an_attempt(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(event(1), ["a"], LIMITS)
        for _ in range(3):
            (delivery,) = await lease_soon(queue, "a")
            assert delivery.attempt == 1
            assert await queue.release(delivery, time.time())
        (delivery,) = await lease_soon(queue, "a")
        assert await queue.retry(delivery, Result(503), time.time())
        (delivery,) = await lease_soon(queue, "a")
        assert delivery.attempt == 2

    run(nats_server, scenario)


def test_call_records_cancel_and_callbacks(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(call("c1"), ["a"], LIMITS)
        record = await queue.call("c1")
        assert record is not None and (record.state, record.attempts) == (State.PENDING, 0)
        assert await queue.cancel("c1", time.time()) is State.CANCELLED
        assert await queue.lease("a", 10, time.time(), 30) == []
        assert await queue.cancel("c1", time.time()) is State.CANCELLED
        assert await queue.cancel("nope", time.time()) is None
        assert await queue.call("no such/id") is None

        await queue.enqueue(call("c2", "http://hooks.test/x"), ["a"], LIMITS)
        (delivery,) = await queue.lease("a", 10, time.time(), 30)
        assert delivery.message.query == b"q=\xff"
        assert await queue.cancel("c2", time.time()) is State.LEASED
        answer = Result(201, (("content-type", "text/plain"),), b"made", None, 0.5)
        assert await queue.finish(delivery, State.DONE, answer, time.time())
        record = await queue.call("c2")
        assert record is not None
        assert (record.state, record.attempts, record.result) == (State.DONE, 1, answer)
        assert record.callback_state is CallbackState.PENDING

        await until(lambda: queue.next_callback_due() is not None)
        (job,) = await queue.lease_callbacks(time.time(), 10, 30)
        assert (job.call_id, job.attempt, job.result, job.state) == ("c2", 1, answer, State.DONE)
        await queue.callback_finished(job, None, 503, "the target answered 503", time.time() + 0.2)
        await asyncio.sleep(0.3)
        (job,) = await queue.lease_callbacks(time.time(), 10, 30)
        assert job.attempt == 2
        await queue.callback_finished(job, CallbackState.SENT, 200, None, 0.0)
        record = await queue.call("c2")
        assert record is not None
        assert (record.callback_state, record.callback_attempts, record.callback_status) == (
            CallbackState.SENT,
            2,
            200,
        )
        assert await queue.lease_callbacks(time.time(), 10, 30) == []

    run(nats_server, scenario)


def test_two_gateways_share_the_work_never_the_same_delivery(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        one, two = await open_queue(), await open_queue()
        for number in range(40):
            await one.enqueue(event(number), ["a"], LIMITS)
        held: dict[int, str] = {}
        while len(held) < 40:
            batches = await asyncio.gather(
                one.lease("a", 3, time.time(), 30), two.lease("a", 3, time.time(), 30)
            )
            for queue, batch in zip((one, two), batches, strict=True):
                for delivery in batch:
                    assert delivery.id not in held, "leased twice"
                    held[delivery.id] = delivery.message.id
                    assert await queue.finish(delivery, State.DONE, Result(200), time.time())
        assert sorted(held.values()) == sorted(f"e{n}" for n in range(40))
        await until(lambda: one.backlog("a") == two.backlog("a") == 0)

    run(nats_server, scenario)


def test_the_other_gateway_sees_work_and_counts_converge(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        one, two = await open_queue(), await open_queue()
        woken: list[str] = []
        two.on_due = woken.append
        for number in range(5):
            await one.enqueue(event(number), ["b"], LIMITS)
        await until(lambda: two.pending("b") == 5 and "b" in woken)  # found by discovery
        assert two.earliest_due()["b"] <= time.time()
        leased = await one.lease("b", 2, time.time(), 30)
        await until(lambda: (two.pending("b"), two.backlog("b")) == (3, 5))
        for delivery in leased:
            await one.finish(delivery, State.DONE, Result(200), time.time())
        await until(lambda: (two.pending("b"), two.backlog("b")) == (3, 3))
        assert len(await two.lease("b", 10, time.time(), 30)) == 3
        await until(lambda: (one.pending("b"), one.backlog("b")) == (0, 3))

    run(nats_server, scenario)


HOLDER = """
import asyncio, sys, time
from runtime.events.jetstream.store import JetStreamQueue

async def main():
    queue = JetStreamQueue(sys.argv[1], "demo")
    await queue.open(time.time())
    (delivery,) = await queue.lease("a", 1, time.time(), 1.0)
    print(delivery.id, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_gateway_killed_mid_delivery_loses_nothing(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(call("c1"), ["a"], LIMITS)
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            nats_server.url,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert holder.stdout is not None
            held = int(await holder.stdout.readline())
            # every gateway leases a function for the same time (its consumer's ack_wait)
            assert await queue.lease("a", 10, time.time(), 1.0) == []  # held elsewhere
        finally:
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
        record = await queue.call("c1")
        assert record is not None and record.state is State.LEASED
        await until(lambda: "a" in queue.earliest_due())
        (delivery,) = await lease_soon(queue, "a", lease_for=1.0)
        assert (delivery.id, delivery.attempt, delivery.message.id) == (held, 2, "c1")
        assert await queue.finish(delivery, State.DONE, Result(200), time.time())

    run(nats_server, scenario)


def test_a_lapsed_lease_cannot_finish(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        one, two = await open_queue(), await open_queue()
        await one.enqueue(call("c1"), ["a"], LIMITS)
        (first,) = await one.lease("a", 1, time.time(), 0.5)
        await asyncio.sleep(0.7)
        (second,) = await two.lease("a", 1, time.time(), 30)
        assert (second.id, second.attempt) == (first.id, 2)
        assert not await one.finish(first, State.DONE, Result(200), time.time())
        assert await one.reclaim_expired(time.time()) == 0  # finish forgot it already
        assert await two.finish(second, State.DONE, Result(200), time.time())
        record = await two.call("c1")
        assert record is not None and (record.state, record.attempts) == (State.DONE, 2)

    run(nats_server, scenario)


def test_cron_fires_once_across_gateways(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        one, two = await open_queue(), await open_queue()
        at = 1_700_000_000.0
        assert await one.last_fired("a", "*/5 * * * * UTC") is None
        firing = Message("f1", Kind.CRON, time.time(), topic="cron")
        other = Message("f2", Kind.CRON, time.time(), topic="cron")
        stored = await asyncio.gather(
            one.fire("a", "*/5 * * * * UTC", at, firing, 10),
            two.fire("a", "*/5 * * * * UTC", at, other, 10),
        )
        assert stored == [True, True]
        assert await two.last_fired("a", "*/5 * * * * UTC") == at
        assert len(await one.lease("a", 10, time.time(), 30)) == 1
        await one.fire("a", "*/5 * * * * UTC", at - 300, event(9), 10)  # late: not stored
        assert await one.last_fired("a", "*/5 * * * * UTC") == at
        assert await one.lease("a", 10, time.time(), 30) == []
        assert not await one.fire("a", "*/5 * * * * UTC", at + 300, event(10), 1)  # full
        assert await one.last_fired("a", "*/5 * * * * UTC") == at + 300

    run(nats_server, scenario)


def test_work_survives_a_server_restart(nats_server: NatsServer) -> None:
    async def store(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(event(1), ["a"], LIMITS)
        await queue.enqueue(call("c1"), ["a"], LIMITS)

    async def deliver(open_queue: Open) -> None:
        queue = await open_queue()
        assert queue.pending("a") == 2
        leased = await queue.lease("a", 10, time.time(), 30)
        assert [d.message.id for d in leased] == ["e1", "c1"]

    run(nats_server, store)
    nats_server.stop()
    nats_server.start()
    run(nats_server, deliver)


def test_a_failed_open_leaves_nothing_behind(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        other = await nats.connect(nats_server.url)
        try:  # a stream of another name on the dead letters' subjects: creating theirs fails
            js = other.jetstream()
            await js.add_stream(name="squatter", subjects=["faas.demo._dead.*"])
            queue = JetStreamQueue(nats_server.url, PROJECT)
            with pytest.raises(BadRequestError):
                await queue.open(time.time())
            with pytest.raises(QueueUnavailable, match="not open"):
                await queue.enqueue(event(1), ["a"], LIMITS)
            await js.delete_stream("squatter")
        finally:
            await other.close()
        await queue.open(time.time())  # starts over
        try:
            await queue.enqueue(event(1), ["a"], LIMITS)
            (delivery,) = await queue.lease("a", 10, time.time(), 30)
            assert await queue.finish(delivery, State.DONE, Result(200), time.time())
        finally:
            await queue.close()

    run(nats_server, scenario)


def test_a_closed_queue_says_so_and_opens_again(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        await queue.enqueue(call("c1"), ["a"], LIMITS)
        (delivery,) = await queue.lease("a", 10, time.time(), 30)
        await queue.close()
        after_close: list[Callable[[], Awaitable[object]]] = [
            lambda: queue.enqueue(event(2), ["a"], LIMITS),
            lambda: queue.lease("a", 10, time.time(), 30),  # its consumer was made already
            lambda: queue.call("c1"),
            lambda: queue.cancel("c1", time.time()),
            lambda: queue.last_fired("a", "* * * * * UTC"),
            lambda: queue.lease_callbacks(time.time(), 10, 30),
            lambda: queue.dead_letters(),
            lambda: queue.counts(),
        ]
        for attempt in after_close:
            with pytest.raises(QueueUnavailable, match="not open"):
                await attempt()
        with pytest.raises(QueueUnavailable, match="not open"):
            assert not queue.connection.is_connected
        assert "a" in queue.earliest_due()  # handed back: no longer held here
        await queue.open(time.time())
        (again,) = await lease_soon(queue, "a")
        assert (again.id, again.attempt, again.message.id) == (delivery.id, 2, "c1")
        assert await queue.finish(again, State.DONE, Result(200), time.time())

    run(nats_server, scenario)


def test_a_lapsed_lease_leased_again_here_is_held_once(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        one, two = await open_queue(), await open_queue()
        await one.enqueue(event(1), ["a"], LIMITS)
        (first,) = await one.lease("a", 1, time.time(), 0.5)
        await asyncio.sleep(0.7)  # lapsed, and not reclaimed here yet
        (again,) = await one.lease("a", 1, time.time(), 0.5)
        assert (again.id, again.attempt) == (first.id, 2)
        assert await one.finish(again, State.DONE, Result(200), time.time())
        await two.enqueue(event(2), ["a"], LIMITS)
        (other,) = await two.lease("a", 1, time.time(), 0.5)
        await until(lambda: (one.pending("a"), one.backlog("a")) == (0, 1))
        # held by another gateway, whose lease may lapse: due here (after the quiet poll)
        assert "a" in one.earliest_due()
        (taken,) = await lease_soon(one, "a", lease_for=0.5)
        assert (taken.id, taken.attempt) == (other.id, 2)

    run(nats_server, scenario)


def test_a_bad_callback_job_holds_up_none_of_the_rest(nats_server: NatsServer) -> None:
    async def scenario(open_queue: Open) -> None:
        queue = await open_queue()
        js = queue.connection.jetstream()
        subject, stream = names.subject(PROJECT, "_callbacks"), names.stream(PROJECT, "_callbacks")
        await (await js.key_value(names.bucket(PROJECT, "calls"))).put("garbled", b"no record")
        await js.publish(subject, b"\xff")  # not a call id
        await js.publish(subject, b"garbled")  # its record cannot be read
        await queue.enqueue(call("c1", "http://hooks.test/x"), ["a"], LIMITS)
        (delivery,) = await queue.lease("a", 10, time.time(), 30)
        assert await queue.finish(delivery, State.DONE, Result(200), time.time())
        await until(lambda: queue.next_callback_due() is not None)
        (job,) = await queue.lease_callbacks(time.time(), 10, 30)
        assert (job.call_id, job.attempt) == ("c1", 1)
        await queue.callback_finished(job, CallbackState.SENT, 200, None, 0.0)
        deadline = time.monotonic() + 5
        while (info := await js.consumer_info(stream, names.CONSUMER)).num_ack_pending:
            assert time.monotonic() < deadline, "the bad jobs are still held"
            await asyncio.sleep(0.05)
        assert info.num_pending == 0  # dropped, not put back

    run(nats_server, scenario)
