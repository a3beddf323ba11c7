"""Its first line at once, its last only once released by another call (`?release=1`)."""

import asyncio

from faas.handler import StreamingResponse

RELEASED = asyncio.Event()


async def handle(event, context):
    if event.query.get("release"):
        RELEASED.set()
        return "released"
    RELEASED.clear()
    return StreamingResponse(lines(), content_type="text/plain; charset=utf-8")


async def lines():
    yield "first line\n"
    await asyncio.wait_for(RELEASED.wait(), 8)
    yield "last line\n"
