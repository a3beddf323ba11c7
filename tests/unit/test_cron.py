from __future__ import annotations

import datetime as dt

import pytest

from runtime.spec.cron import (
    Schedule,
    missed_fire,
    next_fire,
    previous_fire,
    schedule_problem,
    timezone_problem,
)


def at(text: str, zone: dt.tzinfo = dt.UTC) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2025-01-01 00:00:00", "2025-01-01 00:05:00"),
        ("*/5 * * * *", "2025-01-01 00:04:59", "2025-01-01 00:05:00"),
        ("*/5 * * * *", "2025-01-01 00:05:00", "2025-01-01 00:10:00"),  # strictly after
        ("0 9 * * 1-5", "2025-01-03 10:00:00", "2025-01-06 09:00:00"),  # Friday -> Monday
        ("@hourly", "2025-01-01 00:30:00", "2025-01-01 01:00:00"),
        ("@daily", "2025-01-01 00:30:00", "2025-01-02 00:00:00"),
        ("*/10 * * * * *", "2025-01-01 00:00:01", "2025-01-01 00:00:10"),  # seconds first
        ("30 0 * * * *", "2025-01-01 00:00:00", "2025-01-01 00:00:30"),
    ],
)
def test_next_fire(expression: str, after: str, expected: str) -> None:
    assert iso(next_fire(Schedule(expression), at(after))) == expected


def test_time_zone_and_daylight_saving() -> None:
    from zoneinfo import ZoneInfo

    paris = Schedule("0 9 * * *", "Europe/Paris")
    # 9:00 in Paris is 8:00 UTC in winter, 7:00 UTC in summer
    assert iso(next_fire(paris, at("2025-01-15 12:00:00"))) == "2025-01-16 08:00:00"
    assert iso(next_fire(paris, at("2025-07-15 12:00:00"))) == "2025-07-16 07:00:00"
    # the night clocks go forward 02:00 -> 03:00, 02:30 does not exist: it fires at 03:00,
    # once, and the next day as usual
    paris_zone = ZoneInfo("Europe/Paris")
    night = Schedule("30 2 * * *", "Europe/Paris")
    fired = next_fire(night, at("2025-03-30 00:00:00", paris_zone))
    assert fired == at("2025-03-30 03:00:00", paris_zone)
    assert next_fire(night, fired) == at("2025-03-31 02:30:00", paris_zone)


@pytest.mark.parametrize(
    ("last_fired", "now", "expected"),
    [
        (None, "2025-01-01 00:17:00", None),  # first start ever: nothing to catch up
        ("2025-01-01 00:15:00", "2025-01-01 00:17:00", None),  # nothing missed
        ("2025-01-01 00:10:00", "2025-01-01 00:17:00", "2025-01-01 00:15:00"),  # one missed
        ("2025-01-01 00:00:00", "2025-01-01 03:17:00", "2025-01-01 03:15:00"),  # many: latest only
        ("2025-01-01 00:10:00", "2025-01-01 00:15:00", "2025-01-01 00:15:00"),  # exactly now
    ],
)
def test_missed_fire_catches_up_at_most_the_latest(
    last_fired: str | None, now: str, expected: str | None
) -> None:
    schedule = Schedule("*/5 * * * *")
    missed = missed_fire(schedule, at(last_fired) if last_fired else None, at(now))
    assert (iso(missed) if missed is not None else None) == expected


def test_previous_fire_is_inclusive() -> None:
    schedule = Schedule("*/5 * * * *")
    assert iso(previous_fire(schedule, at("2025-01-01 00:05:00"))) == "2025-01-01 00:05:00"
    assert iso(previous_fire(schedule, at("2025-01-01 00:09:59"))) == "2025-01-01 00:05:00"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * *", "got 4 field(s)"),
        ("* * * * * * *", "got 7 field(s)"),
        ("61 * * * *", "not a valid cron expression"),
        ("* * 32 * *", "not a valid cron expression"),
        ("a b c d e", "not a valid cron expression"),
        ("@often", "@hourly"),
    ],
)
def test_bad_schedules(expression: str, fragment: str) -> None:
    problem = schedule_problem(expression)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    "expression", ["*/5 * * * *", "0 9 * * MON-FRI", "@weekly", "*/2 * * * * *", "0 0 1 1 *"]
)
def test_good_schedules(expression: str) -> None:
    assert schedule_problem(expression) is None


def test_time_zones() -> None:
    assert timezone_problem("UTC") is None
    assert timezone_problem("America/New_York") is None
    problem = timezone_problem("Mars/Olympus")
    assert problem is not None and "IANA" in problem
    assert timezone_problem("../etc/passwd") is not None
