"""functions.yaml keys for warm pools: a function's `preload`, `gateway.warm_pool(_memory)`."""

from __future__ import annotations

import pytest

from runtime.errors import Problem
from runtime.spec import DEFAULT_GATEWAY, MiB
from tests.unit.test_spec_events import MINIMAL, load, problems_of, with_function


def with_gateway(*lines: str) -> str:
    """MINIMAL after a gateway block of `lines`, the first of them on line 2."""
    return "gateway:\n" + "".join(f"  {line}\n" for line in lines) + MINIMAL


def assert_one_problem(
    problems: list[Problem], line: int | None, field: str, fragment: str
) -> None:
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.file, problem.line, problem.field) == ("functions.yaml", line, field)
    assert fragment in problem.message


# ---------------------------------------------------------------- preload


@pytest.mark.parametrize(
    ("lines", "preload"),
    [
        ((), None),
        (("preload: true",), None),
        (("preload: null",), None),
        (("preload: false",), ()),
        (("preload: []",), ()),
        (("preload: [numpy, pandas.io]",), ("numpy", "pandas.io")),
        (("preload:", "  - pandas", "  - numpy"), ("pandas", "numpy")),
        (("preload: [_private, a.b.c]",), ("_private", "a.b.c")),
    ],
)
def test_preload(lines: tuple[str, ...], preload: tuple[str, ...] | None) -> None:
    hello = load(with_function(*lines)).functions["hello"]
    assert hello.preload == preload
    hash(hello.preload)  # part of a warm pool's kind: a tuple, not a list


def test_preload_is_per_function() -> None:
    project = load(
        with_function("preload: [numpy]")
        + "  other:\n    handler: functions/other.py\n    preload: false\n"
    )
    assert project.functions["hello"].preload == ("numpy",)
    assert project.functions["other"].preload == ()


EXPECTED = "expected true, false or a list of module names"


@pytest.mark.parametrize(
    ("line", "got"),
    [
        ("preload: [1]", "got 1 in the list"),
        ("preload: numpy", "got 'numpy'"),
        ('preload: "numpy"', "got 'numpy'"),
        ('preload: ["not a module"]', "got 'not a module'"),
        ("preload: ['']", "got ''"),
        ("preload: [numpy.]", "got 'numpy.'"),
        ("preload: [.numpy]", "got '.numpy'"),
        ("preload: [numpy-stubs]", "got 'numpy-stubs'"),
        ("preload: [numpy, [pandas]]", "got a list"),
        ("preload: {numpy: true}", "got a mapping"),
        ("preload: 1", "got 1"),
    ],
)
def test_bad_preload(line: str, got: str) -> None:
    problems = problems_of(with_function(line))
    assert_one_problem(problems, 5, "functions.hello.preload", EXPECTED)
    assert got in problems[0].message


def test_preload_is_not_a_default() -> None:
    problems = problems_of("defaults:\n  preload: false\n" + MINIMAL)
    assert len(problems) == 1, problems
    assert problems[0].field == "defaults.preload"
    assert "'preload' cannot have a default; set it on each function" in problems[0].message


# ---------------------------------------------------------------- gateway.warm_pool(_memory)


def test_warm_pool_defaults() -> None:
    gateway = load(MINIMAL).gateway
    assert gateway.warm_pool_memory == 512 * MiB == DEFAULT_GATEWAY.warm_pool_memory
    assert gateway.warm_pool == DEFAULT_GATEWAY.warm_pool


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ("256MiB", 256 * MiB),
        ("1GiB", 1024 * MiB),
        ("1GB", 1_000_000_000),
        ("64M", 64 * MiB),
        ("1048576", MiB),
        ("'300MB'", 300_000_000),
    ],
)
def test_warm_pool_memory(value: str, count: int) -> None:
    gateway = load(with_gateway(f"warm_pool_memory: {value}")).gateway
    assert gateway.warm_pool_memory == count


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("lots", "expected a size like"),
        ("true", "got true"),
        ("-1", "expected a size greater than 0, got -1"),
        ("1.5", "expected a size like"),
    ],
)
def test_bad_warm_pool_memory(value: str, fragment: str) -> None:
    problems = problems_of(with_gateway(f"warm_pool_memory: {value}"))
    assert_one_problem(problems, 2, "gateway.warm_pool_memory", fragment)


@pytest.mark.parametrize("size", [0, 1, 2, 8, 16, 17, 63, 64])
def test_warm_pool_sizes(size: int) -> None:
    assert load(with_gateway(f"warm_pool: {size}")).gateway.warm_pool == size


@pytest.mark.parametrize(
    ("value", "got"),
    [("65", "got 65"), ("-1", "got -1"), ("1.5", "got 1.5"), ("true", "got true"), ("'8'", "'8'")],
)
def test_bad_warm_pool(value: str, got: str) -> None:
    problems = problems_of(with_gateway(f"warm_pool: {value}"))
    assert_one_problem(problems, 2, "gateway.warm_pool", got)
    assert "pool size" in problems[0].message


def test_both_warm_pool_settings_together() -> None:
    gateway = load(with_gateway("warm_pool: 0", "warm_pool_memory: 1GiB")).gateway
    assert (gateway.warm_pool, gateway.warm_pool_memory) == (0, 1024 * MiB)
