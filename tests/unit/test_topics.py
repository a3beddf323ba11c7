from __future__ import annotations

import pytest

from runtime.spec.topics import matches, pattern_problem, subscribers, topic_problem


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.created", "orders.shipped", False),
        ("orders.created", "orders.created.eu", False),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("*.created", "orders.created", True),
        ("*.created", "orders.eu.created", False),
        ("orders.*.created", "orders.eu.created", True),
        ("orders.>", "orders.created", True),
        ("orders.>", "orders.eu.created", True),
        ("orders.>", "orders", False),
        ("orders.>", "billing.created", False),
        (">", "anything", True),
        (">", "any.thing.at.all", True),
        ("*", "one", True),
        ("*", "one.two", False),
        ("*.>", "one", False),
        ("*.>", "one.two", True),
        ("Orders.created", "orders.created", False),  # case matters, as in NATS
    ],
)
def test_matching(pattern: str, topic: str, expected: bool) -> None:
    assert pattern_problem(pattern) is None
    assert topic_problem(topic) is None
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("", "1 to 255"),
        ("a" * 256, "1 to 255"),
        ("orders..created", "dot-separated"),
        (".orders", "dot-separated"),
        ("orders.", "dot-separated"),
        ("orders.*", "dot-separated"),
        ("orders.>", "dot-separated"),
        ("orders created", "dot-separated"),
        ("orders/created", "dot-separated"),
        ("faas.cron", "reserved"),
    ],
)
def test_bad_topics(topic: str, fragment: str) -> None:
    problem = topic_problem(topic)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "1 to 255"),
        ("orders.>.eu", "last segment"),
        ("orders.**", "wildcards"),
        ("orders.cr*", "wildcards"),
        ("orders..x", "wildcards"),
        ("faas.>", "reserved"),
    ],
)
def test_bad_patterns(pattern: str, fragment: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is not None and fragment in problem


def test_subscribers_keep_order_and_appear_once() -> None:
    subscriptions = [
        ("audit", ["orders.created"]),
        ("mailer", ["orders.*", "orders.created"]),
        ("billing", ["invoices.>"]),
        ("ledger", [">"]),
    ]
    assert subscribers("orders.created", subscriptions) == ["audit", "mailer", "ledger"]
    assert subscribers("invoices.eu.paid", subscriptions) == ["billing", "ledger"]
    assert subscribers("x", subscriptions) == ["ledger"]
