"""Events as they happen; the test steers the producer with `?case=` and `/release`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from faas.handler import Context, Event, Response, StreamingResponse, sse

RELEASED = asyncio.Event()
CLOSED: list[str] = []  # streams whose `finally` ran, by the caller's tag


async def handle(event: Event, context: Context) -> object:
    case = event.query.get("case", "sse")
    tag = event.query.get("tag", "")
    if case == "release":
        RELEASED.set()
        return "released"
    if case == "closed":
        return {"closed": CLOSED}
    if case == "sse":
        return StreamingResponse(
            gated_events(), content_type="text/event-stream", headers={"X-Stream": "sse"}
        )
    if case == "endless":
        return endless(tag)
    if case == "bad-chunk":
        return bad_chunks()
    if case == "quiet":
        return quiet()
    if case == "lines":
        return (f"line {i}\n" for i in range(5))
    return Response({"error": f"unknown case {case}"}, status=400)


async def gated_events() -> AsyncIterator[str]:
    """The first event at once; the last only after the caller saw the first and asked."""
    RELEASED.clear()
    yield sse({"n": 1}, event="tick", id="1")
    await asyncio.wait_for(RELEASED.wait(), 20)
    yield sse({"n": 2}, event="tick", id="2")


def endless(tag: str) -> Iterator[bytes]:
    try:
        while True:
            yield b"x" * 1024
            time.sleep(0.01)
    finally:
        CLOSED.append(tag)


def bad_chunks() -> Iterator[object]:
    yield b"fine\n"
    yield {"not": "bytes"}


async def quiet() -> AsyncIterator[bytes]:
    yield b"one\n"
    await asyncio.sleep(30)  # past the 3 s timeout between chunks
    yield b"never\n"
