"""The async side: awaitables, and a timeout that cancels the handler."""

from __future__ import annotations

import asyncio
from typing import Any

from faas.handler import Context, Event


async def handle(event: Event, context: Context) -> Any:
    case = event.query.get("case", "ok")
    if case == "ok":
        await asyncio.sleep(0)
        return {"async": True, "body_bytes": len(event.body)}
    if case == "raise":
        raise RuntimeError("async failure")
    if case == "slow":
        await asyncio.sleep(3)
    return "done"
