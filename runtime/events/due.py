"""An in-memory mirror of when stored work falls due, per key (a function).

The queue keeps one beside its database, so the numbers the autoscaler and
the worker ask for many times a second (how much is due now, when is the
next) cost a binary search, not a query. Each key holds a sorted list of
due times; work is mostly added at "now", the end of the list.
"""

from __future__ import annotations

import bisect
from collections import defaultdict


class DueIndex:
    def __init__(self) -> None:
        self._times: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, key: str, due_at: float) -> None:
        times = self._times[key]
        if not times or due_at >= times[-1]:
            times.append(due_at)
        else:
            bisect.insort(times, due_at)

    def remove(self, key: str, due_at: float) -> None:
        times = self._times.get(key)
        if not times:
            return
        index = bisect.bisect_left(times, due_at)
        if index < len(times) and times[index] == due_at:
            del times[index]

    def due(self, key: str, now: float) -> int:
        times = self._times.get(key)
        return bisect.bisect_right(times, now) if times else 0

    def total(self, key: str) -> int:
        times = self._times.get(key)
        return len(times) if times else 0

    def earliest(self, key: str) -> float | None:
        times = self._times.get(key)
        return times[0] if times else None

    def earliest_by_key(self) -> dict[str, float]:
        return {key: times[0] for key, times in self._times.items() if times}

    def clear(self) -> None:
        self._times.clear()
