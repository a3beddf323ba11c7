"""The cron loop against a fake clock: on time, one catch-up at most, never a burst."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from runtime.events.queue import Message
from runtime.events.scheduler import Scheduler
from runtime.spec import FunctionSpec, ScalePolicy


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def hms(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%H:%M:%S")


class FakeClock:
    def __init__(self, now: float, stalls: dict[int, float] | None = None) -> None:
        self.current = now
        self.sleeps = 0
        self.stalls = stalls or {}
        """Sleep number -> extra seconds it oversleeps (a suspended machine)."""

    def now(self) -> float:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.current += seconds + self.stalls.get(self.sleeps, 0.0)
        await asyncio.sleep(0)


class FakeQueue:
    def __init__(self, last: float | None, wanted: int, room: bool = True) -> None:
        self.last = last
        self.wanted = wanted
        self.room = room
        self.fired: list[tuple[float, float, Message]] = []
        self.done = asyncio.Event()

    async def last_fired(self, function: str, schedule: str) -> float | None:
        assert schedule == "* * * * * UTC"
        return self.last

    async def fire(
        self, function: str, schedule: str, scheduled_at: float, message: Message, limit: int
    ) -> bool:
        self.fired.append((scheduled_at, message.created_at, message))
        if len(self.fired) >= self.wanted:
            self.done.set()
        return self.room


def spec(schedule: str | None = "* * * * *") -> FunctionSpec:
    return FunctionSpec(
        name="tick",
        handler_file="tick.py",
        handler_name="handle",
        routes=(),
        environment={},
        timeout=5.0,
        memory=64 * 2**20,
        cpus=1.0,
        requirements=None,
        base_image="python",
        scale=ScalePolicy(),
        schedule=schedule,
        max_backlog=7,
    )


def run(queue: FakeQueue, clock: FakeClock, *specs: FunctionSpec) -> list[tuple[str, str]]:
    async def main() -> None:
        task = asyncio.create_task(Scheduler(queue, specs, clock).run())  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(queue.done.wait(), 5)
        finally:
            task.cancel()

    asyncio.run(main())
    return [(hms(scheduled), hms(fired)) for scheduled, fired, _ in queue.fired[: queue.wanted]]


def test_first_start_fires_on_schedule_and_catches_up_nothing() -> None:
    queue = FakeQueue(last=None, wanted=3)
    fired = run(queue, FakeClock(at("2025-01-01 00:00:30")), spec())
    assert fired == [("00:01:00", "00:01:00"), ("00:02:00", "00:02:00"), ("00:03:00", "00:03:00")]


def test_a_restart_catches_up_only_the_latest_missed_firing() -> None:
    queue = FakeQueue(last=at("2025-01-01 00:00:00"), wanted=3)
    fired = run(queue, FakeClock(at("2025-01-01 00:05:30")), spec())
    # 00:01 .. 00:05 were missed while down: only 00:05 fires, at start-up
    assert fired == [("00:05:00", "00:05:30"), ("00:06:00", "00:06:00"), ("00:07:00", "00:07:00")]


def test_nothing_missed_nothing_caught_up() -> None:
    queue = FakeQueue(last=at("2025-01-01 00:05:00"), wanted=1)
    fired = run(queue, FakeClock(at("2025-01-01 00:05:30")), spec())
    assert fired == [("00:06:00", "00:06:00")]


def test_a_stall_fires_once_then_moves_on() -> None:
    # the second sleep oversleeps by ten minutes (a suspended laptop)
    clock = FakeClock(at("2025-01-01 00:00:30"), stalls={2: 600.0})
    fired = run(FakeQueue(last=None, wanted=3), clock, spec())
    assert fired == [("00:01:00", "00:01:00"), ("00:02:00", "00:12:00"), ("00:13:00", "00:13:00")]


def test_a_full_backlog_skips_the_firing_and_goes_on() -> None:
    queue = FakeQueue(last=None, wanted=2, room=False)
    fired = run(queue, FakeClock(at("2025-01-01 00:00:30")), spec())
    assert [scheduled for scheduled, _ in fired] == ["00:01:00", "00:02:00"]


def test_functions_without_schedule_are_ignored_and_the_body_names_the_firing() -> None:
    queue = FakeQueue(last=None, wanted=1)
    run(queue, FakeClock(at("2025-01-01 00:00:30")), spec(None), spec())
    (_, _, message) = queue.fired[0]
    assert message.topic == "faas.cron"
    assert dict(message.headers)["content-type"] == "application/json"
    assert json.loads(message.body) == {
        "schedule": "* * * * *",
        "timezone": "UTC",
        "scheduled_at": "2025-01-01T00:01:00+00:00",
        "fired_at": "2025-01-01T00:01:00+00:00",
    }
