"""The scaling decision as scenarios: a sequence of observations and the replicas wanted."""

from __future__ import annotations

import pytest

from runtime.scaling.decide import History, Observation, decide, recommended
from runtime.spec import ScalePolicy

POLICY = ScalePolicy(
    min=0, max=4, target_concurrency=2, concurrency=None, idle_timeout=60.0, max_queue=100
)

# (time, queued, in_flight, expected desired); ready follows the previous decision.
Step = tuple[float, int, int, int]

SCENARIOS: dict[str, list[Step]] = {
    "idle stays at zero": [(0, 0, 0, 0), (30, 0, 0, 0), (100, 0, 0, 0)],
    "first request scales 0 -> 1 at once": [(0, 0, 0, 0), (1, 1, 0, 1)],
    "concurrent first requests share one replica": [(0, 0, 0, 0), (1, 2, 0, 1)],
    "burst grows at once and is capped at max": [(0, 0, 0, 0), (1, 3, 0, 2), (2, 40, 8, 4)],
    "stable concurrency 1 holds 1; then 0 goes to 0 after the window": [
        (0, 0, 1, 1),
        (30, 0, 1, 1),
        (60, 0, 0, 1),
        (90, 0, 0, 1),
        (119, 0, 0, 1),
        (120.5, 0, 0, 0),
    ],
    "steps down as older peaks leave the window": [
        (0, 0, 8, 4),
        (10, 0, 4, 4),
        (20, 0, 2, 4),
        (30, 0, 0, 4),
        (65, 0, 0, 4),
        (70.5, 0, 0, 2),
        (80.5, 0, 0, 1),
        (90.5, 0, 0, 0),
    ],
    "flapping demand never dips": [
        (0, 0, 0, 0),
        (1, 8, 0, 4),
        (2, 0, 0, 4),
        (3, 8, 0, 4),
        (4, 0, 0, 4),
        (5, 0, 8, 4),
        (6, 0, 0, 4),
        (50, 0, 0, 4),
        (66, 0, 0, 0),
    ],
    "trickle of single calls keeps one replica warm": [
        (0, 1, 0, 1),
        (1, 0, 0, 1),
        (40, 1, 0, 1),
        (41, 0, 0, 1),
        (80, 0, 1, 1),
        (81, 0, 0, 1),
        (140, 0, 0, 1),
        (141.5, 0, 0, 0),
    ],
    "no scale-down before a whole window was observed": [(0, 0, 0, 0), (10, 0, 0, 0)],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(steps: list[Step]) -> None:
    history = History()
    ready = 0
    for now, queued, in_flight, expected in steps:
        decision = decide(Observation(now, queued, in_flight, ready, 0), POLICY, history)
        assert decision.desired == expected, f"t={now}: {decision.reason}"
        history, ready = decision.history, decision.desired


def test_min_is_kept_and_reported() -> None:
    policy = ScalePolicy(
        min=2, max=5, target_concurrency=10, concurrency=None, idle_timeout=5, max_queue=1
    )
    decision = decide(Observation(0, 0, 0, 0, 0), policy, History())
    assert (decision.desired, decision.reason) == (2, "min is 2")
    later = decide(Observation(100, 0, 0, 2, 0), policy, decision.history)
    assert later.desired == 2


def test_starting_replicas_count_toward_current() -> None:
    decision = decide(Observation(1, 3, 0, 0, 2), POLICY, History())
    assert decision.desired == 2


def test_replicas_present_before_observation_are_held_for_a_window() -> None:
    decision = decide(Observation(0, 0, 0, 3, 0), POLICY, History())
    assert decision.desired == 3
    assert "full scale-down window" in decision.reason


def test_history_stays_small_under_constant_demand() -> None:
    history = History()
    for tick in range(10_000):
        history = decide(Observation(tick * 0.1, 0, 3, 2, 0), POLICY, history).history
    assert len(history.runs) == 1


@pytest.mark.parametrize(
    ("queued", "in_flight", "expected"),
    [(0, 0, 0), (1, 0, 1), (2, 0, 1), (3, 0, 2), (1, 1, 1), (100, 0, 4)],
)
def test_recommended(queued: int, in_flight: int, expected: int) -> None:
    assert recommended(queued, in_flight, POLICY) == expected
