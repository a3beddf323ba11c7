"""An event stream whose first event is ready at once: time to first byte is the path's."""

from collections.abc import Iterator

from faas.handler import Context, Event, StreamingResponse, sse


def handle(event: Event, context: Context) -> StreamingResponse:
    return StreamingResponse(events(), content_type="text/event-stream")


def events() -> Iterator[str]:
    yield sse({"n": 1}, id="1")
    yield sse({"n": 2}, id="2")
