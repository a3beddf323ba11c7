"""The durable queue on NATS JetStream, shared by every gateway of a project.

Layout (names from names.py; `P` the project, `F` a function):

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

The parts are this module's siblings, listed in the package's index
(__init__.py).

Times (`now`, `due_at`) are epoch seconds from each gateway's clock; they
decide local lease bookkeeping only, while redelivery and delays run on
the server's timers, so gateways' clocks need only NTP-level agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyWrongLastSequenceError

from runtime.errors import QueueFull
from runtime.events.jetstream import codec, cron, names
from runtime.events.jetstream.callbacks import Callbacks
from runtime.events.jetstream.calls import CallRecords
from runtime.events.jetstream.dead import DeadLetters
from runtime.events.jetstream.held import Held, Holdings, Releases
from runtime.events.jetstream.streams import CALLBACKS, Streams
from runtime.events.jetstream.streams import QueueUnavailable as QueueUnavailable  # public
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

DEFAULT_LEASE = 90.0
REFRESH_INTERVAL = 0.3
POLL_INTERVAL = 1.0
RELEASE_MEMORY = 7 * 24 * 3600.0


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
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._name = name
        self._streams = Streams(
            project,
            lease_time=lease_time,
            poll_interval=poll_interval,
            on_due=lambda function: self.on_due(function),
        )
        self._held = Holdings(self._streams.track)
        self._releases = Releases(self._streams)
        self._calls = CallRecords(self._streams)
        self._dead = DeadLetters(self._streams, self._calls)
        self._callbacks = Callbacks(self._streams, self._held, self._calls, clock)
        self._cron = cron.CronMarks(self._streams)
        self._reserved: Counter[str] = Counter()
        self._refresher: asyncio.Task[None] | None = None

    # -- lifetime ----------------------------------------------------------------

    async def open(self, now: float) -> None:
        """Connect and create what is missing; a dead predecessor's leases lapse on the server.

        Opening an open queue does nothing (the gateway opens it before it deploys);
        an open that failed leaves nothing behind, so the next one starts over.
        """
        streams = self._streams
        if streams.nc is not None:
            return
        try:
            nc = await nats.connect(
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
        streams.nc = nc
        try:
            streams.js_context = nc.jetstream()
            for purpose, ttl in (
                ("calls", self._retention),
                ("cron", 0.0),
                ("released", RELEASE_MEMORY),
            ):
                await streams.open_bucket(purpose, ttl)
            await self._dead.ensure()
            await streams.ensure(CALLBACKS)
            await streams.discover()
            await streams.refresh()
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            streams.reset()
            raise
        refresh = streams.refresh_loop(self._refresh_interval)
        self._refresher = asyncio.get_running_loop().create_task(refresh)

    async def close(self) -> None:
        """Hand back what this gateway still holds (nak), then disconnect.

        Everything made with the connection is forgotten, so calls until the next
        `open` fail with QueueUnavailable rather than a closed connection's error.
        """
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        nc = self._streams.nc
        if nc is None:
            return
        try:
            await self._held.hand_back()
            with contextlib.suppress(Exception):
                await nc.drain()
            await nc.close()
        finally:
            self._streams.reset()

    @property
    def connection(self) -> Client:
        """The open NATS connection, which other users of the same server may share."""
        return self._streams.connection

    # -- counts from memory --------------------------------------------------------

    def pending(self, function: str) -> int:
        track = self._streams.tracks.get(function)
        return track.pending(self._clock()) if track else 0

    def backlog(self, function: str) -> int:
        track = self._streams.tracks.get(function)
        return (track.stored() if track else 0) + self._reserved[function]

    def earliest_due(self) -> dict[str, float]:
        tracks = self._streams.tracks
        due = {key: track.next_due() for key, track in tracks.items() if key != CALLBACKS}
        return {key: at for key, at in due.items() if at is not None}

    def next_callback_due(self) -> float | None:
        return self._callbacks.next_due()

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
        self._streams.check_size(message)
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
                await self._streams.ensure(function)
                ack = await self._streams.js.publish(
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
                        await self._calls.create(message.id, entry)
        except BaseException:
            await self._streams.withdraw(stored_in)
            raise
        finally:
            self._reserved.subtract(functions)
        for function, _ in stored_in:
            self._streams.track(function).change(undelivered=1)
        for function in dict.fromkeys(function for function, _ in stored_in):
            self._streams.track(function).quiet_until = 0.0
            self.on_due(function)

    async def fire(
        self, function: str, schedule: str, scheduled_at: float, message: Message, limit: int
    ) -> bool:
        """Publish the firing (deduplicated across gateways), then move `last_fired` forward."""
        last = await self.last_fired(function, schedule)
        if last is not None and last >= scheduled_at:
            return True  # another gateway fired it
        stored = True
        try:
            dedup_id = cron.dedup_id(function, schedule, scheduled_at)
            await self._store(message, [function], {function: limit}, dedup_id)
        except QueueFull:
            stored = False
        await self._cron.advance(function, schedule, scheduled_at)
        return stored

    async def last_fired(self, function: str, schedule: str) -> float | None:
        return await self._cron.last_fired(function, schedule)

    # -- delivering --------------------------------------------------------------------

    async def lease(
        self, function: str, limit: int, now: float, lease_for: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        await self._streams.ensure(function, lease_for)
        messages = await self._streams.fetch(function, limit, now)
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

    async def _take(self, function: str, msg: Msg, now: float, lease_for: float) -> Delivery | None:
        track = self._streams.track(function)
        seq, delivered = msg.metadata.sequence.stream, msg.metadata.num_delivered
        try:
            message = codec.message_from(msg.headers, msg.data)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropped an unreadable message", extra={"seq": seq, "error": str(exc)})
            await msg.ack()
            track.change(unacked=-1)
            return None
        releases = await self._releases.count(function, seq) if delivered > 1 else 0
        held = Held(msg, delivered - releases, now + lease_for, releases)
        if message.kind is Kind.CALL and not await self._calls.lease(
            held, message, function, now, self._callbacks.owe
        ):
            await msg.ack()  # cancelled or finished already
            track.change(unacked=-1)
            return None
        self._held.add(function, seq, held)
        due_at = held.call.due_at if held.call else message.created_at
        return Delivery(seq, function, held.attempt, due_at, message)

    async def finish(self, delivery: Delivery, state: State, result: Result, now: float) -> bool:
        assert state in (State.DONE, State.DEAD)
        held = self._held.hold(delivery, now)
        if held is None:
            return False
        message = delivery.message
        revision: int | None = None
        if held.call is not None:
            revision = await self._calls.finish(held, message, state, result, now)
            if revision is None:
                self._held.drop(delivery.function, delivery.id)
                return False
        if state is State.DEAD:
            await self._dead.add(delivery, result, now)
        if revision is not None and message.callback_url is not None:
            await self._callbacks.owe(message.id, revision)
        await held.msg.ack_sync()
        self._held.drop(delivery.function, delivery.id)
        self._streams.track(delivery.function).change(unacked=-1)
        return True

    async def retry(self, delivery: Delivery, result: Result, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, count_attempt=True)

    async def release(self, delivery: Delivery, due_at: float) -> bool:
        return await self._put_back(delivery, due_at, count_attempt=False)

    async def _put_back(self, delivery: Delivery, due_at: float, *, count_attempt: bool) -> bool:
        now = self._clock()
        held = self._held.hold(delivery, now)
        if held is None:
            return False
        if not count_attempt:
            await self._releases.record(delivery.function, delivery.id, held.releases + 1)
        if held.call is not None:
            attempts = delivery.attempt if count_attempt else delivery.attempt - 1
            if not await self._calls.put_back(held, delivery.message.id, due_at, attempts):
                self._held.drop(delivery.function, delivery.id)
                return False
        await held.msg.nak(delay=max(due_at - now, 0.0))
        self._held.drop(delivery.function, delivery.id)
        self._streams.track(delivery.function).retries[delivery.id] = due_at
        self.on_due(delivery.function)
        return True

    async def reclaim_expired(self, now: float) -> int:
        """Forget leases that ran out here; the server redelivers them (ack_wait) by itself."""
        return self._held.expire(now)

    # -- async calls, dead letters, callbacks: their own modules -------------------------

    async def cancel(self, call_id: str, now: float) -> State | None:
        return await self._calls.cancel(call_id, now)

    async def call(self, call_id: str) -> CallRecord | None:
        return await self._calls.record(call_id)

    async def dead_letters(
        self, function: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]:
        return await self._dead.letters(function, limit)

    async def replay(self, delivery_id: int, now: float) -> bool:
        """Publish the dead letter's message again (attempts start afresh), then remove it."""
        function = await self._dead.replay(delivery_id, now)
        if function is None:
            return False
        self.on_due(function)
        return True

    async def drop(self, delivery_id: int) -> bool:
        return await self._dead.drop(delivery_id)

    async def lease_callbacks(self, now: float, limit: int, lease_for: float) -> list[CallbackJob]:
        return await self._callbacks.lease(now, limit, lease_for)

    async def callback_finished(
        self,
        job: CallbackJob,
        state: CallbackState | None,
        status: int | None,
        error: str | None,
        due_at: float,
    ) -> None:
        await self._callbacks.finished(job, state, status, error, due_at)

    # -- housekeeping ------------------------------------------------------------------

    async def purge(self, before: float) -> int:
        """Nothing to do: finished messages leave their streams, call records expire (TTL)."""
        return 0

    async def counts(self) -> dict[str, dict[str, int]]:
        counted = await self._streams.consumer_counts()
        for function, n in (await self._dead.counts()).items():
            counted.setdefault(function, {})["dead"] = n
        return {function: states for function, states in counted.items() if states}
