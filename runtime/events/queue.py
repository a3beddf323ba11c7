"""The durable queue's contract, and the records that cross it.

A `Message` (a published event, an async call, a cron firing) is stored
once; each function it goes to gets a `Delivery`, tracked on its own:

    pending --lease--> leased --finish--> done | dead
       ^                 |  \\--retry/release--> pending (due later)
       |                 \\--lease expires (crash)--> pending
       \\--replay-- dead     pending --cancel--> cancelled (async calls)

A delivery is leased for a bounded time and acknowledged only once its
handler has answered, so a gateway killed mid-delivery loses nothing: the
lease lapses and the delivery falls due again (at least once, never at
most once). `SqliteQueue` is the embedded implementation; a networked
broker (NATS JetStream) implements the same protocol.

`pending` and `backlog` are read on every autoscaler tick and every
publish, so implementations answer them from memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

Pairs = tuple[tuple[str, str], ...]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def storable_header(name: str, value: str) -> bool:
    """Whether a header may be kept in a `Result`: a token name, a value without controls.

    Whatever is stored is sent again later (a callback's Content-Type) and
    shown by the admin API, so a CR, LF, NUL or other control character
    (tab aside) is refused here, once, rather than by whoever reads it.
    """
    return _TOKEN.fullmatch(name) is not None and _CONTROL.search(value) is None


class Kind(StrEnum):
    EVENT = "event"
    CALL = "call"
    CRON = "cron"


class State(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"


class CallbackState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    kind: Kind
    created_at: float
    method: str = "POST"
    path: str = "/"
    query: bytes = b""
    headers: Pairs = ()
    """Lower-case names; for events only the content type travels."""
    body: bytes = b""
    topic: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    function: str
    attempt: int
    """This attempt's number, from 1."""
    due_at: float
    message: Message


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt ended with: the function's answer, or the platform's error status."""

    status: int
    headers: Pairs = ()
    """Lower-case names; only pairs that pass `storable_header`."""
    body: bytes = b""
    error: str | None = None
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    id: str
    function: str
    state: State
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    due_at: float
    result: Result | None
    callback_url: str | None = None
    callback_state: CallbackState | None = None
    callback_attempts: int = 0
    callback_status: int | None = None
    callback_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    """The delivery's id, which `replay` and `drop` take."""
    message_id: str
    kind: Kind
    function: str
    topic: str | None
    attempts: int
    status: int | None
    error: str | None
    failed_at: float | None


@dataclass(frozen=True, slots=True)
class CallbackJob:
    delivery_id: int
    call_id: str
    function: str
    url: str
    attempt: int
    """This callback attempt's number, from 1."""
    lease_until: float
    result: Result
    state: State
    """DONE or DEAD: how the call ended."""


class WorkQueue(Protocol):
    on_due: Callable[[str], None]
    """Called with a function's name when work for it falls due now (set by the worker)."""

    async def open(self, now: float) -> None:
        """Start using the store; work leased by a previous owner falls due again."""

    async def close(self) -> None: ...

    def pending(self, function: str) -> int:
        """Deliveries due now and not yet leased: the backlog the autoscaler counts."""

    def backlog(self, function: str) -> int:
        """Deliveries stored and not finished (pending at any time, or leased)."""

    def earliest_due(self) -> dict[str, float]:
        """For each function with pending deliveries, when the earliest falls due."""

    async def enqueue(
        self, message: Message, functions: Sequence[str], limits: Mapping[str, int]
    ) -> None:
        """Store `message` with one delivery per function, all or nothing.

        Raises QueueFull when a function already has `limits[function]`
        deliveries stored and not finished.
        """

    async def lease(
        self, function: str, limit: int, now: float, lease_for: float
    ) -> list[Delivery]:
        """Take up to `limit` due deliveries of `function`, oldest first, for `lease_for` s."""

    async def finish(self, delivery: Delivery, state: State, result: Result, now: float) -> bool:
        """Acknowledge a leased delivery as DONE or DEAD; False if its lease was lost."""

    async def retry(self, delivery: Delivery, result: Result, due_at: float) -> bool:
        """Put a leased delivery back, due at `due_at`, its attempt counted."""

    async def release(self, delivery: Delivery, due_at: float) -> bool:
        """Put a leased delivery back without counting the attempt (it never reached a handler)."""

    async def reclaim_expired(self, now: float) -> int:
        """Make deliveries whose lease ran out due again; returns how many."""

    async def cancel(self, call_id: str, now: float) -> State | None:
        """Cancel an async call still waiting; its state afterwards, None if unknown."""

    async def call(self, call_id: str) -> CallRecord | None: ...

    async def dead_letters(
        self, function: str | None = None, limit: int = 1000
    ) -> list[DeadLetter]: ...

    async def replay(self, delivery_id: int, now: float) -> bool:
        """Make a dead delivery pending again, its attempts reset; False if no such one."""

    async def drop(self, delivery_id: int) -> bool: ...

    def next_callback_due(self) -> float | None: ...

    async def lease_callbacks(
        self, now: float, limit: int, lease_for: float
    ) -> list[CallbackJob]: ...

    async def callback_finished(
        self,
        job: CallbackJob,
        state: CallbackState | None,
        status: int | None,
        error: str | None,
        due_at: float,
    ) -> None:
        """Record a callback attempt: SENT, FAILED, or None to try again at `due_at`."""

    async def last_fired(self, function: str, schedule: str) -> float | None:
        """When `schedule` of `function` last fired, as recorded by `fire`."""

    async def fire(
        self, function: str, schedule: str, scheduled_at: float, message: Message, limit: int
    ) -> bool:
        """Record a firing and enqueue its message in one step; False if over the limit."""

    async def purge(self, before: float) -> int:
        """Forget finished work (not dead letters) that ended before `before`."""

    async def counts(self) -> dict[str, dict[str, int]]:
        """Deliveries stored, by function and state."""
