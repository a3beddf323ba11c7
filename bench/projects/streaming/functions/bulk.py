"""`?mib=N` MiB streamed in 1 MiB chunks."""

from collections.abc import Iterator

from faas.handler import Context, Event

BLOCK = b"x" * (1 << 20)


def handle(event: Event, context: Context) -> Iterator[bytes]:
    return (BLOCK for _ in range(int(event.query.get("mib", "1"))))
