"""How many replicas a function should have: a pure function of what was observed.

No I/O and no clock: the time is part of the observation, so every case is a
table row in the tests. Worked through with numbers (target 2 per replica,
min 0, max 4, idle window 60 s):

- t=0: nothing queued, nothing running -> 0 replicas.
- t=1: 1 call queued -> ceil(1 / 2) = 1: scale 0 -> 1 at once.
- t=2: 7 queued + 2 in flight -> ceil(9 / 2) = 5, capped at max -> 4 at once.
- t=3..61: load gone; the window still holds the t=2 recommendation, so stay at 4.
- t=62: the 4 has left the window; the highest recommendation still in it wins,
  so replicas step down as older peaks age out, and reach 0 once the whole
  window has seen no demand. A burst inside the window never causes a dip.

The window remembers runs of equal recommendations, not every tick, so its
size follows how often demand changes, not how often we look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.spec import ScalePolicy


@dataclass(frozen=True, slots=True)
class Observation:
    now: float
    queued: int
    """Calls waiting for a replica, including the async/event backlog."""
    in_flight: int
    ready: int
    starting: int


@dataclass(frozen=True, slots=True)
class History:
    """Recommendations within the scale-down window, as (start time, replicas) runs."""

    runs: tuple[tuple[float, int], ...] = ()
    since: float | None = None
    """When observation began; until a whole window has passed we never scale down."""


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    reason: str
    history: History


def recommended(queued: int, in_flight: int, policy: ScalePolicy) -> int:
    """Replicas that serve the current demand at the target concurrency, within min/max."""
    wanted = math.ceil((queued + in_flight) / policy.target_concurrency)
    return max(policy.min, min(policy.max, wanted))


def decide(observation: Observation, policy: ScalePolicy, history: History) -> Decision:
    now = observation.now
    current = observation.ready + observation.starting
    wanted = recommended(observation.queued, observation.in_flight, policy)
    history = _remember(history, now, wanted, policy.idle_timeout)
    demand = f"{observation.queued} queued + {observation.in_flight} in flight"

    if wanted >= current:
        reason = f"{demand} at {policy.target_concurrency} per replica"
        if wanted == policy.min and current < policy.min:
            reason = f"min is {policy.min}"
        return Decision(wanted, reason, history)

    assert history.since is not None
    if now - history.since < policy.idle_timeout:
        return Decision(current, "holding until a full scale-down window is observed", history)
    peak = max(replicas for _, replicas in history.runs)
    if peak >= current:
        return Decision(current, f"demand within the last {policy.idle_timeout:g}s", history)
    if peak == 0:
        reason = f"idle for {policy.idle_timeout:g}s"
    else:
        reason = f"at most {peak} needed in the last {policy.idle_timeout:g}s"
    return Decision(peak, reason, history)


def _remember(history: History, now: float, wanted: int, window: float) -> History:
    runs = history.runs
    if not runs or runs[-1][1] != wanted:
        runs = (*runs, (now, wanted))
    cutoff = now - window
    # Keep the run in effect at the cutoff (it covers the window's start) and all later ones.
    first = 0
    while first + 1 < len(runs) and runs[first + 1][0] <= cutoff:
        first += 1
    return History(runs[first:], now if history.since is None else history.since)
