"""The durable queue on NATS JetStream, shared by every gateway of a project.

Layout (names from jetstream_names.py; `P` the project, `F` a function):

    stream faas_P_F            work queue, subject faas.P.F, one message per delivery;
                               durable pull consumer `workers`, explicit ack,
                               ack_wait = the lease time
    stream faas_P__callbacks   work queue of owed callbacks (payload: the call id)
    stream faas_P_dead         dead letters, subjects faas.P._dead.F
    KV faas_P_calls            async-call records, by call id (TTL: result retention)
    KV faas_P_cron             when each schedule last fired
    KV faas_P_released         how often a delivery was put back uncounted

A delivery's id is its message's sequence in its function's stream; a dead
letter's id is its sequence in the dead-letter stream. Leasing is a
`no_wait` pull from the consumer, so gateways share the work and JetStream
never hands one message to two of them while its ack_wait runs. `finish`
acknowledges (after writing the call record, the dead letter and the owed
callback, so a crash repeats work rather than loses it), `retry` and
`release` nak with the delay, and a gateway killed mid-delivery loses
nothing: the server redelivers whatever it held once ack_wait runs out.

What differs from SqliteQueue, and why:

- Atomicity. JetStream 2.9 has no multi-message transaction. `enqueue`
  publishes one message per function and, if one fails, deletes those
  already stored; a consumer may have fetched one in that instant, so a
  refused fan-out can still reach some subscribers. A call's record is
  written after its message; a lease that finds none writes it.
- Limits. `max_backlog` is checked against the counts in memory, which
  are exact for this gateway's own work and refreshed from the server
  every `refresh_interval`; several gateways publishing into a nearly
  full function at once can overshoot it by what they stored in that
  interval. (A stream `max_msgs` would be exact, but lowering it on a
  reload deletes stored messages, even with DiscardNew.)
- Attempts. JetStream counts every delivery; the attempt number is that
  count minus the releases recorded in the `released` bucket. Consumer
  `max_deliver` is unlimited and there is no consumer `BackOff`: a BackOff
  list replaces ack_wait as the redelivery timer of leased messages, and a
  message past max_deliver stays in a work-queue stream, undelivered and
  never dead-lettered. Backoff and dead-lettering are decided by the worker
  with the function's retry policy (retry.py), exactly as with SQLite.
- Crash recovery. A dead gateway's deliveries come back after their lease
  time (ack_wait), not at the next start; `open` cannot tell them apart
  from a live gateway's. `close` naks what it still holds, so a clean
  stop hands its work back at once (each counts as an attempt, as a
  lease does in SQLite).
- Counts. `pending` is exact for never-delivered work (server count plus
  local changes) and counts retries only where they were put back; in
  `counts()` a retry waiting for its delay shows as `leased`, and finished
  work is not counted (acknowledged messages leave the stream).
- Retention. Call records expire `retention` seconds after their last
  change (the bucket's TTL does `purge`'s work), dead calls' too: a dead
  letter keeps its message, but `call()` forgets it after retention.
- Sizes. A message must fit the server's `max_payload` (1 MiB unless
  configured): larger bodies are refused with PayloadTooLarge; a call
  result that does not fit is cut, and its error says so.
- Cron. Every gateway runs the scheduler; a firing is published with a
  message id derived from the schedule and time, so JetStream's duplicate
  window keeps one, and `last_fired` only moves forward (compare-and-set).

Times (`now`, `due_at`) are epoch seconds from each gateway's clock; they
decide local lease bookkeeping only, while redelivery and delays run on
the server's timers, so gateways' clocks need only NTP-level agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from runtime.errors import FaasError, PayloadTooLarge, QueueFull
from runtime.events import jetstream_codec as codec
from runtime.events import jetstream_names as names
from runtime.events.jetstream_track import Track
from runtime.events.queue import (
    CallbackJob,
    CallbackState,
    CallRecord,
    DeadLetter,
    Delivery,
    Kind,
    Message,
    Result,
    State,
)

log = logging.getLogger("faas.queue")

CALLBACKS = "_callbacks"
"""The callback stream's key where a function's name goes (`_` never occurs in one)."""
DEFAULT_LEASE = 90.0
REFRESH_INTERVAL = 0.3
POLL_INTERVAL = 1.0
DISCOVER_EVERY = 10
"""Refreshes between listings of the project's streams (to find work other gateways stored)."""
FETCH_TIMEOUT = 2.0
RETRY_SKEW = 1.0
RELEASE_MEMORY = 7 * 24 * 3600.0
CAS_ATTEMPTS = 8
HEADROOM = 1024
"""Bytes of a published message that are not payload or our headers (subject, NATS headers)."""
_FUNCTION = re.compile(r"[a-z][a-z0-9-]*\Z")
_STREAM_EXISTS = 10058


class QueueUnavailable(FaasError):
    pass


@dataclass(slots=True)
class _Held:
    """A message this gateway leased: what `finish`, `retry` and `release` act on."""

    msg: Msg
    attempt: int
    lease_until: float
    releases: int
    call: codec.CallEntry | None = None
    revision: int = 0
    """The call record's revision, for compare-and-set."""


class JetStreamQueue:
    def __init__(
        self,
        url: str,
        project: str,
        *,
        retention: float = 3600.0,
        lease_time: float = DEFAULT_LEASE,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = REFRESH_INTERVAL,
        poll_interval: float = POLL_INTERVAL,
        name: str = "faas-gateway",
    ) -> None:
        self.url = url
        self.project = project
        self.on_due: Callable[[str], None] = lambda function: None
        self._retention = retention
        self._lease_time = lease_time
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._poll = poll_interval
        self._name = name
        self._nc: Client | None = None
        self._js_context: JetStreamContext | None = None
        self._buckets: dict[str, KeyValue] = {}
        self._tracks: dict[str, Track] = {}
        self._ack_wait: dict[str, float] = {}
        self._held: dict[tuple[str, int], _Held] = {}
        self._reserved: Counter[str] = Counter()
        self._fetching: dict[str, asyncio.Lock] = {}
        self._refresher: asyncio.Task[None] | None = None

    # -- lifetime ----------------------------------------------------------------

    async def open(self, now: float) -> None:
        """Connect and create what is missing; a dead predecessor's leases lapse on the server.

        Opening an open queue does nothing (the gateway opens it before it deploys).
        """
        if self._nc is not None:
            return
        try:
            self._nc = await nats.connect(
                self.url,
                name=self._name,
                connect_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
            )
        except (OSError, nats.errors.Error) as exc:
            raise QueueUnavailable(
                f"cannot reach NATS at {self.url} ({exc}); start `nats-server -js` there "
                "or set cluster.nats_url"
            ) from exc
        try:
            self._js_context = self._nc.jetstream()
            for purpose, ttl in (
                ("calls", self._retention),
                ("cron", 0.0),
                ("released", RELEASE_MEMORY),
            ):
                self._buckets[purpose] = await self._bucket(
                    names.bucket(self.project, purpose), ttl
                )
            await self._ensure_stream(
                StreamConfig(
                    name=names.dead_letter_stream(self.project),
                    subjects=[self._dead_subject("*")],
                    storage=StorageType.FILE,
                )
            )
            await self._ensure(CALLBACKS)
            await self._discover()
            await self._refresh()
        except BaseException:
            await self._nc.close()
            raise
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def close(self) -> None:
        """Hand back what this gateway still holds (nak), then disconnect."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._nc is None:
            return
        for held in self._held.values():
            with contextlib.suppress(Exception):
                await held.msg.nak()
        self._held.clear()
        with contextlib.suppress(Exception):
            await self._nc.drain()
        await self._nc.close()
        self._nc = None

    @property
    def connection(self) -> Client:
        """The open NATS connection, which other users of the same server may share."""
        if self._nc is None:
            raise RuntimeError("the JetStream queue is not open")
        return self._nc

    @property
    def _js(self) -> JetStreamContext:
        if self._js_context is None:
            raise RuntimeError("the JetStream queue is not open")
        return self._js_context

    # -- counts from memory --------------------------------------------------------

    def pending(self, function: str) -> int:
        track = self._tracks.get(function)
        return track.pending(self._clock()) if track else 0

    def backlog(self, function: str) -> int:
        track = self._tracks.get(function)
        return (track.stored() if track else 0) + self._reserved[function]

    def earliest_due(self) -> dict[str, float]:
        due = {key: track.next_due() for key, track in self._tracks.items() if key != CALLBACKS}
        return {key: at for key, at in due.items() if at is not None}

    def next_callback_due(self) -> float | None:
        return self._track(CALLBACKS).next_due()

    # -- storing -----------------------------------------------------------------------

    async def enqueue(
        self, message: Message, functions: Sequence[str], limits: Mapping[str, int]
    ) -> None:
        await self._store(message, functions, limits, message.id)

    async def _store(
        self,
        message: Message,
        functions: Sequence[str],
        limits: Mapping[str, int],
        dedup_id: str,
    ) -> None:
        self._check_size(message)
        for function in functions:
            stored, limit = self.backlog(function), limits[function]
            if stored >= limit:
                raise QueueFull(
                    f"{function} has {stored} events and async calls stored and not yet "
                    f"delivered, its limit (max_backlog); retry later",
                    retry_after=1.0,
                )
        self._reserved.update(functions)
        stored_in: list[tuple[str, int]] = []
        try:
            for function in functions:
                await self._ensure(function)
                ack = await self._js.publish(
                    names.subject(self.project, function),
                    message.body,
                    headers=codec.message_headers(message, dedup_id),
                )
                if ack.duplicate:
                    continue  # stored before, by another gateway's firing or a retried publish
                stored_in.append((function, ack.seq))
                if message.kind is Kind.CALL:
                    entry = codec.new_call(message, function, ack.seq)
                    with contextlib.suppress(KeyWrongLastSequenceError):  # a lease wrote it
                        await self._calls.create(message.id, self._encode(entry))
        except BaseException:
            await self._withdraw(stored_in)
            raise
        finally:
            self._reserved.subtract(functions)
        for function, _ in stored_in:
            self._track(function).change(undelivered=1)
        for function in dict.fromkeys(function for function, _ in stored_in):
            self._track(function).quiet_until = 0.0
            self.on_due(function)

    def _check_size(self, message: Message) -> None:
        assert self._nc is not None
        limit = self._nc.max_payload
        size = len(message.body) + len(
            codec.message_headers(message, message.id)[codec.MESSAGE_HEADER]
        )
        if size + HEADROOM > limit:
            raise PayloadTooLarge(
                f"the message ({size} bytes with its metadata) exceeds the NATS server's "
                f"max_payload ({limit} bytes); raise max_payload in the nats-server configuration"
            )

    async def _withdraw(self, stored_in: list[tuple[str, int]]) -> None:
        for function, seq in stored_in:
            try:
                await self._js.delete_msg(names.stream(self.project, function), seq)
            except Exception:
                log.exception(
                    "could not withdraw part of a refused publish",
                    extra={"function": function, "seq": seq},
                )

    async def fire(
        self, function: str, schedule: str, scheduled_at: float, message: Message, limit: int
    ) -> bool:
        """Publish the firing (deduplicated across gateways), then move `last_fired` forward."""
        key = _cron_key(function, schedule)
        last = await self.last_fired(function, schedule)
        if last is not None and last >= scheduled_at:
            return True  # another gateway fired it
        stored = True
        try:
            await self._store(
                message, [function], {function: limit}, f"cron.{key}.{scheduled_at!r}"
            )
        except QueueFull:
            stored = False
        for _ in range(CAS_ATTEMPTS):
            entry = await _get(self._buckets["cron"], key)
            if entry is not None and float(entry[0]) >= scheduled_at:
                break
            with contextlib.suppress(KeyWrongLastSequenceError):
                value = repr(scheduled_at).encode()
                if entry is None:
                    await self._buckets["cron"].create(key, value)
                else:
                    await self._buckets["cron"].update(key, value, last=entry[1])
                break
        return stored

    async def last_fired(self, function: str, schedule: str) -> float | None:
        entry = await _get(self._buckets["cron"], _cron_key(function, schedule))
        return float(entry[0]) if entry else None

    # -- delivering --------------------------------------------------------------------

    async def lease(
        self, function: str, limit: int, now: float, lease_for: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        await self._ensure(function, lease_for)
        messages = await self._fetch(function, limit, now)
        deliveries = []
        for msg in messages:
            try:
                delivery = await self._take(function, msg, now, lease_for)
            except Exception:
                log.exception(
                    "leasing a message failed; it is redelivered", extra={"function": function}
                )
                with contextlib.suppress(Exception):
                    await msg.nak()
                continue
            if delivery is not None:
                deliveries.append(delivery)
        return deliveries

    async def _fetch(self, key: str, limit: int, now: float) -> list[Msg]:
        track = self._track(key)
        lock = self._fetching.setdefault(key, asyncio.Lock())
        messages: list[Msg] = []
        try:
            async with lock:
                messages = await self._pull(names.stream(self.project, key), limit)
        finally:
            track.fetched(limit, len(messages), now, self._poll, RETRY_SKEW)
        for msg in messages:
            if msg.metadata.num_delivered == 1:
                track.change(undelivered=-1, unacked=1)
            track.retries.pop(msg.metadata.sequence.stream, None)
        return messages

    async def _pull(self, stream: str, batch: int) -> list[Msg]:
        """One `no_wait` pull request: what is available now, never a request left lingering."""
        assert self._nc is not None
        inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(inbox)
        try:
            request = json.dumps({"batch": batch, "no_wait": True}).encode()
            await self._nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{names.CONSUMER}", request, reply=inbox
            )
            messages: list[Msg] = []
            while len(messages) < batch:
                try:
                    msg = await subscription.next_msg(timeout=FETCH_TIMEOUT)
                except nats.errors.TimeoutError:
                    break
                status = (msg.headers or {}).get("Status")
                if status:
                    if status not in ("404", "408"):
                        log.warning(
                            "pull request refused",
                            extra={"stream": stream, "status": status, "data": msg.headers},
                        )
                    break
                messages.append(msg)
            return messages
        finally:
            await subscription.unsubscribe()

    async def _take(self, function: str, msg: Msg, now: float, lease_for: float) -> Delivery | None:
        track = self._track(function)
        seq, delivered = msg.metadata.sequence.stream, msg.metadata.num_delivered
        try:
            message = codec.message_from(msg.headers, msg.data)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropped an unreadable message", extra={"seq": seq, "error": str(exc)})
            await msg.ack()
            track.change(unacked=-1)
            return None
        releases = 0
        if delivered > 1:
            entry = await _get(self._buckets["released"], _delivery_key(function, seq))
            releases = int(entry[0]) if entry else 0
        held = _Held(msg, delivered - releases, now + lease_for, releases)
        if message.kind is Kind.CALL and not await self._lease_call(held, message, function, now):
            await msg.ack()  # cancelled or finished already
            track.change(unacked=-1)
            return None
        self._held[(function, seq)] = held
        track.held += 1
        due_at = held.call.due_at if held.call else message.created_at
        return Delivery(seq, function, held.attempt, due_at, message)

    async def _lease_call(self, held: _Held, message: Message, function: str, now: float) -> bool:
        seq = held.msg.metadata.sequence.stream
        for _ in range(CAS_ATTEMPTS):
            found = await self._call_entry(message.id)
            try:
                if found is None:
                    entry = replace(
                        codec.new_call(message, function, seq),
                        state=State.LEASED,
                        attempts=held.attempt,
                        started_at=now,
                    )
                    revision = await self._calls.create(message.id, self._encode(entry))
                else:
                    current, last = found
                    if current.finished:
                        if current.callback_state is CallbackState.PENDING:
                            await self._owe_callback(message.id, last)
                        return False
                    entry = replace(
                        current,
                        state=State.LEASED,
                        attempts=held.attempt,
                        started_at=current.started_at or now,
                        seq=seq,
                    )
                    revision = await self._calls.update(message.id, self._encode(entry), last=last)
            except KeyWrongLastSequenceError:
                continue
            held.call, held.revision = entry, revision
            return True
        raise QueueUnavailable(f"the record of call {message.id} keeps changing under this lease")

    def _hold(self, delivery: Delivery, now: float) -> _Held | None:
        """The delivery's lease if this gateway still has it, else None (it went elsewhere)."""
        held = self._held.get((delivery.function, delivery.id))
        if held is None or held.attempt != delivery.attempt:
            return None
        if now >= held.lease_until:
            self._drop_held(delivery.function, delivery.id)
            return None
        return held

    def _drop_held(self, function: str, seq: int) -> None:
        if self._held.pop((function, seq), None) is not None:
            self._track(function).held -= 1

    async def finish(self, delivery: Delivery, state: State, result: Result, now: float) -> bool:
        assert state in (State.DONE, State.DEAD)
        held = self._hold(delivery, now)
        if held is None:
            return False
        message = delivery.message
        if held.call is not None:
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
                revision = await self._calls.update(
                    message.id, self._encode(entry), last=held.revision
                )
            except KeyWrongLastSequenceError:
                self._drop_held(delivery.function, delivery.id)
                return False
        if state is State.DEAD:
            info = codec.DeadInfo(
                delivery.function, delivery.attempt, result.status, result.error, now
            )
            await self._js.publish(
                self._dead_subject(delivery.function),
                message.body,
                headers=codec.dead_headers(message, info, f"{delivery.function}.{delivery.id}"),
            )
        if held.call is not None and message.callback_url is not None:
            await self._owe_callback(message.id, revision)
        await held.msg.ack_sync()
        self._drop_held(delivery.function, delivery.id)
        self._track(delivery.function).change(unacked=-1)
        return True

    async def retry(self, delivery: Delivery, result: Result, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, count_attempt=True)

    async def release(self, delivery: Delivery, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, count_attempt=False)

    async def _put_back(self, delivery: Delivery, due_at: float, *, count_attempt: bool) -> bool:
        now = self._clock()
        held = self._hold(delivery, now)
        if held is None:
            return False
        if not count_attempt:
            key = _delivery_key(delivery.function, delivery.id)
            await self._buckets["released"].put(key, str(held.releases + 1).encode())
        if held.call is not None:
            attempts = delivery.attempt if count_attempt else delivery.attempt - 1
            entry = replace(held.call, state=State.PENDING, due_at=due_at, attempts=attempts)
            try:
                await self._calls.update(
                    delivery.message.id, self._encode(entry), last=held.revision
                )
            except KeyWrongLastSequenceError:
                self._drop_held(delivery.function, delivery.id)
                return False
        await held.msg.nak(delay=max(due_at - now, 0.0))
        self._drop_held(delivery.function, delivery.id)
        self._track(delivery.function).retries[delivery.id] = due_at
        self.on_due(delivery.function)
        return True

    async def reclaim_expired(self, now: float) -> int:
        """Forget leases that ran out here; the server redelivers them (ack_wait) by itself."""
        expired = [key for key, held in self._held.items() if held.lease_until < now]
        for function, seq in expired:
            self._drop_held(function, seq)
        return len(expired)

    # -- async calls -------------------------------------------------------------------

    @property
    def _calls(self) -> KeyValue:
        return self._buckets["calls"]

    def _encode(self, entry: codec.CallEntry) -> bytes:
        assert self._nc is not None
        return codec.encode_call(entry, self._nc.max_payload)

    async def _call_entry(self, call_id: str) -> tuple[codec.CallEntry, int] | None:
        try:
            found = await _get(self._calls, call_id)
        except InvalidKeyError:
            return None
        return (codec.decode_call(found[0]), found[1]) if found else None

    async def cancel(self, call_id: str, now: float) -> State | None:
        for _ in range(CAS_ATTEMPTS):
            found = await self._call_entry(call_id)
            if found is None:
                return None
            entry, last = found
            if entry.state is not State.PENDING:
                return entry.state
            cancelled = replace(entry, state=State.CANCELLED, finished_at=now)
            try:
                await self._calls.update(call_id, self._encode(cancelled), last=last)
            except KeyWrongLastSequenceError:
                continue
            # a gateway fetching it meanwhile finds the record cancelled and acknowledges it
            with contextlib.suppress(APIError):
                if await self._js.delete_msg(names.stream(self.project, entry.function), entry.seq):
                    track = self._track(entry.function)
                    if track.retries.pop(entry.seq, None) is not None or entry.attempts:
                        track.change(unacked=-1)
                    else:
                        track.change(undelivered=-1)
            return State.CANCELLED
        return None

    async def call(self, call_id: str) -> CallRecord | None:
        found = await self._call_entry(call_id)
        return found[0].record(call_id) if found else None

    # -- dead letters ------------------------------------------------------------------

    async def dead_letters(
        self, function: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        stream = names.dead_letter_stream(self.project)
        subject = self._dead_subject(function or "*")
        letters: list[DeadLetter] = []
        seq = 1
        while len(letters) < limit:
            try:
                raw = await self._js.get_msg(stream, seq=seq, subject=subject, next=True)
            except NotFoundError:
                break
            seq = raw.seq or seq
            letters.append(codec.dead_letter_from(seq, raw.headers))
            seq += 1
        return letters

    async def _dead_letter(self, delivery_id: int) -> tuple[Message, DeadLetter] | None:
        stream = names.dead_letter_stream(self.project)
        try:
            raw = await self._js.get_msg(stream, seq=delivery_id)
        except NotFoundError:
            return None
        return codec.message_from(raw.headers, raw.data), codec.dead_letter_from(
            delivery_id, raw.headers
        )

    async def replay(self, delivery_id: int, now: float) -> bool:
        """Publish the dead letter's message again (attempts start afresh), then remove it."""
        found = await self._dead_letter(delivery_id)
        if found is None:
            return False
        message, letter = found
        function = letter.function
        if message.kind is Kind.CALL:
            entry = replace(codec.new_call(message, function, 0), due_at=now)
            await self._calls.put(message.id, self._encode(entry))
        await self._ensure(function)
        ack = await self._js.publish(
            names.subject(self.project, function),
            message.body,
            headers=codec.message_headers(message, f"replay.{delivery_id}"),
        )
        if message.kind is Kind.CALL:
            found_call = await self._call_entry(message.id)
            if found_call is not None and found_call[0].seq == 0:
                with contextlib.suppress(KeyWrongLastSequenceError):  # leased already
                    entry = replace(found_call[0], seq=ack.seq)
                    await self._calls.update(message.id, self._encode(entry), last=found_call[1])
        with contextlib.suppress(APIError):
            await self._js.delete_msg(names.dead_letter_stream(self.project), delivery_id)
        if not ack.duplicate:
            self._track(function).change(undelivered=1)
        self._track(function).quiet_until = 0.0
        self.on_due(function)
        return True

    async def drop(self, delivery_id: int) -> bool:
        found = await self._dead_letter(delivery_id)
        if found is None:
            return False
        message, _ = found
        try:
            deleted = await self._js.delete_msg(names.dead_letter_stream(self.project), delivery_id)
        except APIError:
            return False
        if deleted and message.kind is Kind.CALL:
            with contextlib.suppress(APIError):
                await self._calls.delete(message.id)
        return bool(deleted)

    # -- callbacks ---------------------------------------------------------------------

    async def _owe_callback(self, call_id: str, revision: int) -> None:
        """Queue a callback job; the id makes a repeat of the same finish a duplicate."""
        await self._ensure(CALLBACKS)
        ack = await self._js.publish(
            names.subject(self.project, CALLBACKS),
            call_id.encode(),
            headers={codec.DEDUP_HEADER: f"{call_id}.{revision}"},
        )
        if not ack.duplicate:
            self._track(CALLBACKS).change(undelivered=1)
            self._track(CALLBACKS).quiet_until = 0.0

    async def lease_callbacks(self, now: float, limit: int, lease_for: float) -> list[CallbackJob]:
        if limit <= 0:
            return []
        await self._ensure(CALLBACKS, lease_for)
        track = self._track(CALLBACKS)
        jobs = []
        for msg in await self._fetch(CALLBACKS, limit, now):
            call_id = msg.data.decode()
            seq = msg.metadata.sequence.stream
            found = await self._call_entry(call_id)
            if found is None or found[0].callback_state is not CallbackState.PENDING:
                await msg.ack()
                track.change(unacked=-1)
                continue
            entry, last = found
            url, result = entry.callback_url, entry.result
            if url is None or result is None:
                await msg.ack()
                track.change(unacked=-1)
                continue
            attempt = entry.callback_attempts + 1
            entry = replace(entry, callback_attempts=attempt)
            try:
                revision = await self._calls.update(call_id, self._encode(entry), last=last)
            except KeyWrongLastSequenceError:
                await msg.nak()
                continue
            self._held[(CALLBACKS, seq)] = _Held(msg, attempt, now + lease_for, 0, entry, revision)
            track.held += 1
            jobs.append(
                CallbackJob(
                    delivery_id=seq,
                    call_id=call_id,
                    function=entry.function,
                    url=url,
                    attempt=attempt,
                    lease_until=now + lease_for,
                    result=result,
                    state=entry.state,
                )
            )
        return jobs

    async def callback_finished(
        self,
        job: CallbackJob,
        state: CallbackState | None,
        status: int | None,
        error: str | None,
        due_at: float,
    ) -> None:
        held = self._held.get((CALLBACKS, job.delivery_id))
        if held is None or held.call is None or held.attempt != job.attempt:
            return
        self._drop_held(CALLBACKS, job.delivery_id)
        entry = replace(
            held.call,
            callback_state=state or CallbackState.PENDING,
            callback_status=status,
            callback_error=error,
        )
        try:
            await self._calls.update(job.call_id, self._encode(entry), last=held.revision)
        except KeyWrongLastSequenceError:
            return  # its lease ran out and another sender took it
        if state is None:
            await held.msg.nak(delay=max(due_at - self._clock(), 0.0))
            self._track(CALLBACKS).retries[job.delivery_id] = due_at
        else:
            await held.msg.ack()
            self._track(CALLBACKS).change(unacked=-1)

    # -- housekeeping ------------------------------------------------------------------

    async def purge(self, before: float) -> int:
        """Nothing to do: finished messages leave their streams, call records expire (TTL)."""
        return 0

    async def counts(self) -> dict[str, dict[str, int]]:
        counted: dict[str, dict[str, int]] = {}
        for function in [key for key in self._tracks if key != CALLBACKS]:
            try:
                info = await self._js.consumer_info(
                    names.stream(self.project, function), names.CONSUMER
                )
            except NotFoundError:
                continue
            states = {"pending": info.num_pending or 0, "leased": info.num_ack_pending or 0}
            counted[function] = {state: n for state, n in states.items() if n}
        dead = await self._js.stream_info(
            names.dead_letter_stream(self.project), subjects_filter=self._dead_subject("*")
        )
        for subject, n in (dead.state.subjects or {}).items():
            counted.setdefault(subject.rsplit(".", 1)[1], {})["dead"] = n
        return {function: states for function, states in counted.items() if states}

    # -- streams, consumers, buckets ---------------------------------------------------

    def _track(self, key: str) -> Track:
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = Track()
        return track

    def _dead_subject(self, function: str) -> str:
        return f"faas.{self.project}._dead.{function}"

    async def _ensure(self, key: str, lease_for: float | None = None) -> None:
        """The stream and consumer of a function (or of callbacks), ack_wait = the lease time."""
        ack_wait = lease_for or self._ack_wait.get(key, self._lease_time)
        if self._ack_wait.get(key) == ack_wait:
            return
        stream = names.stream(self.project, key)
        if key not in self._ack_wait:
            await self._ensure_stream(
                StreamConfig(
                    name=stream,
                    subjects=[names.subject(self.project, key)],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                )
            )
        await self._js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=names.CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait,
                max_deliver=-1,
                max_ack_pending=-1,
            ),
        )
        self._ack_wait[key] = ack_wait
        self._track(key)

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            await self._js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_EXISTS:
                raise
            log.warning(
                "stream exists with another configuration; using it as it is",
                extra={"stream": config.name, "error": exc.description},
            )

    async def _bucket(self, bucket: str, ttl: float) -> KeyValue:
        try:
            return await self._js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self._js.create_key_value(
                bucket=bucket, history=1, ttl=ttl or None, storage=StorageType.FILE
            )
        except BadRequestError:
            return await self._js.key_value(bucket)  # another gateway created it meanwhile

    async def _discover(self) -> None:
        """Find the functions whose streams exist: work another gateway stored is due here too."""
        assert self._nc is not None
        offset = 0
        prefix = names.stream(self.project, "")
        while True:
            request = json.dumps({"subject": names.subject(self.project, "*"), "offset": offset})
            answer = json.loads(
                (await self._nc.request("$JS.API.STREAM.NAMES", request.encode())).data
            )
            found = answer.get("streams") or []
            for stream in found:
                key = stream[len(prefix) :] if stream.startswith(prefix) else ""
                if _FUNCTION.match(key) or key == CALLBACKS:
                    self._track(key)
            offset += len(found)
            if not found or offset >= answer.get("total", 0):
                return

    async def _refresh_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self._refresh_interval)
            rounds += 1
            try:
                if rounds % DISCOVER_EVERY == 0:
                    await self._discover()
                await self._refresh()
            except Exception as exc:
                log.warning("refreshing queue counts failed", extra={"error": repr(exc)})

    async def _refresh(self) -> None:
        await asyncio.gather(*(self._refresh_one(key) for key in list(self._tracks)))

    async def _refresh_one(self, key: str) -> None:
        track = self._tracks[key]
        before = track.waiting()
        track.begin_refresh()
        try:
            info = await self._js.consumer_info(names.stream(self.project, key), names.CONSUMER)
        except NotFoundError:
            track.abort_refresh()
            return
        except BaseException:
            track.abort_refresh()
            raise
        track.end_refresh(info.num_pending or 0, info.num_ack_pending or 0)
        if track.waiting() > before or (track.waiting() and track.quiet_until):
            track.quiet_until = 0.0
            if key != CALLBACKS:
                self.on_due(key)


def _cron_key(function: str, schedule: str) -> str:
    return f"{function}.{hashlib.sha256(schedule.encode()).hexdigest()[:32]}"


def _delivery_key(function: str, seq: int) -> str:
    return f"{function}.{seq}"


async def _get(bucket: KeyValue, key: str) -> tuple[bytes, int] | None:
    """A key's value and revision, or None when absent, deleted or expired."""
    try:
        entry = await bucket.get(key)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.revision is None:
        return None
    return entry.value, entry.revision
