"""An async handler: waits without holding a thread, so many calls share one replica."""

import asyncio
import time

from faas.handler import Context, Event

started = time.time()  # module state lives as long as the replica: warm calls share it


async def handle(event: Event, context: Context) -> dict[str, float]:
    delay_ms = min(int(event.query.get("ms", "50")), 5000)
    await asyncio.sleep(delay_ms / 1000)
    return {"slept_ms": delay_ms, "replica_age_s": round(time.time() - started, 3)}
