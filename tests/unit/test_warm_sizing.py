"""How many warm watchdogs each kind keeps, as tables of recent cold starts and budgets."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from runtime.scaling.warm_sizing import UNMEASURED, WINDOW, KindDemand, plan, wish

MiB = 1024 * 1024
NOW = 1000.0


def demand(
    key: str,
    *,
    arrivals: Sequence[float] = (),
    last_needed: float = 0.0,
    per_watchdog: int | None = 10 * MiB,
) -> KindDemand:
    return KindDemand(key, tuple(arrivals), last_needed, per_watchdog)


def burst(count: int, ago: float = 1.0) -> tuple[float, ...]:
    """`count` cold starts, the oldest `ago` seconds before NOW."""
    return tuple(NOW - ago + i * ago / max(count, 1) for i in range(count))


@dataclass(frozen=True)
class Case:
    kinds: tuple[KindDemand, ...]
    expected: dict[object, int]
    minimum: int = 2
    maximum: int = 8
    budget: int = 10_000 * MiB
    now: float = NOW


CASES: dict[str, Case] = {
    "idle kinds get the minimum": Case(
        (demand("a", last_needed=900), demand("b", last_needed=100)), {"a": 2, "b": 2}
    ),
    "minimum 0 keeps no spare watchdog for an idle kind": Case(
        (demand("a"), demand("b", arrivals=burst(1))), {"a": 0, "b": 1}, minimum=0
    ),
    "arrivals in the window raise the wish": Case(
        (demand("a", arrivals=burst(5), last_needed=NOW), demand("b")), {"a": 5, "b": 2}
    ),
    "fewer arrivals than the minimum still get the minimum": Case(
        (demand("a", arrivals=burst(1), last_needed=NOW),), {"a": 2}
    ),
    "the wish is capped by the maximum": Case(
        (demand("a", arrivals=burst(30), last_needed=NOW),), {"a": 8}
    ),
    "arrivals older than the window are forgotten": Case(
        (demand("a", arrivals=[NOW - WINDOW - 0.5] * 6 + [NOW - 100.0] * 6, last_needed=NOW),),
        {"a": 2},
    ),
    "only the arrivals within the window count": Case(
        (demand("a", arrivals=[NOW - WINDOW - 1.0] * 6 + [NOW - WINDOW, NOW - 1, NOW - 2]),),
        {"a": 3},
    ),
    "a minimum larger than the maximum is capped to the maximum": Case(
        (demand("a"), demand("b", arrivals=burst(9))), {"a": 3, "b": 3}, minimum=5, maximum=3
    ),
    "maximum 0 turns warm pools off": Case(
        (demand("a", arrivals=burst(9)), demand("b")), {"a": 0, "b": 0}, minimum=2, maximum=0
    ),
    "a short budget takes from the least recently needed first": Case(
        (
            demand("old", last_needed=100),
            demand("recent", last_needed=900),
            demand("middle", last_needed=500),
        ),
        {"recent": 2, "middle": 2, "old": 1},
        budget=50 * MiB,
    ),
    "a shorter budget leaves the least recently needed kinds none": Case(
        (
            demand("old", last_needed=100),
            demand("recent", last_needed=900),
            demand("middle", last_needed=500),
        ),
        {"recent": 2, "middle": 1, "old": 0},
        budget=35 * MiB,
    ),
    "everyone's minimum comes before anyone's extra wish": Case(
        (demand("busy", arrivals=burst(8), last_needed=NOW), demand("idle", last_needed=1)),
        {"busy": 4, "idle": 2},
        budget=60 * MiB,
    ),
    "a kind that does not fit leaves the rest to smaller ones": Case(
        (
            demand("huge", last_needed=900, per_watchdog=100 * MiB),
            demand("small", last_needed=100, per_watchdog=10 * MiB),
        ),
        {"huge": 0, "small": 2},
        budget=50 * MiB,
    ),
    "an unmeasured kind gets one at most": Case(
        (demand("new", arrivals=burst(6), last_needed=NOW, per_watchdog=None),), {"new": 1}
    ),
    "an unmeasured kind gets none at minimum 0 when idle": Case(
        (demand("new", per_watchdog=None),), {"new": 0}, minimum=0
    ),
    "an unmeasured kind is counted at UNMEASURED": Case(
        (
            demand("new", last_needed=900, per_watchdog=None),
            demand("known", last_needed=100, per_watchdog=10 * MiB),
        ),
        {"new": 1, "known": 1},
        budget=UNMEASURED + 15 * MiB,
    ),
    "an unmeasured kind that does not fit gets none": Case(
        (
            demand("new", last_needed=900, per_watchdog=None),
            demand("known", last_needed=100, per_watchdog=10 * MiB),
        ),
        {"new": 0, "known": 2},
        budget=UNMEASURED - 1,
    ),
    "budget 0 gives every kind 0": Case(
        (
            demand("a", arrivals=burst(8), last_needed=NOW),
            demand("b", per_watchdog=None),
            demand("c", per_watchdog=1),
        ),
        {"a": 0, "b": 0, "c": 0},
        budget=0,
    ),
    "no kinds, no plan": Case((), {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plan(name: str) -> None:
    case = CASES[name]
    targets = plan(
        case.kinds, case.now, minimum=case.minimum, maximum=case.maximum, budget=case.budget
    )
    assert targets == case.expected
    assert held(case.kinds, targets) <= case.budget


def test_worked_example_from_the_docstring() -> None:
    """Minimum 2, maximum 8, budget 100 MiB, plain 12 MiB, numpy 30 MiB, numpy needed last."""
    settings = {"minimum": 2, "maximum": 8, "budget": 100 * MiB}

    def kinds(plain_arrivals: Sequence[float]) -> list[KindDemand]:
        return [
            demand("plain", arrivals=plain_arrivals, last_needed=NOW - 1, per_watchdog=12 * MiB),
            demand("numpy", last_needed=NOW, per_watchdog=30 * MiB),
        ]

    idle = plan(kinds(()), NOW, **settings)
    assert idle == {"numpy": 2, "plain": 2}
    assert held(kinds(()), idle) == 84 * MiB

    ten = burst(10, ago=9.0)
    busy = plan(kinds(ten), NOW, **settings)
    assert busy == {"numpy": 2, "plain": 3}  # 6 more wished, 16 MiB left: 1 more
    assert held(kinds(ten), busy) == 96 * MiB

    assert plan(kinds(ten), NOW + WINDOW, **settings) == {"numpy": 2, "plain": 2}


@pytest.mark.parametrize(
    ("arrivals", "minimum", "maximum", "expected"),
    [
        ((), 2, 8, 2),
        ((NOW,), 0, 8, 1),
        ((NOW - WINDOW,), 0, 8, 1),  # the window includes its edge
        ((NOW - WINDOW - 0.001,), 0, 8, 0),
        ((NOW + 1.0,), 0, 8, 1),  # a clock a little behind counts it
        ((NOW - 1,) * 20, 2, 8, 8),
        ((NOW - 1,) * 5, 2, 8, 5),
        ((NOW - 1,) * 5, 6, 8, 6),
    ],
)
def test_wish(arrivals: tuple[float, ...], minimum: int, maximum: int, expected: int) -> None:
    assert wish(demand("k", arrivals=arrivals), NOW, minimum, maximum) == expected


# ---------------------------------------------------------------- properties over random cases


def held(kinds: Sequence[KindDemand], targets: dict[object, int]) -> int:
    return sum(targets[k.key] * size_of(k) for k in kinds)


def size_of(kind: KindDemand) -> int:
    return kind.per_watchdog if kind.per_watchdog is not None else UNMEASURED


def random_case(rng: random.Random) -> tuple[list[KindDemand], int, int, int]:
    kinds = []
    for i in range(rng.randint(0, 6)):
        arrivals = [NOW - rng.uniform(0, 3 * WINDOW) for _ in range(rng.randint(0, 20))]
        per = rng.choice([None, rng.randint(1, 200) * MiB, rng.randint(1, 5) * MiB])
        kinds.append(
            demand(f"k{i}", arrivals=arrivals, last_needed=rng.uniform(0, NOW), per_watchdog=per)
        )
    minimum, maximum = rng.randint(0, 4), rng.randint(0, 10)
    budget = rng.choice([0, rng.randint(0, 1024) * MiB, rng.randint(0, 100) * MiB])
    return kinds, minimum, maximum, budget


def check_properties(seed: int) -> bool:
    """Check one random case; True when the budget left some kind short of its wish."""
    rng = random.Random(seed)
    kinds, minimum, maximum, budget = random_case(rng)
    targets = plan(kinds, NOW, minimum=minimum, maximum=maximum, budget=budget)

    assert set(targets) == {k.key for k in kinds}
    assert held(kinds, targets) <= budget  # the budget is never exceeded
    left = budget - held(kinds, targets)
    floor_of: dict[object, int] = {}
    short = False
    for kind in kinds:
        wanted = wish(kind, NOW, min(minimum, maximum), maximum)
        if kind.per_watchdog is None:
            wanted = min(wanted, 1)
        floor_of[kind.key] = min(minimum, wanted)
        target = targets[kind.key]
        assert 0 <= target <= wanted <= maximum
        if target < wanted:  # short only because not one more fits
            short = True
            assert left < size_of(kind)

    # a kind short of its minimum leaves nothing to those needed less recently, at least
    # to those whose watchdogs are as big
    for first in kinds:
        if targets[first.key] >= floor_of[first.key]:
            continue
        for later in kinds:
            if later.last_needed < first.last_needed and size_of(later) >= size_of(first):
                assert targets[later.key] == 0
        # and no kind whose watchdogs are as big got more than its minimum: minimums first
        for other in kinds:
            if size_of(other) >= size_of(first):
                assert targets[other.key] <= floor_of[other.key]
    return short


def test_plan_properties_over_random_cases() -> None:
    short = 0
    for seed in range(400):
        try:
            short += check_properties(seed)
        except AssertionError as exc:
            raise AssertionError(f"random.Random({seed}): {exc}") from exc
    assert short >= 50  # the cases do test a short budget


def test_plan_without_a_budget_limit_is_the_wish() -> None:
    rng = random.Random(1)
    for _ in range(200):
        kinds, minimum, maximum, _ = random_case(rng)
        targets = plan(kinds, NOW, minimum=minimum, maximum=maximum, budget=1 << 62)
        for kind in kinds:
            wanted = wish(kind, NOW, min(minimum, maximum), maximum)
            assert targets[kind.key] == (min(wanted, 1) if kind.per_watchdog is None else wanted)


def test_plan_does_not_depend_on_the_order_of_kinds() -> None:
    rng = random.Random(2)
    for _ in range(200):
        kinds, minimum, maximum, budget = random_case(rng)
        shuffled = list(kinds)
        rng.shuffle(shuffled)
        assert plan(kinds, NOW, minimum=minimum, maximum=maximum, budget=budget) == plan(
            shuffled, NOW, minimum=minimum, maximum=maximum, budget=budget
        )
