"""Hashes an upload as it arrives; the replica holds only what has not been hashed yet."""

from __future__ import annotations

import hashlib

from faas.handler import Context, Event


async def handle(event: Event, context: Context) -> dict[str, object]:
    if event.query.get("case") == "body":
        return {"size": len(event.body)}  # refused: this function's body is a stream
    digest = hashlib.sha256()
    size = 0
    async for chunk in event.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}
