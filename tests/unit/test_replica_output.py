"""Replica output limits: the token buckets (fake clock), the per-replica sink, line cutting."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable

import pytest

from runtime.backends.docker.log_stream import LineSplitter, dechunk, frame_payloads
from runtime.loghub import (
    MAX_LINE,
    Dropped,
    LogHub,
    OutputLimiter,
    OutputLimits,
    ReplicaOutput,
)
from runtime.redact import Redactor

LIMITS = OutputLimits(
    lines_per_second=10, bytes_per_second=1000, burst_lines=20, burst_bytes=2000, max_line=100
)


def test_a_burst_passes_then_the_sustained_rate() -> None:
    limiter = OutputLimiter(LIMITS, now=0.0)
    assert sum(limiter.admit(10, 0.0) for _ in range(50)) == 20  # the burst
    assert sum(limiter.admit(10, 1.0) for _ in range(50)) == 10  # one second's refill
    assert limiter.report(1.0) == Dropped(lines=70, bytes=700)
    assert limiter.report(5.0) is None  # reported: counters start again


def test_bytes_are_limited_as_well_as_lines() -> None:
    limiter = OutputLimiter(LIMITS, now=0.0)
    assert [limiter.admit(900, 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.admit(150, 0.0) is True  # a smaller line still fits
    assert limiter.admit(100, 0.05) is True  # 50 bytes refilled in 50 ms, plus what was left
    assert limiter.admit(1, 0.05) is False


def test_tokens_never_exceed_the_burst_after_a_quiet_spell() -> None:
    limiter = OutputLimiter(LIMITS, now=0.0)
    assert sum(limiter.admit(1, 3600.0) for _ in range(100)) == 20


def test_drops_are_reported_once_per_interval() -> None:
    limiter = OutputLimiter(LIMITS, now=0.0)
    for _ in range(25):
        limiter.admit(10, 0.1)
    assert limiter.dropping
    assert limiter.report(0.5) is None  # less than report_every since the start
    assert limiter.report(1.0) == Dropped(lines=5, bytes=50)
    assert not limiter.dropping
    limiter.admit(5000, 1.2)  # over any byte budget
    assert limiter.report(1.5) is None
    assert limiter.report(2.0) == Dropped(lines=1, bytes=5000)


def test_a_clock_going_backwards_adds_nothing() -> None:
    limiter = OutputLimiter(LIMITS, now=10.0)
    assert sum(limiter.admit(1, 10.0) for _ in range(20)) == 20
    assert limiter.admit(1, 5.0) is False


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dropped_records() -> list[logging.LogRecord]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("faas.logs")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_output_is_limited_masked_and_batched_off_the_loop(
    dropped_records: list[logging.LogRecord],
) -> None:
    async def scenario() -> tuple[LogHub, int]:
        loop = asyncio.get_running_loop()
        hub = LogHub()
        hub.redact = Redactor(["hunter22-pw"])
        clock = FakeClock()
        output = ReplicaOutput(hub, "noisy", "noisy-1", loop, LIMITS, clock)
        scheduled = 0
        real = loop.call_soon_threadsafe

        def counting(callback, *args):  # type: ignore[no-untyped-def]
            nonlocal scheduled
            scheduled += 1
            return real(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

        def reader() -> None:  # as the backend's thread does
            output.feed(json.dumps({"msg": "password hunter22-pw", "level": "error"}))
            for number in range(999):
                output.feed(f"line {number}")
            output.feed("x" * 5000)  # cut to max_line, and said so

        thread = threading.Thread(target=reader)
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.sleep(0)
        clock.now = 5.0  # the tick (report_every) reports what was dropped
        await asyncio.sleep(LIMITS.report_every + 0.2)
        return hub, scheduled

    hub, scheduled = asyncio.run(scenario())
    lines = hub.recent("noisy")
    messages = [line.message for line in lines]
    assert messages[0] == "password ***"
    assert (lines[0].level, lines[0].replica) == ("error", "noisy-1")
    assert messages[1:] == [f"line {n}" for n in range(19)]  # the burst of 20 lines
    assert scheduled < 25  # handed over in batches, not one callback per line
    assert hub.dropped_bytes["noisy"] > 0
    [report] = [r for r in dropped_records if "bytes dropped" in r.getMessage()]
    assert getattr(report, "dropped_lines") == 981  # noqa: B009
    assert getattr(report, "function") == "noisy"  # noqa: B009


def test_a_long_line_is_cut_with_a_note() -> None:
    async def scenario() -> LogHub:
        hub = LogHub()
        limits = OutputLimits(max_line=100, burst_bytes=10_000)
        output = ReplicaOutput(hub, "f", "f-1", asyncio.get_running_loop(), limits)
        output.feed("y" * 1000)
        await asyncio.sleep(0.01)
        return hub

    [line] = asyncio.run(scenario()).recent()
    assert line.message == "y" * 100 + "... [900 characters cut]"


def test_the_hub_keeps_bounded_text() -> None:
    hub = LogHub(capacity=1000, max_bytes=50_000)
    for number in range(100):
        hub.ingest("f", "f-1", f"{number} " + "z" * 4000)
    kept = hub.recent(limit=1000)
    assert 5 <= len(kept) <= 13
    assert kept[-1].message.startswith("99 ")


def lines_of(chunks: list[bytes], max_line: int = 10) -> list[str]:
    seen: list[str] = []
    splitter = LineSplitter(seen.append, max_line)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close()
    return seen


def test_splitter_joins_partial_frames_and_skips_empty_lines() -> None:
    assert lines_of([b"ab", b"c\n\nde\nf", b"g\n", b"tail"]) == ["abc", "de", "fg", "tail"]


def test_splitter_holds_at_most_max_line_of_an_endless_line() -> None:
    assert lines_of([b"0123456789abc\nok\n"]) == ["0123456789... [3 bytes cut]", "ok"]
    seen = lines_of([b"x" * 7] * 1000 + [b"\nnext\n"])  # a 7,000-byte line in pieces
    assert seen == ["x" * 10 + "... [6990 bytes cut]", "next"]


def test_splitter_default_matches_the_hub_line_limit() -> None:
    seen: list[str] = []
    LineSplitter(seen.append).feed(b"q" * (MAX_LINE * 3) + b"\n")
    assert seen == ["q" * MAX_LINE + f"... [{MAX_LINE * 2} bytes cut]"]


def reader_of(data: bytes, step: int) -> Callable[[int], bytes]:
    """A connection that hands over `step` bytes a read, whatever is asked for."""
    position = 0

    def read(_size: int) -> bytes:
        nonlocal position
        piece = data[position : position + step]
        position += len(piece)
        return piece

    return read


def frame(payload: bytes, stream: int = 2) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("step", [1, 3, 7, 64, 100_000])
def test_frames_come_out_whole_however_the_bytes_arrive(step: int) -> None:
    payloads = [b"first line\n", b"x" * 300, b"\n", b"last\n"]
    frames = b"".join(frame(p) for p in payloads)
    chunks = [frames[i : i + 37] for i in range(0, len(frames), 37)]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    received = b"".join(frame_payloads(dechunk(reader_of(body + b"ignored", step))))
    assert received == b"".join(payloads)


def test_dechunk_stops_when_the_connection_ends_midway() -> None:
    assert b"".join(dechunk(reader_of(b"5\r\nhel", 2))) == b"hel"
