"""Dead letters: one stream per project (subjects `faas.P._dead.F`), kept until replayed or dropped.

A work-queue stream forgets what it acknowledges, so a delivery that gave
up is copied here, message and failure (the `Faas-Dead` header), before its
own message is acknowledged. A dead letter's id is its sequence in this
stream. Its call record still expires with the `calls` bucket's TTL, so
`call()` forgets a dead call after the retention while the letter remains.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError

from runtime.events.jetstream import codec, names
from runtime.events.jetstream.calls import CallRecords
from runtime.events.jetstream.streams import Streams
from runtime.events.queue import DeadLetter, Delivery, Kind, Message, Result


class DeadLetters:
    def __init__(self, streams: Streams, calls: CallRecords) -> None:
        self._streams = streams
        self._calls = calls

    @property
    def _stream(self) -> str:
        return names.dead_letter_stream(self._streams.project)

    def _subject(self, function: str) -> str:
        return names.dead_letter_subject(self._streams.project, function)

    async def ensure(self) -> None:
        await self._streams.ensure_stream(
            StreamConfig(name=self._stream, subjects=[self._subject("*")], storage=StorageType.FILE)
        )

    async def add(self, delivery: Delivery, result: Result, now: float) -> None:
        """Copy a delivery that gave up; its id is the message id, so JetStream drops a repeat."""
        message = delivery.message
        info = codec.DeadInfo(delivery.function, delivery.attempt, result.status, result.error, now)
        await self._streams.js.publish(
            self._subject(delivery.function),
            message.body,
            headers=codec.dead_headers(message, info, f"{delivery.function}.{delivery.id}"),
        )

    async def letters(self, function: str | None, limit: int) -> list[DeadLetter]:
        subject = self._subject(function or "*")
        letters: list[DeadLetter] = []
        seq = 1
        while len(letters) < limit:
            try:
                raw = await self._streams.js.get_msg(
                    self._stream, seq=seq, subject=subject, next=True
                )
            except NotFoundError:
                break
            seq = raw.seq or seq
            letters.append(codec.dead_letter_from(seq, raw.headers))
            seq += 1
        return letters

    async def _get(self, delivery_id: int) -> tuple[Message, DeadLetter] | None:
        try:
            raw = await self._streams.js.get_msg(self._stream, seq=delivery_id)
        except NotFoundError:
            return None
        return codec.message_from(raw.headers, raw.data), codec.dead_letter_from(
            delivery_id, raw.headers
        )

    async def replay(self, delivery_id: int, now: float) -> str | None:
        """Publish the letter's message again (attempts start afresh), then remove it.

        The function it went to, now due; None if there is no such letter.
        """
        found = await self._get(delivery_id)
        if found is None:
            return None
        message, letter = found
        function = letter.function
        if message.kind is Kind.CALL:
            entry = replace(codec.new_call(message, function, 0), due_at=now)
            await self._calls.put(message.id, entry)
        await self._streams.ensure(function)
        ack = await self._streams.js.publish(
            names.subject(self._streams.project, function),
            message.body,
            headers=codec.message_headers(message, f"replay.{delivery_id}"),
        )
        if message.kind is Kind.CALL:
            found_call = await self._calls.get(message.id)
            if found_call is not None and found_call[0].seq == 0:
                with contextlib.suppress(KeyWrongLastSequenceError):  # leased already
                    entry = replace(found_call[0], seq=ack.seq)
                    await self._calls.update(message.id, entry, found_call[1])
        with contextlib.suppress(APIError):
            await self._streams.js.delete_msg(self._stream, delivery_id)
        track = self._streams.track(function)
        if not ack.duplicate:
            track.change(undelivered=1)
        track.quiet_until = 0.0
        return function

    async def drop(self, delivery_id: int) -> bool:
        found = await self._get(delivery_id)
        if found is None:
            return False
        message, _ = found
        try:
            deleted = await self._streams.js.delete_msg(self._stream, delivery_id)
        except APIError:
            return False
        if deleted and message.kind is Kind.CALL:
            with contextlib.suppress(APIError):
                await self._calls.delete(message.id)
        return bool(deleted)

    async def counts(self) -> dict[str, int]:
        """Dead letters by function."""
        dead = await self._streams.js.stream_info(self._stream, subjects_filter=self._subject("*"))
        return {subject.rsplit(".", 1)[1]: n for subject, n in (dead.state.subjects or {}).items()}
