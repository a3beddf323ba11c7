"""Every replica's output and the gateway's own events, as structured lines in one place.

Replicas write JSON lines (the watchdog's and the handler's `logging`) and
plain text (`print`); both become `LogLine`s with the function, the replica,
the level, the call id when known, and the message. The hub keeps the latest
lines in memory for `faas logs` and hands new ones to followers (`faas logs -f`,
the terminal of `faas up`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CAPACITY = 20_000
"""Lines kept in memory for the whole project (the container logs keep more)."""

_KNOWN_KEYS = frozenset({"ts", "level", "function", "msg", "call_id", "logger"})


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float
    function: str
    replica: str
    level: str
    message: str
    call_id: str | None = None
    source: str = "replica"
    """`replica` (a container's output) or `gateway` (the platform's own events)."""
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ts": round(self.ts, 3),
            "function": self.function,
            "replica": self.replica,
            "level": self.level,
            "message": self.message,
            "source": self.source,
        }
        if self.call_id:
            entry["call_id"] = self.call_id
        if self.fields:
            entry["fields"] = self.fields
        return entry


def parse_line(text: str, function: str, replica: str, now: float) -> LogLine:
    """A watchdog JSON line keeps its level, time, call id and fields; other text is `info`."""
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and "msg" in entry:
            extra = {k: v for k, v in entry.items() if k not in _KNOWN_KEYS}
            return LogLine(
                ts=_timestamp(entry.get("ts"), now),
                function=function,
                replica=replica,
                level=str(entry.get("level", "info")),
                message=str(entry["msg"]),
                call_id=entry.get("call_id"),
                fields=extra,
            )
    return LogLine(now, function, replica, "info", text)


def _timestamp(value: object, default: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


class LogHub:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._lines: collections.deque[LogLine] = collections.deque(maxlen=capacity)
        self._followers: set[asyncio.Queue[LogLine]] = set()
        self.echo: Callable[[LogLine], None] | None = None
        """Also show each replica line here (the terminal of `faas up`)."""

    def append(self, line: LogLine) -> None:
        self._lines.append(line)
        for queue in self._followers:
            if queue.qsize() < 10_000:  # a follower that stopped reading loses lines, not memory
                queue.put_nowait(line)
        if self.echo is not None and line.source == "replica":
            self.echo(line)

    def ingest(self, function: str, replica: str, text: str) -> None:
        self.append(parse_line(text, function, replica, time.time()))

    def recent(
        self, function: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[LogLine]:
        selected = [
            line
            for line in self._lines
            if (function is None or line.function == function)
            and (since is None or line.ts >= since)
        ]
        return selected[-limit:]

    async def follow(self, function: str | None = None) -> AsyncIterator[LogLine]:
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        self._followers.add(queue)
        try:
            while True:
                line = await queue.get()
                if function is None or line.function == function:
                    yield line
        finally:
            self._followers.discard(queue)


class HubHandler(logging.Handler):
    """Copies the gateway's own log records into the hub (attach it to the `faas` logger)."""

    def __init__(self, hub: LogHub) -> None:
        super().__init__()
        self._hub = hub

    def emit(self, record: logging.LogRecord) -> None:
        extra = {
            k: v
            for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and isinstance(v, str | int | float | bool)
        }
        self._hub.append(
            LogLine(
                ts=record.created,
                function=str(extra.pop("function", "-")),
                replica=str(extra.pop("replica", "gateway")),
                level=record.levelname.lower(),
                message=record.getMessage(),
                call_id=extra.pop("call_id", None),  # type: ignore[arg-type]
                source="gateway",
                fields=extra,
            )
        )


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
