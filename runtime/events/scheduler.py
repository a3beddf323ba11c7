"""Firing cron schedules into the durable queue.

Each scheduled function gets a loop: catch up at most the latest missed
firing (cron.py has the rule), then sleep until the next firing, enqueue
it, and repeat. The firing and the record of "last fired" are committed
together, so a restart neither repeats nor loses one. A loop that wakes
late (the machine was suspended, the event loop stalled) fires once and
moves on to the next time after now, never a burst. A firing is skipped,
with a warning, while the function already has `max_backlog` deliveries
waiting: a stuck function does not pile up cron work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from runtime.events.clock import Clock, SystemClock
from runtime.events.queue import Kind, Message, WorkQueue
from runtime.spec import FunctionSpec
from runtime.spec.cron import Schedule, missed_fire, next_fire
from runtime.spec.topics import CRON_TOPIC

log = logging.getLogger("faas.cron")

RETRY_AFTER_ERROR = 5.0


def schedule_key(schedule: Schedule) -> str:
    """What `last_fired` is recorded under: a changed schedule starts afresh."""
    return f"{schedule.expression} {schedule.timezone}"


def firing(spec: FunctionSpec, schedule: Schedule, scheduled_at: float, now: float) -> Message:
    """The invocation a firing becomes: a POST whose JSON body says which firing it is."""
    body = {
        "schedule": schedule.expression,
        "timezone": schedule.timezone,
        "scheduled_at": _iso(scheduled_at, schedule.timezone),
        "fired_at": _iso(now, schedule.timezone),
    }
    return Message(
        id=uuid.uuid4().hex,
        kind=Kind.CRON,
        created_at=now,
        headers=(("content-type", "application/json"),),
        body=json.dumps(body).encode(),
        topic=CRON_TOPIC,
    )


class Scheduler:
    def __init__(
        self, queue: WorkQueue, functions: Iterable[FunctionSpec], clock: Clock | None = None
    ) -> None:
        self._queue = queue
        self._functions = [spec for spec in functions if spec.schedule]
        self._clock = clock or SystemClock()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_one(spec) for spec in self._functions))

    async def _run_one(self, spec: FunctionSpec) -> None:
        assert spec.schedule is not None
        schedule = Schedule(spec.schedule, spec.timezone)
        key = schedule_key(schedule)
        while True:
            try:
                last = await self._queue.last_fired(spec.name, key)
                break
            except Exception:
                log.exception("reading the last firing failed", extra={"function": spec.name})
                await self._clock.sleep(RETRY_AFTER_ERROR)
        now = self._clock.now()
        missed = missed_fire(schedule, last, now)
        if missed is not None:
            log.info(
                "catching up the latest missed firing",
                extra={"function": spec.name, "scheduled_at": _iso(missed, schedule.timezone)},
            )
            await self._fire(spec, schedule, key, missed)
        due = next_fire(schedule, now)
        while True:
            while (remaining := due - self._clock.now()) > 0:
                await self._clock.sleep(remaining)
            await self._fire(spec, schedule, key, due)
            due = next_fire(schedule, max(due, self._clock.now()))

    async def _fire(self, spec: FunctionSpec, schedule: Schedule, key: str, at: float) -> None:
        now = self._clock.now()
        message = firing(spec, schedule, at, now)
        try:
            stored = await self._queue.fire(spec.name, key, at, message, spec.max_backlog)
        except Exception:
            log.exception("storing a cron firing failed", extra={"function": spec.name})
            return
        if not stored:
            log.warning(
                "cron firing skipped: the function's backlog is full (max_backlog)",
                extra={"function": spec.name},
            )


def _iso(epoch: float, timezone: str) -> str:
    return dt.datetime.fromtimestamp(epoch, ZoneInfo(timezone)).isoformat()
