"""The messages this gateway leased: what `finish`, `retry`, `release` and callbacks act on.

The server knows a leased message only as "unacknowledged until ack_wait";
only the gateway holding its `Msg` can acknowledge it. A lease that ran
out here may already be another gateway's, so it is forgotten rather than
acted on. Each lease also counts in its track (`Track.held`), so due times
leave out work that is this gateway's own.

JetStream counts every delivery, releases too, so a lease's attempt number
is that count minus the releases recorded in the `released` bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from runtime.events.jetstream import codec
from runtime.events.jetstream.streams import Streams, kv_get
from runtime.events.jetstream.track import Track
from runtime.events.queue import Delivery


@dataclass(slots=True)
class Held:
    msg: Msg
    attempt: int
    lease_until: float
    releases: int
    call: codec.CallEntry | None = None
    revision: int = 0
    """The call record's revision, for compare-and-set."""


class Holdings:
    """Leases by (stream key, stream sequence)."""

    def __init__(self, track: Callable[[str], Track]) -> None:
        self._track = track
        self._held: dict[tuple[str, int], Held] = {}

    def add(self, key: str, seq: int, held: Held) -> None:
        """Hold a delivery, counted once in its track.

        The server may redeliver a lease that ran out here before `expire`
        forgot it: the new lease replaces the old, or `held` would stay one
        too high and hide other gateways' lapsed work from `next_due`.
        """
        if (key, seq) not in self._held:
            self._track(key).held += 1
        self._held[(key, seq)] = held

    def get(self, key: str, seq: int) -> Held | None:
        return self._held.get((key, seq))

    def hold(self, delivery: Delivery, now: float) -> Held | None:
        """The delivery's lease if this gateway still has it, else None (it went elsewhere)."""
        held = self._held.get((delivery.function, delivery.id))
        if held is None or held.attempt != delivery.attempt:
            return None
        if now >= held.lease_until:
            self.drop(delivery.function, delivery.id)
            return None
        return held

    def drop(self, key: str, seq: int) -> None:
        if self._held.pop((key, seq), None) is not None:
            self._track(key).held -= 1

    def expire(self, now: float) -> int:
        """Forget leases that ran out; the server redelivers them (ack_wait) by itself."""
        expired = [key for key, held in self._held.items() if held.lease_until < now]
        for key, seq in expired:
            self.drop(key, seq)
        return len(expired)

    async def hand_back(self) -> None:
        """Nak everything held, best effort, so it is redelivered at once."""
        for (key, seq), held in list(self._held.items()):
            with contextlib.suppress(Exception):
                await held.msg.nak()
            self.drop(key, seq)


class Releases:
    """How often each delivery was put back without counting an attempt (`release`)."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    async def count(self, function: str, seq: int) -> int:
        entry = await kv_get(self._streams.bucket("released"), _key(function, seq))
        return int(entry[0]) if entry else 0

    async def record(self, function: str, seq: int, releases: int) -> None:
        await self._streams.bucket("released").put(_key(function, seq), str(releases).encode())


def _key(function: str, seq: int) -> str:
    return f"{function}.{seq}"
