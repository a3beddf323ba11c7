"""How many warm watchdogs each kind keeps: a pure function of recent cold starts.

No I/O and no clock: the time comes with the demand, so every case is a table
row in the tests. Per kind (runtime/warm_kinds.py) the wish is what cold starts
asked of it in the last WINDOW seconds, at least `minimum`, at most `maximum`
(`gateway.warm_pool`). All kinds together stay within `budget` bytes
(`gateway.warm_pool_memory`), at what one of each kind's watchdogs was measured
to hold: the kinds most recently needed are served first, each its minimum, then
each the rest of its wish, so the least recently needed kinds are the ones that
get fewer, or none. A kind whose watchdogs were never measured gets one at most,
counted at UNMEASURED bytes, until one of them is.

The plan is where the pools are headed; `within_budget` is how far each may grow
now. A pool that shrinks removes its surplus in the background, and until those
containers are gone their memory is not free: a pool grows only into memory
free now, and grows on when the removals end.

Worked through (minimum 2, maximum 8, budget 100 MiB, plain watchdogs 12 MiB,
numpy ones 30 MiB, numpy needed last):

- idle: numpy 2 (60 MiB), plain 2 (24 MiB): 84 MiB.
- 10 cold starts of plain functions in the window: numpy 2 first (60 MiB), then
  plain 2, then plain's extra wish, 6 more, capped by what is left: 16 MiB ->
  1 more; plain 3. Once the window has passed, plain is back to 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW = 10.0
"""Seconds of cold starts a kind's wish remembers."""
UNMEASURED = 32 * 1024 * 1024
"""Bytes a watchdog of a kind never measured is counted at (it gets one at most, and is
measured once it is ready). Measured here: 16-17 MiB with no requirements, ~28 MiB with
numpy imported, ~61 MiB with pandas; so a first pandas watchdog can pass the budget by
up to ~29 MiB for the second or so until it is measured. A budget under this keeps none."""


@dataclass(frozen=True, slots=True)
class KindDemand:
    key: object
    arrivals: Sequence[float]
    """When cold starts asked this kind for a watchdog (the last WINDOW seconds suffice)."""
    last_needed: float
    """When a function of this kind last asked, or when the kind appeared."""
    per_watchdog: int | None
    """Bytes one of its ready watchdogs was measured to hold; None: not yet measured."""


def wish(demand: KindDemand, now: float, minimum: int, maximum: int) -> int:
    """What `demand`'s kind would keep without a budget."""
    recent = sum(1 for at in demand.arrivals if now - at <= WINDOW)
    return max(minimum, min(recent, maximum))


def plan(
    kinds: Sequence[KindDemand], now: float, *, minimum: int, maximum: int, budget: int
) -> dict[object, int]:
    """Key -> how many warm watchdogs that kind keeps (ready, on their way, handed over)."""
    minimum = min(minimum, maximum)
    order = sorted(kinds, key=lambda k: k.last_needed, reverse=True)
    wishes = {k.key: wish(k, now, minimum, maximum) for k in order}
    for kind in order:
        if kind.per_watchdog is None:
            wishes[kind.key] = min(wishes[kind.key], 1)
    targets = {k.key: 0 for k in order}
    left = budget
    for floor in (True, False):  # everyone's minimum first, in order; then the rest
        for kind in order:
            size = max(kind.per_watchdog or UNMEASURED, 1)
            wanted = min(minimum, wishes[kind.key]) if floor else wishes[kind.key]
            more = min(wanted - targets[kind.key], left // size)
            if more > 0:
                targets[kind.key] += more
                left -= more * size
    return targets


@dataclass(frozen=True, slots=True)
class PoolNow:
    key: object
    occupied: int
    """Its watchdogs counted against its size: ready, on their way, being handed over."""
    leaving: int
    """Watchdogs it removed as it shrank, whose containers are not gone yet."""
    per_watchdog: int | None


def within_budget(
    targets: dict[object, int], pools: Sequence[PoolNow], budget: int
) -> dict[object, int]:
    """`targets` (from `plan`), each capped so that a pool grows only into memory free
    now: every watchdog the engine still runs counts, leaving ones included. `pools` in
    the order they are served (the most recently needed first)."""

    def size(pool: PoolNow) -> int:
        return max(pool.per_watchdog or UNMEASURED, 1)

    used = sum((pool.occupied + pool.leaving) * size(pool) for pool in pools)
    allowed = dict(targets)
    for pool in pools:
        target = targets[pool.key]
        if target <= pool.occupied:
            continue
        grant = min(target, pool.occupied + max(0, budget - used) // size(pool))
        used += (grant - pool.occupied) * size(pool)
        allowed[pool.key] = grant
    return allowed
