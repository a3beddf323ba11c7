"""When each schedule last fired, in the `cron` KV bucket, shared by every gateway's scheduler.

Every gateway runs the scheduler, so two may fire the same schedule at the
same time: the firing's message id is derived from the schedule and time
(JetStream's duplicate window keeps one), and the mark only moves forward
(compare-and-set), whichever gateway writes first.
"""

from __future__ import annotations

import contextlib
import hashlib

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.events.jetstream.streams import CAS_ATTEMPTS, Streams, kv_get


def _key(function: str, schedule: str) -> str:
    return f"{function}.{hashlib.sha256(schedule.encode()).hexdigest()[:32]}"


def dedup_id(function: str, schedule: str, scheduled_at: float) -> str:
    """The firing's message id: the same on every gateway."""
    return f"cron.{_key(function, schedule)}.{scheduled_at!r}"


class CronMarks:
    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    @property
    def _bucket(self) -> KeyValue:
        return self._streams.bucket("cron")

    async def last_fired(self, function: str, schedule: str) -> float | None:
        entry = await kv_get(self._bucket, _key(function, schedule))
        return float(entry[0]) if entry else None

    async def advance(self, function: str, schedule: str, scheduled_at: float) -> None:
        """Move the mark to `scheduled_at`, unless it is there or later already."""
        key = _key(function, schedule)
        for _ in range(CAS_ATTEMPTS):
            entry = await kv_get(self._bucket, key)
            if entry is not None and float(entry[0]) >= scheduled_at:
                break
            with contextlib.suppress(KeyWrongLastSequenceError):
                value = repr(scheduled_at).encode()
                if entry is None:
                    await self._bucket.create(key, value)
                else:
                    await self._bucket.update(key, value, last=entry[1])
                break
