"""Cron schedules: which expressions we accept, when they fire, and what a restart catches up.

Pure: every time is an input (epoch seconds), nothing reads the clock.

Expressions are standard 5-field cron (`minute hour day-of-month month
day-of-week`, e.g. `*/5 * * * *`), the macros `@hourly`, `@daily`,
`@weekly`, `@monthly`, `@yearly`, or 6 fields with seconds first
(`*/10 * * * * *`: every ten seconds). They are read in the function's
`timezone` (an IANA name, UTC by default), so `0 9 * * 1-5` means 9:00 on
weekdays where the team is, across daylight-saving changes.

The missed-run rule: a gateway that was down does not fire a burst on
restart. If one or more firings fell while it was down, only the latest of
them fires, once, at start-up; the rest are skipped. A firing is "missed"
only relative to the last one this project recorded, so the first start
ever, or a changed schedule, fires nothing until its next time comes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True, slots=True)
class Schedule:
    expression: str
    timezone: str = "UTC"


def schedule_problem(expression: str) -> str | None:
    """Why `expression` is not a schedule we run, or None when it is one."""
    expected = (
        'expected 5 cron fields like "*/5 * * * *", 6 with seconds first like '
        '"*/10 * * * * *", or one of ' + ", ".join(MACROS)
    )
    text = expression.strip()
    if text.startswith("@"):
        return None if text.lower() in MACROS else f"{expected}, got {expression!r}"
    fields = text.split()
    if len(fields) not in (5, 6):
        return f"{expected}; got {len(fields)} field(s)"
    try:
        croniter(text, _EPOCH, second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError, KeyError) as exc:
        return f"{expression!r} is not a valid cron expression: {exc}"
    return None


def timezone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f'expected an IANA time zone name like "UTC" or "Europe/Paris", got {name!r}'
    return None


def next_fire(schedule: Schedule, after: float) -> float:
    """The first firing strictly after `after`."""
    return float(_iterator(schedule, after).get_next(float))


def previous_fire(schedule: Schedule, at: float) -> float:
    """The last firing at or before `at`."""
    return float(_iterator(schedule, at + 1e-6).get_prev(float))


def missed_fire(schedule: Schedule, last_fired: float | None, now: float) -> float | None:
    """The one firing to catch up at start-up: the latest in (last_fired, now], if any."""
    if last_fired is None:
        return None
    latest = previous_fire(schedule, now)
    return latest if latest > last_fired else None


def _iterator(schedule: Schedule, start: float) -> croniter:
    zone = ZoneInfo(schedule.timezone)
    text = schedule.expression.strip()
    seconds = not text.startswith("@") and len(text.split()) == 6
    return croniter(text, dt.datetime.fromtimestamp(start, zone), second_at_beginning=seconds)


_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
