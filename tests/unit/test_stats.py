"""The dashboard's live statistics: windows, rates, percentiles and series, on a fake clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.stats import (
    CallWindow,
    FunctionStats,
    Gauges,
    percentiles,
    weighted_percentile,
    weighted_percentiles,
)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unit(values: list[float]) -> list[tuple[float, float]]:
    return [(value, 1.0) for value in values]


def test_nearest_rank_percentiles_with_unit_weights() -> None:
    assert weighted_percentile(unit([1, 2, 3, 4]), 0.5) == 2
    assert weighted_percentile(unit([float(v) for v in range(1, 101)]), 0.95) == 95
    assert weighted_percentile(unit([float(v) for v in range(100, 0, -1)]), 0.5) == 50
    assert weighted_percentile(unit([7.0]), 0.95) == 7.0
    assert weighted_percentile(unit([1, 2, 3, 4]), 1.0) == 4


def test_weights_count_as_repeated_values() -> None:
    # 1 stands for 9 calls, 100 for one: the median and p90 are 1, p95 is 100
    pairs = [(1.0, 9.0), (100.0, 1.0)]
    assert weighted_percentile(pairs, 0.5) == 1.0
    assert weighted_percentile(pairs, 0.9) == 1.0
    assert weighted_percentile(pairs, 0.95) == 100.0


def test_plain_percentiles() -> None:
    assert percentiles([4.0, 1.0, 3.0, 2.0], (0.5, 0.95, 1.0)) == [2.0, 4.0, 4.0]
    assert percentiles([float(v) for v in range(1, 21)], (0.05, 0.95)) == [1.0, 19.0]
    assert percentiles([], (0.5,)) == [None]


@given(
    st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=300),
    st.lists(st.sampled_from([0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]), min_size=1, max_size=4),
)
def test_unit_weights_agree_with_plain_percentiles(values: list[float], qs: list[float]) -> None:
    assert weighted_percentiles([(v, 1.0) for v in values], qs) == percentiles(values, qs)


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert weighted_percentile([], 0.5) is None
    with pytest.raises(ValueError):
        weighted_percentile(unit([1.0]), 0)
    with pytest.raises(ValueError):
        weighted_percentile(unit([1.0]), 1.5)
    with pytest.raises(ValueError):
        percentiles([1.0], (0.5, 0.0))


def test_window_rate_error_rate_and_latency() -> None:
    window = CallWindow(window=60)
    now = 5000.0
    for i in range(30):  # 30 calls over 30 seconds: 0.5/s averaged over a minute
        status = 503 if i % 10 == 0 else 200
        window.add(now + i, status, (i + 1) / 1000)
    stats = window.read(now + 30)
    assert stats.calls == 30
    assert stats.errors == 3
    assert stats.rate == pytest.approx(0.5)
    assert stats.error_rate == pytest.approx(0.1)
    assert stats.p50 == pytest.approx(0.015)
    assert stats.p95 == pytest.approx(0.029)


def test_only_5xx_count_as_errors() -> None:
    window = CallWindow()
    for status in (200, 204, 301, 401, 404, 429, 499, 500, 502, 504):
        window.add(10.0, status, 0.01)
    stats = window.read(10.0)
    assert (stats.calls, stats.errors) == (10, 3)


def test_calls_leave_the_window_after_a_minute() -> None:
    window = CallWindow(window=60)
    window.add(100.0, 200, 0.5)
    window.add(130.0, 500, 0.1)
    assert window.read(159.9).calls == 2
    after = window.read(160.0)  # the call at 100 is 60 s old: gone
    assert (after.calls, after.errors, after.p50) == (1, 1, 0.1)
    empty = window.read(200.0)
    assert (empty.calls, empty.rate, empty.error_rate, empty.p50, empty.p95) == (
        0,
        0.0,
        None,
        None,
        None,
    )


def test_a_slot_reused_a_minute_later_starts_empty() -> None:
    window = CallWindow(window=60)
    window.add(100.2, 500, 9.0)
    window.add(160.5, 200, 0.001)  # same slot (160 % 60 == 100 % 60), a new second
    stats = window.read(160.5)
    assert (stats.calls, stats.errors, stats.p95) == (1, 0, 0.001)


def test_busy_seconds_keep_a_bounded_weighted_sample() -> None:
    window = CallWindow(window=60, samples_per_slot=8, rng=random.Random(7))
    for _ in range(1000):  # one busy second of fast calls...
        window.add(50.5, 200, 0.001)
    for _ in range(4):  # ...and a quiet second of slow ones
        window.add(51.5, 200, 1.0)
    stats = window.read(51.5)
    assert stats.calls == 1004
    assert all(len(slot.latencies) <= 8 for slot in window._slots)
    # the 8 kept fast latencies stand for 1000 calls: percentiles stay with them
    assert stats.p50 == 0.001
    assert stats.p95 == 0.001
    assert stats.rate == pytest.approx(1004 / 60)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CallWindow(window=0)


def test_function_stats_read_per_function() -> None:
    clock = FakeClock()
    stats = FunctionStats(clock=clock, wall=lambda: 1.7e9, window=60)
    stats.observe("a", 200, 0.010)
    stats.observe("a", 500, 0.030)
    clock.advance(1)
    stats.observe("b", 200, 0.002)
    a = stats.read("a")
    assert (a["calls"], a["errors"], a["error_rate"]) == (2, 1, 0.5)
    assert (a["p50_ms"], a["p95_ms"]) == (10.0, 30.0)
    assert a["rate"] == pytest.approx(2 / 60, abs=1e-4)
    unknown = stats.read("c")
    assert (unknown["calls"], unknown["rate"], unknown["error_rate"], unknown["p50_ms"]) == (
        0,
        0.0,
        None,
        None,
    )
    assert unknown["series"] == {
        "t": [],
        "ready": [],
        "starting": [],
        "queue_depth": [],
        "in_flight": [],
        "calls": [],
    }


def test_samples_are_taken_every_interval_and_count_calls_between() -> None:
    clock = FakeClock()
    wall = FakeClock(1.7e9)
    stats = FunctionStats(clock=clock, wall=wall, interval=2.0, history=10.0)
    stats.observe("f", 200, 0.01)
    assert stats.sample({"f": Gauges(0, 1, 3, 0)})
    clock.advance(1.0)
    wall.advance(1.0)
    assert not stats.sample({"f": Gauges(1, 0, 0, 2)})  # too soon
    assert stats.sample({"f": Gauges(1, 0, 0, 2)}, force=True)
    for _ in range(3):
        stats.observe("f", 200, 0.01)
    clock.advance(2.0)
    wall.advance(2.0)
    assert stats.sample({"f": Gauges(2, 0, 0, 1)})
    series = stats.read("f")["series"]
    assert series["t"] == [1.7e9, 1.7e9 + 1, 1.7e9 + 3]
    assert series["ready"] == [0, 1, 2]
    assert series["starting"] == [1, 0, 0]
    assert series["queue_depth"] == [3, 0, 0]
    assert series["in_flight"] == [0, 2, 1]
    assert series["calls"] == [1, 0, 3]


def test_series_keep_only_the_history() -> None:
    clock = FakeClock()
    stats = FunctionStats(clock=clock, interval=2.0, history=10.0)
    for ready in range(20):
        stats.sample({"f": Gauges(ready, 0, 0, 0)})
        clock.advance(2.0)
    assert stats.read("f")["series"]["ready"] == [15, 16, 17, 18, 19]


def test_removed_functions_are_forgotten_at_the_next_sample() -> None:
    clock = FakeClock()
    stats = FunctionStats(clock=clock)
    stats.observe("gone", 200, 0.01)
    stats.sample({"gone": Gauges(1, 0, 0, 0), "kept": Gauges(0, 0, 0, 0)})
    clock.advance(5)
    stats.sample({"kept": Gauges(0, 0, 0, 0)})
    assert stats.read("gone")["calls"] == 0
    assert stats.read("gone")["series"]["t"] == []
    assert len(stats.read("kept")["series"]["t"]) == 2


def test_snapshot_lists_the_asked_functions() -> None:
    stats = FunctionStats(clock=FakeClock(), wall=lambda: 1234.5678, window=60, interval=2.0)
    snapshot = stats.snapshot(["x", "y"])
    assert snapshot["now"] == 1234.568
    assert (snapshot["window"], snapshot["interval"], snapshot["history"]) == (60, 2.0, 600.0)
    assert list(snapshot["functions"]) == ["x", "y"]
