"""faas.testing: handlers called in-process as the watchdog calls them.

tests/e2e/test_handler_kit.py shows the answers equal a real replica's; these cover
the ways to call it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from faas.handler import Context, Event, Response, SecretNotFound
from faas.testing import HandlerLoadError, acall, call


def echo(event: Event, context: Context) -> dict[str, Any]:
    return {
        "method": event.method,
        "path": event.path,
        "query": event.query_items,
        "body": event.text(),
        "type": event.headers.get("Content-Type"),
        "function": context.function_name,
        "topic": event.topic,
        "event_id": event.event_id,
        "attempt": event.attempt,
    }


def test_method_defaults_to_get_without_a_body_and_post_with_one() -> None:
    assert call(echo).json()["method"] == "GET"
    assert call(echo, body="x").json()["method"] == "POST"
    assert call(echo, json=None).json()["method"] == "POST"  # `null` is a body too
    assert call(echo, method="DELETE").json()["method"] == "DELETE"


@pytest.mark.parametrize(
    ("query", "items"),
    [
        ({"tag": ["a", "b"], "x": "1"}, [["tag", "a"], ["tag", "b"], ["x", "1"]]),
        ([("b", "2"), ("a", "1")], [["b", "2"], ["a", "1"]]),
        ("?q=hello+world", [["q", "hello world"]]),
    ],
)
def test_query_forms(query: Any, items: list[list[str]]) -> None:
    assert call(echo, query=query).json()["query"] == items


def test_a_query_in_the_path_is_the_query() -> None:
    answer = call(echo, path="/orders?id=7").json()
    assert (answer["path"], answer["query"]) == ("/orders", [["id", "7"]])


def test_json_sets_the_content_type_unless_given() -> None:
    assert call(echo, json={"a": 1}).json()["type"] == "application/json"
    given = call(echo, json=[1], headers={"Content-Type": "application/vnd.x+json"})
    assert given.json()["type"] == "application/vnd.x+json"
    with pytest.raises(TypeError, match="either json= or body="):
        call(echo, json={}, body=b"")


def test_events_carry_topic_id_and_attempt() -> None:
    answer = call(echo, topic="orders", event_id="e-1", attempt=3, json={}).json()
    assert (answer["topic"], answer["event_id"], answer["attempt"]) == ("orders", "e-1", 3)
    assert call(echo, attempt=3).json()["attempt"] == 1  # attempts are for events only


def test_secrets_are_read_with_context_secret() -> None:
    def handler(event: Event, context: Context) -> str:
        try:
            return context.secret("db-password")
        except SecretNotFound:
            return "none"

    assert call(handler, secrets={"db-password": "hunter22\n"}).text == "hunter22"
    assert call(handler).text == "none"


def test_env_is_set_for_the_call_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPT", "before")
    monkeypatch.delenv("ADDED", raising=False)

    def handler(event: Event, context: Context) -> dict[str, str | None]:
        return {name: os.environ.get(name) for name in ("KEPT", "ADDED")}

    answer = call(handler, env={"KEPT": "during", "ADDED": "yes"}).json()
    assert answer == {"KEPT": "during", "ADDED": "yes"}
    assert (os.environ["KEPT"], os.environ.get("ADDED")) == ("before", None)


def test_a_raised_exception_answers_500_and_is_kept() -> None:
    def handler(event: Event, context: Context) -> None:
        raise KeyError("missing")

    response = call(handler)
    assert response.status == 500
    assert response.json() == {"error": "function raised an exception", "call_id": response.call_id}
    assert isinstance(response.error, KeyError)


def test_an_invalid_return_value_answers_500() -> None:
    response = call(lambda event, context: {1, 2})
    assert response.status == 500
    assert response.json()["error"] == "function returned an invalid value"
    assert response.error is not None and "set" in str(response.error)


def test_a_sync_handler_past_its_timeout_answers_504_and_is_left_running() -> None:
    release = threading.Event()

    def handler(event: Event, context: Context) -> str:
        release.wait(10)
        return "late"

    response = call(handler, timeout=0.2)
    release.set()
    assert response.status == 504
    assert response.json()["error"] == "function timed out after 0.2s"


def test_an_async_handler_past_its_timeout_is_cancelled() -> None:
    cancelled = []

    async def handler(event: Event, context: Context) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "late"

    assert call(handler, timeout=0.1).status == 504
    assert cancelled == [True]


def test_single_argument_handlers_and_returned_awaitables() -> None:
    async def later() -> Response:
        return Response("made", status=201, headers={"X-Made": "1"})

    assert call(lambda event: "one").text == "one"
    response = call(lambda event, context: later())
    assert (response.status, response.headers["x-made"], response.text) == (201, "1", "made")


def test_a_handler_file_by_path_with_a_handler_name(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    source = "def main(event, context):\n    return {'name': context.function_name}\n"
    (tmp_path / "functions" / "image_resize.py").write_text(source)
    path = tmp_path / "functions" / "image_resize.py"
    assert call(f"{path}:main").json() == {"name": "image-resize"}
    with pytest.raises(HandlerLoadError, match="no function named 'handle'"):
        call(path)


def test_the_context_logger_tags_lines_with_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    def handler(event: Event, context: Context) -> None:
        context.logger.info("working")

    with caplog.at_level("INFO", logger="function"):
        response = call(handler)
    assert [r.call_id for r in caplog.records if r.message == "working"] == [response.call_id]


def test_call_refuses_a_running_loop_and_acall_works_there() -> None:
    async def inside() -> int:
        with pytest.raises(RuntimeError, match="acall"):
            call(echo)
        return (await acall(echo)).status

    assert asyncio.run(inside()) == 200


def test_a_streamed_request_body_is_read_with_event_stream() -> None:
    async def upload(event: Event, context: Context) -> dict[str, int]:
        return {"size": sum([len(chunk) async for chunk in event.stream()])}

    def whole(event: Event, context: Context) -> dict[str, int]:
        return {"size": len(event.body)}

    assert call(upload, body=b"12345", stream_body=True).json() == {"size": 5}
    assert call(upload, body=b"12345").json() == {"size": 5}  # a whole body: one chunk
    refused = call(whole, body=b"12345", stream_body=True)
    assert refused.status == 500 and "event.stream()" in str(refused.error)
