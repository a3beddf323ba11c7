"""The project's streams, consumers and buckets on one connection, and the counts kept of them.

Every gateway creates what is missing when it opens, so whichever starts
first makes them; a stream found with another configuration is used as it
is. `pending` and `backlog` are read on every autoscaler tick, so each
consumer's counts live in a `Track` (track.py) refreshed from the
server in the background; listing the project's streams now and then finds
functions whose work another gateway stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from runtime.errors import FaasError, PayloadTooLarge
from runtime.events.jetstream import codec, names
from runtime.events.jetstream.track import Track
from runtime.events.queue import Message

log = logging.getLogger("faas.queue")

CALLBACKS = "_callbacks"
"""The callback stream's key where a function's name goes (`_` never occurs in one)."""
DISCOVER_EVERY = 10
"""Refreshes between listings of the project's streams (to find work other gateways stored)."""
FETCH_TIMEOUT = 2.0
RETRY_SKEW = 1.0
CAS_ATTEMPTS = 8
"""Compare-and-set rounds on a KV key before giving up: other gateways write the same keys."""
HEADROOM = 1024
"""Bytes of a published message that are not payload or our headers (subject, NATS headers)."""
_FUNCTION = re.compile(r"[a-z][a-z0-9-]*\Z")
_STREAM_EXISTS = 10058


class QueueUnavailable(FaasError):
    pass


class Streams:
    """The connection (set by the queue's `open`) and what this gateway knows of each consumer."""

    def __init__(
        self,
        project: str,
        *,
        lease_time: float,
        poll_interval: float,
        on_due: Callable[[str], None],
    ) -> None:
        self.project = project
        self.nc: Client | None = None
        self.js_context: JetStreamContext | None = None
        self.buckets: dict[str, KeyValue] = {}
        self.tracks: dict[str, Track] = {}
        self._lease_time = lease_time
        self._poll = poll_interval
        self._on_due = on_due
        self._ack_wait: dict[str, float] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    @property
    def connection(self) -> Client:
        if self.nc is None:
            raise QueueUnavailable("the JetStream queue is not open")
        return self.nc

    @property
    def js(self) -> JetStreamContext:
        if self.js_context is None:
            raise QueueUnavailable("the JetStream queue is not open")
        return self.js_context

    def bucket(self, purpose: str) -> KeyValue:
        """The open bucket for `purpose` (see `open_bucket`)."""
        bucket = self.buckets.get(purpose)
        if bucket is None:
            raise QueueUnavailable("the JetStream queue is not open")
        return bucket

    def reset(self) -> None:
        """Forget the connection and what was made with it, so the next `open` starts over.

        A cached ack_wait would skip `ensure` and a kept context or bucket would
        talk to a closed connection: both must fail as "not open" instead.
        """
        self.nc = None
        self.js_context = None
        self.buckets.clear()
        self._ack_wait.clear()

    def track(self, key: str) -> Track:
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = Track()
        return track

    # -- creating ------------------------------------------------------------------

    async def ensure(self, key: str, lease_for: float | None = None) -> None:
        """The stream and consumer of a function (or of callbacks), ack_wait = the lease time."""
        ack_wait = lease_for or self._ack_wait.get(key, self._lease_time)
        if self._ack_wait.get(key) == ack_wait:
            return
        stream = names.stream(self.project, key)
        if key not in self._ack_wait:
            await self.ensure_stream(
                StreamConfig(
                    name=stream,
                    subjects=[names.subject(self.project, key)],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                )
            )
        await self.js.add_consumer(
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
        self.track(key)

    async def ensure_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != _STREAM_EXISTS:
                raise
            log.warning(
                "stream exists with another configuration; using it as it is",
                extra={"stream": config.name, "error": exc.description},
            )

    async def open_bucket(self, purpose: str, ttl: float) -> None:
        """Open (or create) the project's bucket for `purpose` as `buckets[purpose]`."""
        self.buckets[purpose] = await self._bucket(names.bucket(self.project, purpose), ttl)

    async def _bucket(self, bucket: str, ttl: float) -> KeyValue:
        try:
            return await self.js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self.js.create_key_value(
                bucket=bucket, history=1, ttl=ttl or None, storage=StorageType.FILE
            )
        except BadRequestError:
            return await self.js.key_value(bucket)  # another gateway created it meanwhile

    async def discover(self) -> None:
        """Find the functions whose streams exist: work another gateway stored is due here too."""
        nc = self.connection
        offset = 0
        prefix = names.stream(self.project, "")
        while True:
            request = json.dumps({"subject": names.subject(self.project, "*"), "offset": offset})
            answer = json.loads((await nc.request("$JS.API.STREAM.NAMES", request.encode())).data)
            found = answer.get("streams") or []
            for stream in found:
                key = stream[len(prefix) :] if stream.startswith(prefix) else ""
                if _FUNCTION.match(key) or key == CALLBACKS:
                    self.track(key)
            offset += len(found)
            if not found or offset >= answer.get("total", 0):
                return

    # -- publishing ----------------------------------------------------------------

    def check_size(self, message: Message) -> None:
        limit = self.connection.max_payload
        size = len(message.body) + len(
            codec.message_headers(message, message.id)[codec.MESSAGE_HEADER]
        )
        if size + HEADROOM > limit:
            raise PayloadTooLarge(
                f"the message ({size} bytes with its metadata) exceeds the NATS server's "
                f"max_payload ({limit} bytes); raise max_payload in the nats-server configuration"
            )

    async def withdraw(self, stored_in: list[tuple[str, int]]) -> None:
        """Delete what part of a refused publish stored (JetStream has no transaction)."""
        for function, seq in stored_in:
            try:
                await self.js.delete_msg(names.stream(self.project, function), seq)
            except Exception:
                log.exception(
                    "could not withdraw part of a refused publish",
                    extra={"function": function, "seq": seq},
                )

    # -- pulling -------------------------------------------------------------------

    async def fetch(self, key: str, limit: int, now: float) -> list[Msg]:
        track = self.track(key)
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
        nc = self.connection
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox)
        try:
            request = json.dumps({"batch": batch, "no_wait": True}).encode()
            await nc.publish(
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

    # -- counts --------------------------------------------------------------------

    async def refresh_loop(self, interval: float) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                if rounds % DISCOVER_EVERY == 0:
                    await self.discover()
                await self.refresh()
            except Exception as exc:
                log.warning("refreshing queue counts failed", extra={"error": repr(exc)})

    async def refresh(self) -> None:
        await asyncio.gather(*(self._refresh_one(key) for key in list(self.tracks)))

    async def _refresh_one(self, key: str) -> None:
        track = self.tracks[key]
        before = track.waiting()
        track.begin_refresh()
        try:
            info = await self.js.consumer_info(names.stream(self.project, key), names.CONSUMER)
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
                self._on_due(key)

    async def consumer_counts(self) -> dict[str, dict[str, int]]:
        """Pending and leased by function, as the server counts them (empty states left out)."""
        counted: dict[str, dict[str, int]] = {}
        for function in [key for key in self.tracks if key != CALLBACKS]:
            try:
                info = await self.js.consumer_info(
                    names.stream(self.project, function), names.CONSUMER
                )
            except NotFoundError:
                continue
            states = {"pending": info.num_pending or 0, "leased": info.num_ack_pending or 0}
            counted[function] = {state: n for state, n in states.items() if n}
        return counted


async def kv_get(bucket: KeyValue, key: str) -> tuple[bytes, int] | None:
    """A key's value and revision, or None when absent, deleted or expired."""
    try:
        entry = await bucket.get(key)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.revision is None:
        return None
    return entry.value, entry.revision
