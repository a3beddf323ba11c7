"""functions.yaml keys for durable work: events, schedule, timezone, retry, max_backlog, gateway."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.errors import Problem, SpecError
from runtime.spec import (
    DEFAULT_GATEWAY,
    DEFAULT_MAX_BACKLOG,
    DEFAULT_RETRY,
    Project,
    RetryPolicy,
    load_project_text,
)

ROOT = Path("/srv/examples")

MINIMAL = """\
version: 1
functions:
  hello:
    handler: functions/hello.py
"""


def load(text: str) -> Project:
    return load_project_text(textwrap.dedent(text), filename="functions.yaml", root=ROOT)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(SpecError) as caught:
        load(text)
    return caught.value.problems


def with_function(*lines: str) -> str:
    """MINIMAL with `lines` added to function 'hello', the first of them on line 5."""
    return MINIMAL + "".join(f"    {line}\n" for line in lines)


def assert_one_problem(
    problems: list[Problem], line: int | None, field: str, fragment: str
) -> None:
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.file, problem.line, problem.field) == ("functions.yaml", line, field)
    assert fragment in problem.message, problem.message


def test_defaults() -> None:
    project = load(MINIMAL)
    hello = project.functions["hello"]
    assert hello.events == ()
    assert hello.schedule is None
    assert hello.timezone == "UTC"
    assert (
        hello.retry == DEFAULT_RETRY == RetryPolicy(5, 1.0, 300.0, (408, 429, 500, 502, 503, 504))
    )
    assert hello.max_backlog == DEFAULT_MAX_BACKLOG == 10_000
    gateway = project.gateway
    assert gateway.events_auth == "key"
    assert gateway.callback_allow == ()
    assert gateway.callback_secret is None
    assert gateway.result_retention == 3600.0
    assert gateway == DEFAULT_GATEWAY


def test_everything_set() -> None:
    project = load(
        """\
        version: 1
        gateway:
          events_auth: none
          callback_allow: ["127.0.0.1", "https://hooks.example.com/faas/", "*.example.com"]
          callback_secret: callback-key
          result_retention: 10m
        defaults:
          timezone: Europe/Paris
          retry: {max_attempts: 3, backoff: 500ms}
          max_backlog: 50
        functions:
          consumer:
            handler: functions/consumer.py
            events: [orders.created, "orders.*", "billing.>"]
            retry: {max_backoff: 1m, retry_on: [500, 503]}
          nightly:
            handler: functions/nightly.py
            schedule: "0   3 * * *"
            timezone: America/New_York
            max_backlog: 1
        """
    )
    consumer, nightly = project.functions["consumer"], project.functions["nightly"]
    assert consumer.events == ("orders.created", "orders.*", "billing.>")
    assert consumer.retry == RetryPolicy(3, 0.5, 60.0, (500, 503))  # merged field by field
    assert consumer.max_backlog == 50
    assert consumer.timezone == "Europe/Paris"
    assert nightly.schedule == "0 3 * * *"  # whitespace normalised
    assert nightly.timezone == "America/New_York"
    assert nightly.retry == RetryPolicy(3, 0.5, 300.0, DEFAULT_RETRY.retry_on)
    assert nightly.max_backlog == 1
    gateway = project.gateway
    assert gateway.events_auth == "none"
    assert gateway.callback_allow == (
        "127.0.0.1",
        "https://hooks.example.com/faas/",
        "*.example.com",
    )
    assert gateway.callback_secret == "callback-key"
    assert gateway.result_retention == 600.0


def test_empty_blocks_mean_defaults() -> None:
    project = load(with_function("events:", "retry:"))
    assert project.functions["hello"].events == ()
    assert project.functions["hello"].retry == DEFAULT_RETRY


@pytest.mark.parametrize(
    ("lines", "line", "field", "fragment"),
    [
        (["events: orders.created"], 5, "functions.hello.events", "expected a list"),
        (["events: [3]"], 5, "functions.hello.events[0]", "topic pattern"),
        (['events: ["orders.>.eu"]'], 5, "functions.hello.events[0]", "last segment"),
        (['events: ["orders.**"]'], 5, "functions.hello.events[0]", "wildcards"),
        (['events: ["faas.cron"]'], 5, "functions.hello.events[0]", "reserved"),
        (
            ["events: [a.b, c, a.b]"],
            5,
            "functions.hello.events[2]",
            "already listed in events[0]",
        ),
        (['schedule: "* * * *"'], 5, "functions.hello.schedule", "got 4 field(s)"),
        (['schedule: "61 * * * *"'], 5, "functions.hello.schedule", "not a valid cron"),
        (["schedule: 5"], 5, "functions.hello.schedule", "cron expression"),
        (
            ['schedule: "@hourly"', "timezone: Mars/Olympus"],
            6,
            "functions.hello.timezone",
            "IANA time zone",
        ),
        (["timezone: UTC"], 5, "functions.hello.timezone", "has none"),
        (["retry: 3"], 5, "functions.hello.retry", "expected a mapping"),
        (["retry: {max_attempts: 0}"], 5, "functions.hello.retry.max_attempts", "between 1 and"),
        (["retry: {max_attempts: 101}"], 5, "functions.hello.retry.max_attempts", "and 100"),
        (["retry: {backoff: soon}"], 5, "functions.hello.retry.backoff", "duration"),
        (["retry: {retry_on: [200]}"], 5, "functions.hello.retry.retry_on[0]", "400 to 599"),
        (["retry: {retry_on: [500, 500]}"], 5, "functions.hello.retry.retry_on[1]", "twice"),
        (
            ["retry: {backoff: 10s, max_backoff: 5s}"],
            5,
            "functions.hello.retry.max_backoff",
            "expected max_backoff (5s) >= backoff (10s)",
        ),
        (["retry: {backoff: 10m}"], 5, "functions.hello.retry.backoff", "max_backoff (300s)"),
        (["retry: {max_attempt: 3}"], 5, "functions.hello.retry.max_attempt", "'max_attempts'"),
        (["max_backlog: 0"], 5, "functions.hello.max_backlog", ">= 1"),
        (["evnts: [a]"], 5, "functions.hello.evnts", "did you mean 'events'"),
        (["schedul: '@daily'"], 5, "functions.hello.schedul", "did you mean 'schedule'"),
    ],
)
def test_function_problems(lines: list[str], line: int, field: str, fragment: str) -> None:
    assert_one_problem(problems_of(with_function(*lines)), line, field, fragment)


@pytest.mark.parametrize(
    ("block", "line", "field", "fragment"),
    [
        ("events_auth: maybe", 3, "gateway.events_auth", "none, key, jwt"),
        ("events_auth: jwt", 3, "gateway.events_auth", "needs a gateway.jwt block"),
        ("callback_allow: 127.0.0.1", 3, "gateway.callback_allow", "expected a list"),
        ("callback_allow: [ftp://x]", 3, "gateway.callback_allow[0]", "http:// or https://"),
        (
            "callback_allow: ['https://u@x.com/']",
            3,
            "gateway.callback_allow[0]",
            "no credentials",
        ),
        ("callback_allow: ['not a host']", 3, "gateway.callback_allow[0]", "host like"),
        ("callback_secret: Bad/Name", 3, "gateway.callback_secret", "secret name"),
        ("result_retention: -1", 3, "gateway.result_retention", "greater than 0"),
    ],
)
def test_gateway_problems(block: str, line: int, field: str, fragment: str) -> None:
    text = f"version: 1\ngateway:\n  {block}\n" + MINIMAL.removeprefix("version: 1\n")
    assert_one_problem(problems_of(text), line, field, fragment)


@pytest.mark.parametrize(
    ("block", "line", "field", "fragment"),
    [
        ("events: [a]", 3, "defaults.events", "cannot have a default"),
        ("schedule: '@daily'", 3, "defaults.schedule", "cannot have a default"),
        ("retry: {backoff: 10m}", 3, "defaults.retry.backoff", "max_backoff (300s)"),
        ("timezone: Nowhere/Land", 3, "defaults.timezone", "IANA"),
        ("max_backlog: -3", 3, "defaults.max_backlog", ">= 1"),
    ],
)
def test_defaults_problems(block: str, line: int, field: str, fragment: str) -> None:
    text = f"version: 1\ndefaults:\n  {block}\n" + MINIMAL.removeprefix("version: 1\n")
    assert_one_problem(problems_of(text), line, field, fragment)


def test_a_bad_default_backoff_is_reported_once_not_per_function() -> None:
    text = (
        "version: 1\ndefaults:\n  retry: {backoff: 10m}\nfunctions:\n"
        "  a:\n    handler: a.py\n  b:\n    handler: b.py\n    retry: {max_attempts: 2}\n"
    )
    assert_one_problem(problems_of(text), 3, "defaults.retry.backoff", "max_backoff")


def test_several_problems_at_once() -> None:
    problems = problems_of(
        with_function('events: ["a.>.b"]', 'schedule: "nope"', "retry: {max_attempts: 0}")
    )
    assert [(p.line, p.field) for p in problems] == [
        (5, "functions.hello.events[0]"),
        (6, "functions.hello.schedule"),
        (7, "functions.hello.retry.max_attempts"),
    ]
