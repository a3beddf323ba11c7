"""Live per-function statistics for the dashboard, kept in memory.

Two kinds, both bounded whatever the traffic:

- Calls: a ring of one-second slots per function (`CallWindow`), from which
  the request rate, the error rate (share of 5xx answers) and the p50/p95
  latency over the last minute are read. Recording a call is a few attribute
  updates: it runs on every request. Each slot keeps at most `SAMPLES_PER_SLOT`
  latencies (a uniform reservoir sample beyond that); percentiles weigh each
  kept latency by the calls it stands for, so they stay exact below that rate
  and unbiased above it.
- Gauges: a time series per function (`Series`) of ready and starting
  replicas, queue depth, calls in flight and calls answered, sampled every
  `interval` seconds over the last `history` seconds.

Time comes from injected clocks (`clock`: monotonic seconds for windows,
`wall`: epoch seconds for timestamps the page shows), so tests use a fake one.
"""

from __future__ import annotations

import collections
import itertools
import math
import operator
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

WINDOW = 60
"""Seconds over which rates and percentiles are computed."""
INTERVAL = 2.0
"""Seconds between two samples of the gauges."""
HISTORY = 600.0
"""Seconds of gauge samples kept."""
SAMPLES_PER_SLOT = 128
"""Latencies kept per function per second; beyond, a uniform sample of them."""


class _Slot:
    __slots__ = ("count", "errors", "latencies", "second")

    def __init__(self) -> None:
        self.second = -1
        self.count = 0
        self.errors = 0
        self.latencies: list[float] = []

    def reset(self, second: int) -> None:
        self.second = second
        self.count = 0
        self.errors = 0
        self.latencies = []


class WindowStats(NamedTuple):
    calls: int
    errors: int
    rate: float
    """Calls per second, averaged over the window."""
    error_rate: float | None
    """Share of 5xx answers, None without calls."""
    p50: float | None
    """Seconds, None without calls."""
    p95: float | None


class CallWindow:
    """Calls of one function over the last `window` seconds, in one-second slots."""

    def __init__(
        self,
        window: int = WINDOW,
        samples_per_slot: int = SAMPLES_PER_SLOT,
        rng: random.Random | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least one second")
        self.window = window
        self._cap = samples_per_slot
        self._slots = [_Slot() for _ in range(window)]
        self._random = rng.randrange if rng is not None else random.randrange

    def add(self, now: float, status: int, seconds: float) -> None:
        second = int(now)
        slot = self._slots[second % self.window]
        if slot.second != second:
            slot.reset(second)
        slot.count += 1
        if status >= 500:
            slot.errors += 1
        if len(slot.latencies) < self._cap:
            slot.latencies.append(seconds)
        else:  # reservoir sampling: each of the slot's calls is kept with equal chance
            kept = self._random(slot.count)
            if kept < self._cap:
                slot.latencies[kept] = seconds

    def read(self, now: float) -> WindowStats:
        newest = int(now)
        calls = errors = 0
        latencies: list[float] = []
        weights: list[float] = []
        sampled = False
        """Whether some slot kept only a sample: then latencies weigh differently."""
        for slot in self._slots:
            if slot.count and newest - self.window < slot.second <= newest:
                calls += slot.count
                errors += slot.errors
                kept = len(slot.latencies)
                sampled = sampled or kept < slot.count
                latencies.extend(slot.latencies)
                weights.extend(itertools.repeat(slot.count / kept, kept))
        if sampled:
            p50, p95 = weighted_percentiles(zip(latencies, weights, strict=True), (0.50, 0.95))
        else:
            p50, p95 = percentiles(latencies, (0.50, 0.95))
        return WindowStats(
            calls=calls,
            errors=errors,
            rate=calls / self.window,
            error_rate=errors / calls if calls else None,
            p50=p50,
            p95=p95,
        )


def _check(qs: Sequence[float]) -> None:
    if not all(0 < q <= 1 for q in qs):
        raise ValueError("quantiles must be in (0, 1]")


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank quantiles (each 0 < q <= 1): the p50 of 1..4 is 2, the p95 of 1..100 is 95."""
    _check(qs)
    ordered = sorted(values)
    if not ordered:
        return [None for _ in qs]
    count = len(ordered)
    return [ordered[max(0, math.ceil(q * count - 1e-9) - 1)] for q in qs]


def weighted_percentiles(
    pairs: Iterable[tuple[float, float]], qs: Sequence[float]
) -> list[float | None]:
    """Nearest-rank quantiles of (value, weight) pairs: for each q, the smallest value
    whose cumulative weight reaches q of the total. Unit weights give `percentiles`."""
    _check(qs)
    ordered = sorted(pairs, key=operator.itemgetter(0))
    total = math.fsum(weight for _, weight in ordered)
    if not ordered or total <= 0:
        return [None for _ in qs]
    found: list[float | None] = []
    cumulative = 0.0
    index = 0
    for q in sorted(qs):
        wanted = q * total * (1 - 1e-12)
        while index < len(ordered) - 1 and cumulative + ordered[index][1] < wanted:
            cumulative += ordered[index][1]
            index += 1
        found.append(ordered[index][0])
    by_q = dict(zip(sorted(qs), found, strict=True))
    return [by_q[q] for q in qs]


def weighted_percentile(pairs: Iterable[tuple[float, float]], q: float) -> float | None:
    """One nearest-rank quantile of (value, weight) pairs; None when there are none."""
    return weighted_percentiles(pairs, (q,))[0]


class Gauges(NamedTuple):
    """What a function looks like at one moment."""

    ready: int
    starting: int
    queue_depth: int
    in_flight: int


SERIES_FIELDS = ("ready", "starting", "queue_depth", "in_flight", "calls")


class Series:
    """Samples of one function's gauges, the newest `maxlen` of them."""

    def __init__(self, maxlen: int) -> None:
        self.samples: collections.deque[tuple[float, Gauges, int]] = collections.deque(
            maxlen=maxlen
        )

    def add(self, at: float, gauges: Gauges, calls: int) -> None:
        self.samples.append((at, gauges, calls))

    def columns(self) -> dict[str, list[float]]:
        """Column-wise, for a compact JSON: {"t": [...], "ready": [...], ...}."""
        columns: dict[str, list[float]] = {"t": [round(at, 3) for at, _, _ in self.samples]}
        for index, name in enumerate(SERIES_FIELDS[:-1]):
            columns[name] = [gauges[index] for _, gauges, _ in self.samples]
        columns["calls"] = [calls for _, _, calls in self.samples]
        return columns


class FunctionStats:
    """Call windows and gauge series for every function; what /system/stats serves."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        window: int = WINDOW,
        interval: float = INTERVAL,
        history: float = HISTORY,
        samples_per_slot: int = SAMPLES_PER_SLOT,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.window = window
        self.interval = interval
        self.history = history
        self._samples_per_slot = samples_per_slot
        self._rng = rng
        self._calls: dict[str, CallWindow] = {}
        self._answered: dict[str, int] = {}
        """Calls answered since start, per function: the `calls` column is its increments."""
        self._answered_at_sample: dict[str, int] = {}
        self._series: dict[str, Series] = {}
        self._last_sample: float | None = None

    # the hot path: once per call
    def observe(self, function: str, status: int, seconds: float) -> None:
        calls = self._calls.get(function)
        if calls is None:
            calls = self._calls[function] = CallWindow(
                self.window, self._samples_per_slot, self._rng
            )
        calls.add(self.clock(), status, seconds)
        self._answered[function] = self._answered.get(function, 0) + 1

    def sample(self, gauges: Mapping[str, Gauges], *, force: bool = False) -> bool:
        """Record one sample of every function's gauges if `interval` has passed (or `force`).

        Functions absent from `gauges` (removed from the project) are forgotten.
        Returns whether a sample was taken.
        """
        now = self.clock()
        recent = self._last_sample is not None and now - self._last_sample < self.interval
        if recent and not force:
            return False
        self._last_sample = now
        at = self.wall()
        maxlen = max(1, math.ceil(self.history / self.interval))
        for name in [n for n in self._series if n not in gauges]:
            del self._series[name]
        for name in [n for n in self._calls if n not in gauges]:
            del self._calls[name]
            self._answered.pop(name, None)
            self._answered_at_sample.pop(name, None)
        for name, current in gauges.items():
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = Series(maxlen)
            answered = self._answered.get(name, 0)
            calls = answered - self._answered_at_sample.get(name, 0)
            self._answered_at_sample[name] = answered
            series.add(at, current, calls)
        return True

    def read(self, name: str) -> dict[str, Any]:
        """One function's window statistics and series, as JSON-ready values."""
        calls = self._calls.get(name)
        window = calls.read(self.clock()) if calls is not None else None
        series = self._series.get(name)
        return {
            "calls": window.calls if window else 0,
            "errors": window.errors if window else 0,
            "rate": round(window.rate, 4) if window else 0.0,
            "error_rate": (
                round(window.error_rate, 4)
                if window is not None and window.error_rate is not None
                else None
            ),
            "p50_ms": _ms(window.p50 if window else None),
            "p95_ms": _ms(window.p95 if window else None),
            "series": series.columns() if series is not None else _empty_columns(),
        }

    def snapshot(self, names: Iterable[str]) -> dict[str, Any]:
        return {
            "now": round(self.wall(), 3),
            "window": self.window,
            "interval": self.interval,
            "history": self.history,
            "functions": {name: self.read(name) for name in names},
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _empty_columns() -> dict[str, list[float]]:
    return {"t": [], **{name: [] for name in SERIES_FIELDS}}
