"""The example functions, called in-process with faas.testing (`faas test tests/functions`).

These are the tests a user writes for their own functions: no Docker, no gateway.
tests/e2e/test_examples.py calls the same functions through a real gateway.
"""

from __future__ import annotations

from pathlib import Path

from faas.testing import call

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_hello_greets_by_name() -> None:
    assert call(FUNCTIONS / "hello.py", query={"name": "Ada"}).text == "Hello, Ada!\n"
    assert call(FUNCTIONS / "hello.py").text == "Hello, world!\n"


def test_echo_sends_back_what_it_saw() -> None:
    response = call(FUNCTIONS / "echo.py", method="PUT", path="/echo?x=1", json={"a": [1]})
    assert response.status == 200
    answer = response.json()
    assert answer == {
        "method": "PUT",
        "path": "/echo",
        "query": {"x": "1"},
        "json": {"a": [1]},
        "call_id": response.call_id,
    }


def test_echo_refuses_a_body_that_is_not_json() -> None:
    response = call(FUNCTIONS / "echo.py", body=b"{not json")
    assert response.status == 400
    assert response.json() == {"error": "the body is not valid JSON"}


def test_countdown_sleeps_at_most_five_seconds_of_what_is_asked() -> None:
    answer = call(FUNCTIONS / "countdown.py", query={"ms": "1"}).json()
    assert answer["slept_ms"] == 1


def test_audit_records_each_event_and_counts_them_once() -> None:
    """Called by its path, a handler is imported afresh for each call, as by a new replica;
    the function object itself keeps its module's state across calls, as a warm replica does."""
    audit = FUNCTIONS / "audit.py"
    answer = call(audit, topic="orders.created", event_id="e-1", json={"id": 42}).json()
    assert answer == {"recorded": "e-1"}
    assert call(audit).json() == {"events_seen": 0}

    import importlib.util

    spec = importlib.util.spec_from_file_location("audit_example", audit)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for _ in range(2):  # delivered twice
        call(module.handle, topic="orders.created", event_id="e-2", json={"id": 43})
    assert call(module.handle).json() == {"events_seen": 1}
