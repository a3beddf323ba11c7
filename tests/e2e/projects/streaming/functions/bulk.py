"""`?mib=N` MiB streamed as it is made, in 1 MiB chunks."""

from __future__ import annotations

from collections.abc import Iterator

from faas.handler import Context, Event

BLOCK = bytes(range(256)) * 4096  # 1 MiB


def handle(event: Event, context: Context) -> Iterator[bytes]:
    mib = int(event.query.get("mib", "1"))
    return (BLOCK for _ in range(mib))
