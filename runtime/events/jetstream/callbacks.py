"""Owed callbacks as a work queue of their own (`_callbacks`), leased like deliveries.

A stream, rather than a scan of call records, lets the gateways share the
sending and survive a crash mid-send (the server redelivers after the
lease). The message is only the call id: the job's progress (attempts,
outcome) lives in the call record, where `call()` shows it, and a job whose
record is gone or no longer owes a callback is acknowledged and dropped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from nats.aio.msg import Msg
from nats.js.errors import KeyWrongLastSequenceError

from runtime.events.jetstream import codec, names
from runtime.events.jetstream.calls import CallRecords
from runtime.events.jetstream.held import Held, Holdings
from runtime.events.jetstream.streams import CALLBACKS, Streams
from runtime.events.queue import CallbackJob, CallbackState

log = logging.getLogger("faas.queue")


class Callbacks:
    def __init__(
        self,
        streams: Streams,
        held: Holdings,
        calls: CallRecords,
        clock: Callable[[], float],
    ) -> None:
        self._streams = streams
        self._held = held
        self._calls = calls
        self._clock = clock

    def next_due(self) -> float | None:
        return self._streams.track(CALLBACKS).next_due()

    async def owe(self, call_id: str, revision: int) -> None:
        """Queue a callback job; the id makes a repeat of the same finish a duplicate."""
        await self._streams.ensure(CALLBACKS)
        ack = await self._streams.js.publish(
            names.subject(self._streams.project, CALLBACKS),
            call_id.encode(),
            headers={codec.DEDUP_HEADER: f"{call_id}.{revision}"},
        )
        if not ack.duplicate:
            self._streams.track(CALLBACKS).change(undelivered=1)
            self._streams.track(CALLBACKS).quiet_until = 0.0

    async def lease(self, now: float, limit: int, lease_for: float) -> list[CallbackJob]:
        """Lease owed callbacks; each message on its own, so a bad one holds up none of the rest."""
        if limit <= 0:
            return []
        await self._streams.ensure(CALLBACKS, lease_for)
        jobs = []
        for msg in await self._streams.fetch(CALLBACKS, limit, now):
            try:
                job = await self._take(msg, now, lease_for)
            except Exception:
                log.exception("leasing a callback failed; it is redelivered")
                with contextlib.suppress(Exception):
                    await msg.nak()
                continue
            if job is not None:
                jobs.append(job)
        return jobs

    async def _take(self, msg: Msg, now: float, lease_for: float) -> CallbackJob | None:
        track = self._streams.track(CALLBACKS)
        seq = msg.metadata.sequence.stream
        try:
            call_id = msg.data.decode()
            found = await self._calls.get(call_id)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropped an unreadable callback job", extra={"seq": seq, "error": str(exc)})
            await msg.ack()
            track.change(unacked=-1)
            return None
        if found is None or found[0].callback_state is not CallbackState.PENDING:
            await msg.ack()
            track.change(unacked=-1)
            return None
        entry, last = found
        url, result = entry.callback_url, entry.result
        if url is None or result is None:
            await msg.ack()
            track.change(unacked=-1)
            return None
        attempt = entry.callback_attempts + 1
        entry = replace(entry, callback_attempts=attempt)
        try:
            revision = await self._calls.update(call_id, entry, last)
        except KeyWrongLastSequenceError:
            await msg.nak()
            return None
        self._held.add(CALLBACKS, seq, Held(msg, attempt, now + lease_for, 0, entry, revision))
        return CallbackJob(
            delivery_id=seq,
            call_id=call_id,
            function=entry.function,
            url=url,
            attempt=attempt,
            lease_until=now + lease_for,
            result=result,
            state=entry.state,
        )

    async def finished(
        self,
        job: CallbackJob,
        state: CallbackState | None,
        status: int | None,
        error: str | None,
        due_at: float,
    ) -> None:
        held = self._held.get(CALLBACKS, job.delivery_id)
        if held is None or held.call is None or held.attempt != job.attempt:
            return
        self._held.drop(CALLBACKS, job.delivery_id)
        entry = replace(
            held.call,
            callback_state=state or CallbackState.PENDING,
            callback_status=status,
            callback_error=error,
        )
        try:
            await self._calls.update(job.call_id, entry, held.revision)
        except KeyWrongLastSequenceError:
            return  # its lease ran out and another sender took it
        if state is None:
            await held.msg.nak(delay=max(due_at - self._clock(), 0.0))
            self._streams.track(CALLBACKS).retries[job.delivery_id] = due_at
        else:
            await held.msg.ack()
            self._streams.track(CALLBACKS).change(unacked=-1)
