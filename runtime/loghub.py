"""Every replica's output and the gateway's own events, as structured lines in one place.

Replicas write JSON lines (the watchdog's and the handler's `logging`) and
plain text (`print`); both become `LogLine`s with the function, the replica,
the level, the call id when known, and the message. The hub keeps the latest
lines in memory for `faas logs` and hands new ones to followers (`faas logs -f`,
the terminal of `faas up`).

A replica's output is hostile like every byte from it: a function can write
without end, from a thread, after its call returned. So each replica's output
goes through a `ReplicaOutput` in the backend's reader thread, never on the
event loop: lines are cut at `OutputLimits.max_line`, at most so many lines and
bytes a second pass (`OutputLimiter`, a token bucket), the rest is dropped and
counted in one "N bytes dropped" line a second, and what passes is masked and
parsed there too. The loop only appends finished lines, in batches. Secret
values are masked on every way into the hub and out of the gateway's log
(`HubHandler`, `RedactingFilter`): see runtime/redact.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CAPACITY = 20_000
"""Lines kept in memory for the whole project (the container logs keep more)."""
MAX_BYTES = 32 * 1024 * 1024
"""...and at most about this much text, whatever the lines' length."""

MAX_LINE = 16 * 1024
"""Characters of one output line shown; backends reading a stream cut there too."""
MARKER_ROOM = 64
"""A line a backend already cut is this much longer (its "... [N bytes cut]")."""

Redact = Callable[[str], str]

log = logging.getLogger("faas.logs")


def _unredacted(text: str) -> str:
    return text


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
    def __init__(self, capacity: int = CAPACITY, max_bytes: int = MAX_BYTES) -> None:
        self._lines: collections.deque[LogLine] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._followers: set[asyncio.Queue[LogLine]] = set()
        self.echo: Callable[[LogLine], None] | None = None
        """Also show each replica line here (the terminal of `faas up`)."""
        self.redact: Redact = _unredacted
        """Masks secret values; the platform sets it (runtime/redact.py)."""
        self.dropped_bytes: collections.Counter[str] = collections.Counter()
        """Replica output dropped over the limits, by function (for metrics)."""

    def append(self, line: LogLine) -> None:
        size = _size(line)
        self._lines.append(line)
        self._sizes.append(size)
        self._bytes += size
        while len(self._lines) > self._capacity or (
            self._bytes > self._max_bytes and len(self._lines) > 1
        ):
            self._lines.popleft()
            self._bytes -= self._sizes.popleft()
        for queue in self._followers:
            if queue.qsize() < 10_000:  # a follower that stopped reading loses lines, not memory
                queue.put_nowait(line)
        if self.echo is not None and line.source == "replica":
            self.echo(line)

    def ingest(self, function: str, replica: str, text: str) -> None:
        """One line of a replica's output, unlimited (`ReplicaOutput` is the limited way in)."""
        self.append(parse_line(self.redact(text), function, replica, time.time()))

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
        redact = self._hub.redact
        extra = {
            k: redact(v) if isinstance(v, str) else v
            for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and isinstance(v, str | int | float | bool)
        }
        self._hub.append(
            LogLine(
                ts=record.created,
                function=str(extra.pop("function", "-")),
                replica=str(extra.pop("replica", "gateway")),
                level=record.levelname.lower(),
                message=redact(record.getMessage()),
                call_id=extra.pop("call_id", None),  # type: ignore[arg-type]
                source="gateway",
                fields=extra,
            )
        )


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _size(line: LogLine) -> int:
    return len(line.message) + (len(str(line.fields)) if line.fields else 0) + 100


class RedactingFilter(logging.Filter):
    """Masks secret values in a record before any handler formats it (the gateway's log).

    The message is formatted and masked in place (its args dropped), so are string
    fields passed with `extra=`; a traceback is formatted, masked and appended to the
    message, since formatters would otherwise print it from the live exception.
    """

    def __init__(self, redact: Redact) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_faas_redacted", False):
            return True  # seen by another handler already
        redact = self.redact
        message = record.getMessage()
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            message = f"{message}\n{trace}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        record._faas_redacted = True
        return True


def redact_log_records(redact: Redact, logger: logging.Logger | None = None) -> None:
    """Mask secret values in everything the handlers of `logger` (default: the root's)
    write: the gateway's own log. Installed once by `faas up`; calling it again
    replaces the earlier filter."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(redact))


# -- replica output: limited and masked off the event loop ------------------------------


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """How much of one replica's output reaches the gateway (its log, `faas logs`).

    Sustained rates with a burst on top, so a traceback or a start-up banner passes
    whole while an endless writer costs the gateway at most `lines_per_second`
    lines of work a second.
    """

    lines_per_second: float = 100.0
    bytes_per_second: float = 64 * 1024
    burst_lines: float = 1000.0
    burst_bytes: float = 256 * 1024
    max_line: int = MAX_LINE
    """Characters; a longer line is cut and says by how much."""
    report_every: float = 1.0
    """Seconds between two "bytes dropped" lines of one replica, at most."""


DEFAULT_LIMITS = OutputLimits()


@dataclass(frozen=True, slots=True)
class Dropped:
    lines: int
    bytes: int


class OutputLimiter:
    """Token buckets for lines and bytes; pure (the time is an argument), not thread-safe."""

    def __init__(self, limits: OutputLimits, now: float) -> None:
        self.limits = limits
        self._lines = limits.burst_lines
        self._bytes = limits.burst_bytes
        self._updated = now
        self._reported = now
        self._dropped_lines = 0
        self._dropped_bytes = 0

    def admit(self, size: int, now: float) -> bool:
        """True: show a line of `size` bytes; False: it is dropped, and counted.

        Runs for every line of a flood, so it is written for speed: refill only when
        time moved, no calls.
        """
        elapsed = now - self._updated
        if elapsed > 0:
            limits = self.limits
            self._updated = now
            lines = self._lines + elapsed * limits.lines_per_second
            self._lines = lines if lines < limits.burst_lines else limits.burst_lines
            size_left = self._bytes + elapsed * limits.bytes_per_second
            self._bytes = size_left if size_left < limits.burst_bytes else limits.burst_bytes
        if self._lines >= 1 and self._bytes >= size:
            self._lines -= 1
            self._bytes -= size
            return True
        self._dropped_lines += 1
        self._dropped_bytes += size
        return False

    @property
    def dropping(self) -> bool:
        """Drops not reported yet."""
        return self._dropped_lines > 0

    def report(self, now: float) -> Dropped | None:
        """The drops to report now: once every `report_every` seconds at most."""
        if not self._dropped_lines or now - self._reported < self.limits.report_every:
            return None
        dropped = Dropped(self._dropped_lines, self._dropped_bytes)
        self._dropped_lines = self._dropped_bytes = 0
        self._reported = now
        return dropped


class ReplicaOutput:
    """One replica's output on its way to the hub.

    `feed` runs in the backend's reader thread, once per line: it limits, cuts,
    masks and parses there, and hands finished lines to the event loop with at
    most one scheduled callback outstanding, however fast lines come.
    """

    def __init__(
        self,
        hub: LogHub,
        function: str,
        replica: str,
        loop: asyncio.AbstractEventLoop,
        limits: OutputLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self.function = function
        self.replica = replica
        self._loop = loop
        self._clock = clock
        self._limiter = OutputLimiter(limits, clock())
        self._max_line = limits.max_line
        self._lock = threading.Lock()  # the limiter is fed by the reader, reported by the loop
        self._ready: collections.deque[LogLine] = collections.deque()
        self._scheduled = False
        self._ticking = False

    def feed(self, text: str) -> None:
        if len(text) > self._max_line + MARKER_ROOM:
            cut = len(text) - self._max_line
            text = f"{text[: self._max_line]}... [{cut} characters cut]"
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        with self._lock:
            admitted = self._limiter.admit(size, self._clock())
        if admitted:
            line = parse_line(self._hub.redact(text), self.function, self.replica, time.time())
            self._ready.append(line)
        elif self._ticking:
            return  # dropped; the tick on its way reports it
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self._flush)

    def _call_soon(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the gateway is stopping
            self._loop.call_soon_threadsafe(callback)

    def _flush(self) -> None:
        """On the loop: hand over what is ready; report drops, now or at the next tick."""
        self._scheduled = False
        ready = self._ready
        while ready:
            self._hub.append(ready.popleft())
        self._report()

    def _report(self) -> None:
        with self._lock:
            dropped = self._limiter.report(self._clock())
            dropping = self._limiter.dropping
        if dropped is not None:
            self._hub.dropped_bytes[self.function] += dropped.bytes
            limits = self._limiter.limits
            log.warning(
                f"{dropped.bytes} bytes dropped: {self.replica} wrote more than "
                f"{limits.lines_per_second:g} lines or {limits.bytes_per_second / 1024:g} KiB "
                f"a second ({dropped.lines} lines dropped)",
                extra={
                    "function": self.function,
                    "replica": self.replica,
                    "dropped_bytes": dropped.bytes,
                    "dropped_lines": dropped.lines,
                },
            )
        if dropping and not self._ticking:
            self._ticking = True
            self._loop.call_later(self._limiter.limits.report_every, self._tick)

    def _tick(self) -> None:
        """Report drops whose replica has gone quiet (or away) since; else tick again."""
        self._ticking = False
        self._report()
