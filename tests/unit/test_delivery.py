"""The delivery worker with a real SQLite queue and a fake platform answering calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from runtime.errors import InvocationTimeout, QueueFull
from runtime.events.delivery import INTERNAL_ERROR, Deliverer
from runtime.events.queue import Delivery, Kind, Message, State
from runtime.events.sqlite import SqliteQueue
from runtime.invocation import Invocation, InvocationResult
from runtime.spec import FunctionSpec, RetryPolicy, ScalePolicy

Answer = Callable[[Invocation, int], Awaitable[tuple[int, dict[str, str], bytes]]]


def spec(name: str, *, max_replicas: int = 2, concurrency: int = 4) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        handler_file=f"{name}.py",
        handler_name="handle",
        routes=(),
        environment={},
        timeout=5.0,
        memory=64 * 2**20,
        cpus=1.0,
        requirements=None,
        base_image="python",
        scale=ScalePolicy(max=max_replicas, concurrency=concurrency, target_concurrency=1),
        retry=RetryPolicy(max_attempts=3, backoff=0.01, max_backoff=0.05),
    )


class FakePool:
    def __init__(self, function: FunctionSpec) -> None:
        self.spec = function
        self.slot_limit = function.scale.concurrency or function.scale.target_concurrency


class FakePlatform:
    def __init__(self, answer: Answer, *functions: FunctionSpec) -> None:
        self.pools = {f.name: FakePool(f) for f in functions}
        self.calls: list[Invocation] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._answer = answer

    async def invoke(self, invocation: Invocation) -> InvocationResult:
        self.calls.append(invocation)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            status, headers, body = await self._answer(invocation, len(self.calls))
        finally:
            self.in_flight -= 1

        async def stream() -> AsyncIterator[bytes]:
            yield body

        async def close() -> None:
            pass

        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        return InvocationResult(status, raw, stream(), close)


def header(invocation: Invocation, name: str) -> str | None:
    return next((v.decode() for k, v in invocation.headers if k.decode() == name), None)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - polling what the worker does
            await asyncio.sleep(0.01)


def scenario(
    tmp_path: Path,
    answer: Answer,
    work: Callable[[SqliteQueue, FakePlatform, list[Delivery]], Awaitable[None]],
    *functions: FunctionSpec,
) -> None:
    async def main() -> None:
        queue = SqliteQueue(tmp_path / "q.db")
        await queue.open(time.time())
        platform = FakePlatform(answer, *functions)
        deliverer = Deliverer(
            platform,  # type: ignore[arg-type]
            queue,
            max_result_size=100,
            retention=3600,
        )
        finished: list[Delivery] = []
        deliverer.on_finished = finished.append
        queue.on_due = lambda function: deliverer.wake()
        task = asyncio.create_task(deliverer.run())
        try:
            await work(queue, platform, finished)
        finally:
            await deliverer.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await queue.close()

    asyncio.run(main())


def event(number: int, topic: str = "jobs.run") -> Message:
    return Message(f"e{number}", Kind.EVENT, time.time(), headers=(("content-type", "text/plain"),),
                   body=b"hi", topic=topic)  # fmt: skip


def test_failing_twice_then_succeeding_is_delivered_three_times(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        return (503 if header(invocation, "x-faas-attempt") in ("1", "2") else 200), {}, b""

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        assert [header(c, "x-faas-attempt") for c in platform.calls] == ["1", "2", "3"]
        first = platform.calls[0]
        assert (first.method, first.path, first.body) == ("POST", "/", b"hi")
        assert header(first, "x-faas-topic") == "jobs.run"
        assert header(first, "x-faas-event-id") == "e1"
        assert header(first, "content-type") == "text/plain"
        assert len({c.call_id for c in platform.calls}) == 3  # one call id per attempt
        assert await queue.counts() == {"a": {"done": 1}}

    scenario(tmp_path, answer, work, spec("a"))


def test_always_failing_ends_in_the_dead_letter_list(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        if count == 1:
            raise InvocationTimeout("a took too long")  # counts as 504: retried
        return 500, {}, b"broken"

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        (dead,) = await queue.dead_letters()
        assert (dead.attempts, dead.status) == (3, 500)
        assert dead.error is not None and "attempt 3 of 3" in dead.error

    scenario(tmp_path, answer, work, spec("a"))


def test_a_status_not_retried_goes_to_the_dead_letters_at_once(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        return 422, {}, b"no"

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        assert len(platform.calls) == 1
        (dead,) = await queue.dead_letters()
        assert dead.error is not None and "not retried" in dead.error

    scenario(tmp_path, answer, work, spec("a"))


def test_a_full_function_queue_is_no_attempt(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        if count == 1:
            raise QueueFull("a has calls waiting", retry_after=1)
        return 200, {}, b""

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        assert [header(c, "x-faas-attempt") for c in platform.calls] == ["1", "1"]

    scenario(tmp_path, answer, work, spec("a"))


def test_in_flight_never_exceeds_max_times_slots(tmp_path: Path) -> None:
    seen: list[int] = []

    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(0.02)
        return 200, {}, b""

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await asyncio.gather(*(queue.enqueue(event(n), ["a"], {"a": 100}) for n in range(30)))
        await until(lambda: len(finished) == 30)
        seen.append(platform.most_in_flight)

    scenario(tmp_path, answer, work, spec("a", max_replicas=2, concurrency=3))
    assert seen == [6]


def test_async_call_results_are_kept_and_capped(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "text/plain", "X-Faas-Internal": "x", "X-Call-Id": "y"}
        return 201, headers, b"x" * 500

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        message = Message(
            "c1",
            Kind.CALL,
            time.time(),
            method="PUT",
            path="/p",
            query=b"a=1",
            headers=(("x-marker", "m"),),
            body=b"in",
            callback_url="http://h/",
        )
        await queue.enqueue(message, ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        (invocation,) = platform.calls
        assert (invocation.call_id, invocation.method, invocation.path, invocation.query) == (
            "c1", "PUT", "/p", b"a=1",
        )  # fmt: skip
        assert header(invocation, "x-marker") == "m"
        assert header(invocation, "x-faas-topic") is None
        record = await queue.call("c1")
        assert record is not None and record.result is not None
        assert record.state is State.DONE
        assert record.result.status == 201
        assert record.result.headers == (("content-type", "text/plain"),)
        assert record.result.body == b"x" * 100  # max_result_size
        assert queue.next_callback_due() is not None

    scenario(tmp_path, answer, work, spec("a"))


def test_unstorable_result_headers_are_dropped_when_the_result_is_stored(
    tmp_path: Path,
) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        headers = {
            "Content-Type": "text/plain\nx-injected: 1",  # a bare LF
            "X-Nul": "a\x00b",
            "X-Cr": "a\rb",
            "Bad Name": "v",
            "X-Kept": "yes\tand tab",
        }
        return 200, headers, b"out"

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        message = Message("c1", Kind.CALL, time.time(), callback_url="http://h/")
        await queue.enqueue(message, ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        record = await queue.call("c1")
        assert record is not None and record.result is not None
        assert record.state is State.DONE and record.result.status == 200
        assert record.result.headers == (("x-kept", "yes\tand tab"),)
        assert record.result.error is not None and "4 result header(s) dropped" in (
            record.result.error
        )
        assert queue.next_callback_due() is not None  # the callback still goes out

    scenario(tmp_path, answer, work, spec("a"))


def test_an_exception_while_invoking_is_a_failed_attempt(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        raise RuntimeError("a bug below the worker")

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(finished) == 1)
        assert len(platform.calls) == 3  # max_attempts, then no more leases
        (dead,) = await queue.dead_letters()
        assert (dead.attempts, dead.status) == (3, 500)
        assert dead.error is not None and INTERNAL_ERROR in dead.error
        assert "a bug below" not in dead.error  # the text stays in the log
        assert await queue.counts() == {"a": {"dead": 1}}

    scenario(tmp_path, answer, work, spec("a"))


def test_work_for_a_removed_function_reaches_the_dead_letters(tmp_path: Path) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        raise AssertionError("never invoked")

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        platform.invoke = _not_found  # type: ignore[method-assign]
        await queue.enqueue(event(1), ["gone"], {"gone": 10})
        await until(lambda: len(finished) == 1)
        (dead,) = await queue.dead_letters()
        assert dead.function == "gone" and dead.status == 404

    scenario(tmp_path, answer, work, spec("a"))


async def _not_found(invocation: Invocation) -> InvocationResult:
    from runtime.errors import FunctionNotFound

    raise FunctionNotFound(f"no function named {invocation.function!r}")


def test_stop_leaves_unfinished_work_leased_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer(invocation: Invocation, count: int) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(60)
        return 200, {}, b""

    async def work(queue: SqliteQueue, platform: FakePlatform, finished: list[Delivery]) -> None:
        await queue.enqueue(event(1), ["a"], {"a": 10})
        await until(lambda: len(platform.calls) == 1)

    monkeypatch.setattr("runtime.events.delivery.DRAIN_GRACE", 0.05)
    scenario(tmp_path, answer, work, spec("a"))

    async def reopen() -> int:
        queue = SqliteQueue(tmp_path / "q.db")
        await queue.open(time.time())
        try:
            return queue.pending("a")
        finally:
            await queue.close()

    assert asyncio.run(reopen()) == 1
