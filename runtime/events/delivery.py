"""The worker that turns stored work into invocations, and their answers into outcomes.

One loop for all functions: whenever work falls due (or a slot frees), it
leases as many due deliveries of each function as that function has room
for, and invokes each through the platform like any other call: it waits
in the function's queue, wakes a function at zero, and counts toward its
scaling. A function has room for `scale.max * per-replica slots` deliveries
in flight, the most its replicas at full scale could run at once.

A delivery is acknowledged only once the function has answered; the
answer (or the error standing for it: a timeout is 504, a lost replica
502) goes through `retry.decide`. A call refused because the function's
own queue is full never reached a handler: it is put back without counting
an attempt. Leases last twice the function's timeout (a wait in its queue,
then the run) plus a margin; every few seconds the loop reclaims any that
ran out and forgets finished work past its retention.

Anything else that goes wrong while invoking (a bug, an unexpected error
from below) is an attempt that failed with 500, decided like any other, so
no delivery is leased again and again without its attempts being counted.
A result keeps only the headers `queue.storable_header` accepts: one with
a CR, LF, NUL or other control character, or a name that is no HTTP
token, is dropped when the result is stored (and the result's error says
how many), so no later reader, the callback sender first, trips on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable

from runtime import errors
from runtime.events import retry
from runtime.events.clock import Clock, SystemClock
from runtime.events.queue import Delivery, Kind, Pairs, Result, State, WorkQueue, storable_header
from runtime.invocation import Invocation, InvocationResult
from runtime.platform import Platform
from runtime.spec.topics import CRON_TOPIC
from runtime.watchdog import wire

log = logging.getLogger("faas.events")

LEASE_MARGIN = 30.0
SWEEP_INTERVAL = 5.0
DRAIN_GRACE = 5.0
QUEUE_FULL_DELAY = 1.0
UNKNOWN_FUNCTION_ROOM = 4
"""Deliveries to a function that no longer exists are still taken, so they reach the DLQ."""

STATUS_BY_ERROR: dict[type[errors.FaasError], int] = {
    errors.FunctionNotFound: 404,
    errors.PayloadTooLarge: 413,
    errors.ReplicaUnreachable: 502,
    errors.FunctionUnavailable: 503,
    errors.ReplicaStartError: 503,
    errors.EngineUnavailable: 503,
    errors.InvocationTimeout: 504,
}
"""The statuses the gateway answers for the same errors (gateway/errors.py)."""

INTERNAL_ERROR = "the platform failed to invoke the function (see the gateway log)"
"""A result's error for an unexpected exception; its text stays in the log, since a
dead result's error can reach the callback receiver."""

_DROPPED_RESULT_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "x-call-id",
    }
)


class Deliverer:
    def __init__(
        self,
        platform: Platform,
        queue: WorkQueue,
        *,
        max_result_size: int,
        retention: float,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._platform = platform
        self._queue = queue
        self._max_result_size = max_result_size
        self._retention = retention
        self._clock = clock or SystemClock()
        self._jitter = jitter
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.on_finished: Callable[[Delivery], None] = lambda delivery: None
        """Called after a delivery reached DONE or DEAD (the callback sender listens)."""

    def wake(self) -> None:
        self._wake.set()

    def room(self, function: str) -> int:
        pool = self._platform.pools.get(function)
        if pool is None:
            return UNKNOWN_FUNCTION_ROOM - self._in_flight[function]
        return pool.spec.scale.max * pool.slot_limit - self._in_flight[function]

    async def run(self) -> None:
        next_sweep = 0.0
        while not self._stopping:
            now = self._clock.now()
            if now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL
                await self._sweep(now)
            self._wake.clear()
            wait = next_sweep - now
            for function, due_at in self._queue.earliest_due().items():
                if due_at > now:
                    wait = min(wait, due_at - now)
                    continue
                room = self.room(function)
                if room > 0:
                    await self._start(function, room, now)
                # at capacity: a finishing delivery wakes us
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.001)):
                    await self._wake.wait()

    async def _start(self, function: str, room: int, now: float) -> None:
        try:
            deliveries = await self._queue.lease(function, room, now, self._lease_for(function))
        except Exception:
            log.exception("leasing deliveries failed", extra={"function": function})
            return
        for delivery in deliveries:
            self._in_flight[function] += 1
            task = asyncio.get_running_loop().create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _lease_for(self, function: str) -> float:
        pool = self._platform.pools.get(function)
        timeout = pool.spec.timeout if pool else 30.0
        return 2 * timeout + LEASE_MARGIN

    async def _sweep(self, now: float) -> None:
        try:
            reclaimed = await self._queue.reclaim_expired(now)
            purged = await self._queue.purge(now - self._retention)
        except Exception:
            log.exception("queue housekeeping failed")
            return
        if reclaimed:
            log.warning("reclaimed deliveries whose lease ran out", extra={"count": reclaimed})
        if purged:
            log.info("forgot finished work past its retention", extra={"count": purged})

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except Exception:
            # the lease runs out and the delivery falls due again: nothing is lost
            log.exception("delivery failed", extra={"delivery": delivery.id})
        finally:
            self._in_flight[delivery.function] -= 1
            self._wake.set()

    async def _attempt(self, delivery: Delivery) -> None:
        began = time.perf_counter()
        try:
            result = await self._invoke(delivery, began)
        except errors.QueueFull:
            await self._queue.release(delivery, self._clock.now() + QUEUE_FULL_DELAY)
            return
        now = self._clock.now()
        pool = self._platform.pools.get(delivery.function)
        policy = pool.spec.retry if pool else None
        if policy is None:
            decision = retry.Decision(retry.Verdict.DEAD, reason="the function no longer exists")
        else:
            retry_after = retry.parse_retry_after(_header(result.headers, "retry-after"), now)
            decision = retry.decide(
                result.status,
                delivery.attempt,
                policy,
                retry_after=retry_after,
                jitter=self._jitter(),
            )
        fields = {
            "function": delivery.function,
            "kind": delivery.message.kind.value,
            "message_id": delivery.message.id,
            "attempt": delivery.attempt,
            "status": result.status,
        }
        if decision.verdict is retry.Verdict.RETRY:
            log.info("delivery will be retried", extra={**fields, "reason": decision.reason})
            await self._queue.retry(delivery, result, now + decision.delay)
            return
        state = State.DONE if decision.verdict is retry.Verdict.DONE else State.DEAD
        if state is State.DEAD:
            log.warning("delivery dead-lettered", extra={**fields, "reason": decision.reason})
            result = _with_error(result, decision.reason, delivery)
        if await self._queue.finish(delivery, state, result, now):
            self.on_finished(delivery)

    async def _invoke(self, delivery: Delivery, began: float) -> Result:
        try:
            return await self._invoke_once(delivery, began)
        except errors.QueueFull:
            raise
        except Exception:
            log.exception(
                "invoking a delivery failed",
                extra={"function": delivery.function, "delivery": delivery.id},
            )
            return Result(500, error=INTERNAL_ERROR, duration=time.perf_counter() - began)

    async def _invoke_once(self, delivery: Delivery, began: float) -> Result:
        invocation = self._invocation(delivery)
        try:
            answer = await self._platform.invoke(invocation)
        except errors.QueueFull:
            raise
        except errors.FaasError as exc:
            return Result(_status_for(exc), error=str(exc), duration=time.perf_counter() - began)
        try:
            body = await self._read(answer, keep=delivery.message.kind is Kind.CALL)
        except errors.FaasError as exc:
            return Result(_status_for(exc), error=str(exc), duration=time.perf_counter() - began)
        finally:
            await answer.close()
        headers, dropped = _result_headers(answer)
        error = None
        if dropped:
            error = f"{dropped} result header(s) dropped: control characters or an invalid name"
            log.warning(
                "dropped result headers that cannot be stored",
                extra={
                    "function": delivery.function,
                    "message_id": delivery.message.id,
                    "count": dropped,
                },
            )
        return Result(answer.status, headers, body, error, time.perf_counter() - began)

    def _invocation(self, delivery: Delivery) -> Invocation:
        message = delivery.message
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in message.headers
        ]
        if message.kind is Kind.CALL:
            call_id = message.id
        else:
            call_id = uuid.uuid4().hex
            topic = message.topic if message.kind is Kind.EVENT else CRON_TOPIC
            headers += [
                (wire.TOPIC_HEADER.encode(), (topic or "").encode()),
                (wire.EVENT_ID_HEADER.encode(), message.id.encode()),
                (wire.ATTEMPT_HEADER.encode(), str(delivery.attempt).encode()),
            ]
        return Invocation(
            function=delivery.function,
            method=message.method,
            path=message.path,
            query=message.query,
            headers=headers,
            body=message.body,
            call_id=call_id,
        )

    async def _read(self, answer: InvocationResult, *, keep: bool) -> bytes:
        chunks: list[bytes] = []
        kept = 0
        async for chunk in answer.body:
            if keep and kept < self._max_result_size:
                piece = chunk[: self._max_result_size - kept]
                chunks.append(piece)
                kept += len(piece)
        return b"".join(chunks)

    async def stop(self) -> None:
        """Take no more work; give deliveries in flight a moment, then leave them leased.

        Whatever is still leased falls due again when the queue is next opened.
        """
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DRAIN_GRACE)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _status_for(exc: errors.FaasError) -> int:
    return next((code for kind, code in STATUS_BY_ERROR.items() if isinstance(exc, kind)), 500)


def _result_headers(answer: InvocationResult) -> tuple[Pairs, int]:
    """The headers worth keeping, and how many were dropped as unstorable."""
    pairs = []
    dropped = 0
    for raw_name, raw_value in answer.headers:
        name = raw_name.decode("latin-1").lower()
        if name in _DROPPED_RESULT_HEADERS or name.startswith(wire.INTERNAL_PREFIX):
            continue
        value = raw_value.decode("latin-1")
        if not storable_header(name, value):
            dropped += 1
            continue
        pairs.append((name, value))
    return tuple(pairs), dropped


def _header(pairs: Pairs, name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)


def _with_error(result: Result, reason: str, delivery: Delivery) -> Result:
    """A dead result with no body of its own gets a JSON error body, for callbacks and `calls`."""
    error = f"{result.error}; {reason}" if result.error else reason
    if result.body or result.error is None:
        return Result(result.status, result.headers, result.body, error, result.duration)
    body = json.dumps({"error": result.error, "call_id": delivery.message.id}).encode()
    return Result(
        result.status, (("content-type", "application/json"),), body, error, result.duration
    )
