"""Async-call records in the `calls` KV bucket, which `call()` answers from.

A message cannot change once stored, so a call's state (attempts, result,
callback) is kept beside it, by call id. Every change is a compare-and-set
on the revision the lease read, so a gateway whose lease lapsed and passed
to another cannot overwrite that one's work. Records expire `retention`
seconds after their last change (the bucket's TTL), dead calls' too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace

from nats.js.errors import APIError, InvalidKeyError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.events.jetstream import codec, names
from runtime.events.jetstream.held import Held
from runtime.events.jetstream.streams import CAS_ATTEMPTS, QueueUnavailable, Streams, kv_get
from runtime.events.queue import CallbackState, CallRecord, Message, Result, State


class CallRecords:
    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    @property
    def _bucket(self) -> KeyValue:
        return self._streams.bucket("calls")

    def _encode(self, entry: codec.CallEntry) -> bytes:
        return codec.encode_call(entry, self._streams.connection.max_payload)

    async def get(self, call_id: str) -> tuple[codec.CallEntry, int] | None:
        """The record and its revision; None when absent or the id cannot be a key."""
        try:
            found = await kv_get(self._bucket, call_id)
        except InvalidKeyError:
            return None
        return (codec.decode_call(found[0]), found[1]) if found else None

    async def create(self, call_id: str, entry: codec.CallEntry) -> int:
        return await self._bucket.create(call_id, self._encode(entry))

    async def update(self, call_id: str, entry: codec.CallEntry, last: int) -> int:
        return await self._bucket.update(call_id, self._encode(entry), last=last)

    async def put(self, call_id: str, entry: codec.CallEntry) -> None:
        await self._bucket.put(call_id, self._encode(entry))

    async def delete(self, call_id: str) -> None:
        await self._bucket.delete(call_id)

    async def record(self, call_id: str) -> CallRecord | None:
        found = await self.get(call_id)
        return found[0].record(call_id) if found else None

    async def lease(
        self,
        held: Held,
        message: Message,
        function: str,
        now: float,
        owe_callback: Callable[[str, int], Awaitable[None]],
    ) -> bool:
        """Mark the call leased under `held` (writing its record if the enqueue has not yet).

        False when the call is over (cancelled or finished): a callback it
        still owes is queued again, in case the finish that owed it crashed.
        """
        seq = held.msg.metadata.sequence.stream
        for _ in range(CAS_ATTEMPTS):
            found = await self.get(message.id)
            try:
                if found is None:
                    entry = replace(
                        codec.new_call(message, function, seq),
                        state=State.LEASED,
                        attempts=held.attempt,
                        started_at=now,
                    )
                    revision = await self.create(message.id, entry)
                else:
                    current, last = found
                    if current.finished:
                        if current.callback_state is CallbackState.PENDING:
                            await owe_callback(message.id, last)
                        return False
                    entry = replace(
                        current,
                        state=State.LEASED,
                        attempts=held.attempt,
                        started_at=current.started_at or now,
                        seq=seq,
                    )
                    revision = await self.update(message.id, entry, last)
            except KeyWrongLastSequenceError:
                continue
            held.call, held.revision = entry, revision
            return True
        raise QueueUnavailable(f"the record of call {message.id} keeps changing under this lease")

    async def finish(
        self, held: Held, message: Message, state: State, result: Result, now: float
    ) -> int | None:
        """Record the outcome; the new revision, or None if the lease was lost meanwhile."""
        assert held.call is not None
        owed = message.callback_url is not None
        entry = replace(
            held.call,
            state=state,
            finished_at=now,
            result=result,
            callback_state=CallbackState.PENDING if owed else None,
            callback_attempts=0,
            callback_status=None,
            callback_error=None,
        )
        try:
            return await self.update(message.id, entry, held.revision)
        except KeyWrongLastSequenceError:
            return None

    async def put_back(self, held: Held, call_id: str, due_at: float, attempts: int) -> bool:
        """Record the call pending again; False if the lease was lost meanwhile."""
        assert held.call is not None
        entry = replace(held.call, state=State.PENDING, due_at=due_at, attempts=attempts)
        try:
            await self.update(call_id, entry, held.revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def cancel(self, call_id: str, now: float) -> State | None:
        for _ in range(CAS_ATTEMPTS):
            found = await self.get(call_id)
            if found is None:
                return None
            entry, last = found
            if entry.state is not State.PENDING:
                return entry.state
            cancelled = replace(entry, state=State.CANCELLED, finished_at=now)
            try:
                await self.update(call_id, cancelled, last)
            except KeyWrongLastSequenceError:
                continue
            # a gateway fetching it meanwhile finds the record cancelled and acknowledges it
            with contextlib.suppress(APIError):
                stream = names.stream(self._streams.project, entry.function)
                if await self._streams.js.delete_msg(stream, entry.seq):
                    track = self._streams.track(entry.function)
                    if track.retries.pop(entry.seq, None) is not None or entry.attempts:
                        track.change(unacked=-1)
                    else:
                        track.change(undelivered=-1)
            return State.CANCELLED
        return None
