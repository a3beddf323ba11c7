"""The vocabulary shared by the gateway and the runtime for one call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

Body = bytes | AsyncIterator[bytes]
RawHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Invocation:
    """A request on its way to a function, already stripped of outside X-Faas-* headers."""

    function: str
    method: str
    path: str
    query: bytes
    headers: RawHeaders
    body: Body
    call_id: str


class AnswerBody(Protocol):
    """An answer's body as it streams in."""

    def __aiter__(self) -> AnswerBody: ...

    async def __anext__(self) -> bytes: ...

    @property
    def at_end(self) -> bool:
        """Every byte of the body has been handed out: no more will come."""
        ...


@dataclass(slots=True)
class InvocationResult:
    """The replica's answer; `body` streams, and `close` must be awaited once it is consumed."""

    status: int
    headers: RawHeaders
    body: AnswerBody
    close: Callable[[], Awaitable[None]]
    replica: str = field(default="")
