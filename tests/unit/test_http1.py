"""The gateway -> watchdog client: strict framing of hostile answers, back-pressure, reuse."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import pytest

from runtime import http1

GET = b"GET / HTTP/1.1\r\nhost: r\r\n"


@dataclass
class FakeTransport:
    """What a Connection writes, and whether it was told to stop reading or abort."""

    written: list[bytes] = field(default_factory=list)
    aborted: bool = False
    paused: bool = False
    pauses: int = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


@dataclass
class Outcome:
    head: tuple[int, list[tuple[bytes, bytes]]] | None
    body: bytes | None
    error: BaseException | None
    transport: FakeTransport
    connection: http1.Connection


async def exchange(
    pieces: list[bytes],
    *,
    head_only: bool = False,
    max_body: int = 1 << 20,
    later: list[bytes] = (),  # type: ignore[assignment]
) -> Outcome:
    """One request on a Connection fed `pieces` (each a separate read); then read the body.

    `later` arrives after the body was read to its end."""
    connection = http1.Connection(max_body)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    task = asyncio.ensure_future(connection.request(GET, b"", head_only))
    await asyncio.sleep(0)
    for piece in pieces:
        if transport.aborted:
            break
        connection.data_received(piece)
    await asyncio.sleep(0)
    head = body = error = None
    if not task.done():
        task.cancel()
        return Outcome(None, None, None, transport, connection)
    try:
        head = task.result()
        chunks = []
        while not connection.at_end:
            next_part = asyncio.ensure_future(connection.next_chunk())
            await asyncio.sleep(0)
            if not next_part.done():
                next_part.cancel()
                return Outcome(head, None, None, transport, connection)
            chunk = next_part.result()
            if chunk is None:
                break
            chunks.append(chunk)
        body = b"".join(chunks)
    except Exception as exc:
        error = exc
    for piece in later:
        connection.data_received(piece)
    return Outcome(head, body, error, transport, connection)


def run(coroutine: Awaitable[Outcome]) -> Outcome:
    async def main() -> Outcome:
        return await coroutine

    return asyncio.run(main())


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello"


def test_a_well_framed_answer_is_read_and_the_connection_kept() -> None:
    outcome = run(exchange([OK]))
    assert outcome.head == (200, [(b"content-length", b"5"), (b"x-a", b"b")])
    assert outcome.body == b"hello"
    assert outcome.connection.finished and not outcome.transport.aborted


def test_an_answer_split_at_every_byte_reads_the_same() -> None:
    outcome = run(exchange([OK[i : i + 1] for i in range(len(OK))]))
    assert outcome.head is not None and outcome.head[0] == 200
    assert outcome.body == b"hello"


def test_chunked_answers_are_decoded() -> None:
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    outcome = run(exchange([raw]))
    assert outcome.body == b"abcde" and outcome.connection.finished


FORGED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 28\r\n\r\n"
    b"<script>alert(1)</script>..."
)


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_a_bodyless_status_with_a_smuggled_answer_fails_the_call(status: bytes) -> None:
    """Issue 13, item 1: the body of a 204/304 that is itself an HTTP answer."""
    raw = b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(FORGED) + FORGED
    outcome = run(exchange([raw]))
    assert isinstance(outcome.error, http1.ProtocolError)
    assert outcome.transport.aborted and not outcome.connection.finished


def test_a_bodyless_status_alone_is_fine() -> None:
    outcome = run(exchange([b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"]))
    assert outcome.head is not None and outcome.head[0] == 204
    assert outcome.body == b"" and outcome.connection.finished


def test_bytes_after_the_answer_in_the_same_read_fail_the_call() -> None:
    outcome = run(exchange([OK + b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"]))
    assert isinstance(outcome.error, http1.ProtocolError)
    assert outcome.transport.aborted


def test_bytes_after_a_delivered_answer_discard_the_connection() -> None:
    outcome = run(exchange([OK], later=[b"HTTP/1.1 200 OK\r\n"]))
    assert outcome.body == b"hello" and outcome.error is None
    assert outcome.transport.aborted and not outcome.connection.finished


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("1xx", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        ("101", b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"),
        ("status 000", b"HTTP/1.1 000 X\r\ncontent-length: 0\r\n\r\n"),
        ("status 600", b"HTTP/1.1 600 X\r\ncontent-length: 0\r\n\r\n"),
        ("HTTP/1.0", b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"),
        ("plus sign", b"HTTP/1.1 200 OK\r\ncontent-length: +10\r\n\r\n0123456789"),
        ("underscore", b"HTTP/1.1 200 OK\r\ncontent-length: 1_0\r\n\r\n0123456789"),
        ("two lengths", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nx"),
        ("list length", b"HTTP/1.1 200 OK\r\ncontent-length: 1, 1\r\n\r\nx"),
        ("length and chunked", b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n"
         b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("gzip coding", b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc"),
        ("no framing", b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nuntil close"),
        ("bare LF in a value", b"HTTP/1.1 200 OK\r\nx: a\nb: c\r\ncontent-length: 0\r\n\r\n"),
        ("bare LF lines", b"HTTP/1.1 200 OK\nx: a\ncontent-length: 0\n\n"),
        ("NUL in a value", b"HTTP/1.1 200 OK\r\nx: a\x00b\r\ncontent-length: 0\r\n\r\n"),
        ("control in a value", b"HTTP/1.1 200 OK\r\nx: a\x01b\r\ncontent-length: 0\r\n\r\n"),
        ("CR in a value", b"HTTP/1.1 200 OK\r\nx: a\rb\r\ncontent-length: 0\r\n\r\n"),
        ("folded header", b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 0\r\n\r\n"),
        ("space in a name", b"HTTP/1.1 200 OK\r\nx y: a\r\ncontent-length: 0\r\n\r\n"),
        ("0x chunk size", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x3\r\nabc\r\n"
         b"0\r\n\r\n"),
        ("huge length", b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n"),
        ("garbage", b"garbage\r\n\r\n"),
    ],
)  # fmt: skip
def test_malformed_answers_fail_the_call(name: str, raw: bytes) -> None:
    outcome = run(exchange([raw]))
    failed = isinstance(outcome.error, http1.ProtocolError) or (
        outcome.head is None and outcome.transport.aborted
    )
    assert failed, f"{name}: {outcome}"
    assert not outcome.connection.finished


def test_a_head_too_large_fails_before_it_is_buffered_whole() -> None:
    piece = b"x-long: " + b"a" * 60_000 + b"\r\n"
    outcome = run(exchange([b"HTTP/1.1 200 OK\r\n", piece, piece, piece]))
    assert outcome.transport.aborted and outcome.head is None


def test_too_many_header_lines_fail() -> None:
    lines = b"".join(b"x-%d: 1\r\n" % i for i in range(http1.MAX_HEADERS + 1))
    outcome = run(exchange([b"HTTP/1.1 200 OK\r\n" + lines + b"content-length: 0\r\n\r\n"]))
    assert outcome.head is None and outcome.transport.aborted


def test_a_declared_length_over_the_limit_fails_before_any_body() -> None:
    outcome = run(exchange([b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n"], max_body=1000))
    assert isinstance(outcome.error, http1.AnswerTooLarge)


def test_a_chunked_answer_is_a_stream_with_no_size_limit() -> None:
    """Chunked answers are streams (a generator's): bounded by time, not by size."""
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    outcome = run(
        exchange(
            [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", chunk, chunk, b"0\r\n\r\n"],
            max_body=1500,
        )
    )
    assert outcome.error is None and outcome.body == b"a" * 2048
    assert outcome.connection.streamed and not outcome.transport.aborted


def test_a_stream_quiet_past_its_idle_limit_fails_and_one_that_flows_does_not() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"

    async def main() -> tuple[bytes, BaseException | None, bool]:
        connection = http1.Connection()
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        task = asyncio.ensure_future(connection.request(GET, b"", False, 5.0, 0.5, 30.0))
        await asyncio.sleep(0)
        connection.data_received(head)
        await task
        received = b""
        for _ in range(12):  # flowing: a chunk every 0.1 s, over twice the idle limit in all
            await asyncio.sleep(0.1)
            connection.data_received(b"1\r\nx\r\n")
            received += await connection.next_chunk() or b""
        try:
            await asyncio.wait_for(connection.next_chunk(), 2)  # then quiet
        except http1.BodyTimeout as exc:
            return received, exc, transport.aborted
        return received, None, transport.aborted

    received, error, aborted = asyncio.run(main())
    assert received == b"x" * 12
    assert isinstance(error, http1.BodyTimeout) and aborted


def test_head_answers_carry_no_body_and_are_not_reused() -> None:
    outcome = run(exchange([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"], head_only=True))
    assert outcome.head is not None and outcome.head[0] == 200
    assert outcome.body == b""
    assert not outcome.connection.finished  # whatever follows could not be framed


def test_a_body_in_the_answer_to_head_is_refused() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    outcome = run(exchange([raw], head_only=True, later=[]))
    assert outcome.transport.aborted


def test_reading_pauses_above_the_high_water_mark_and_resumes_when_drained() -> None:
    async def scenario() -> tuple[bool, bool, bytes]:
        size = 4 * http1.HIGH_WATER
        connection = http1.Connection()
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        task = asyncio.ensure_future(connection.request(GET, b"", False))
        await asyncio.sleep(0)
        connection.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"z" * (64 * 1024)
        while not transport.paused:  # the gateway reads only while it is under the mark
            connection.data_received(block)
        paused = transport.paused
        await task
        received = await connection.next_chunk()
        assert received is not None
        resumed = not transport.paused
        return paused, resumed, received

    paused, resumed, received = asyncio.run(scenario())
    assert paused and resumed
    assert http1.HIGH_WATER < len(received) <= http1.HIGH_WATER + 64 * 1024


def test_a_body_that_does_not_arrive_in_time_fails() -> None:
    async def scenario() -> BaseException | None:
        connection = http1.Connection()
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        task = asyncio.ensure_future(connection.request(GET, b"", False, 5, 0.01))
        await asyncio.sleep(0)
        connection.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await task
        try:
            while await connection.next_chunk() is not None:
                pass
        except http1.BodyTimeout as exc:
            return exc
        return None

    assert isinstance(asyncio.run(scenario()), http1.BodyTimeout)


def test_a_connection_lost_mid_body_is_an_error() -> None:
    async def scenario() -> BaseException | None:
        connection = http1.Connection()
        connection.connection_made(FakeTransport())  # type: ignore[arg-type]
        task = asyncio.ensure_future(connection.request(GET, b"", False))
        await asyncio.sleep(0)
        connection.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await task
        connection.connection_lost(None)
        try:
            while await connection.next_chunk() is not None:
                pass
        except ConnectionError as exc:
            return exc
        return None

    assert isinstance(asyncio.run(scenario()), ConnectionError)


# -- over real sockets -------------------------------------------------------------------


async def serve(answers: list[bytes], close_after: int | None = None) -> tuple[asyncio.Server, str]:
    """A server answering each request with the next canned response."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length")),
                    0,
                )  # fmt: skip
                await reader.readexactly(length)
                writer.write(answers[count % len(answers)])
                count += 1
                served += 1
                await writer.drain()
                if close_after is not None and served >= close_after:
                    return
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def shut(pool: http1.ConnectionPool, server: asyncio.Server) -> None:
    pool.close()
    await asyncio.sleep(0.05)  # let the closed transports finish closing
    server.close()
    await server.wait_closed()


async def call(pool: http1.ConnectionPool, address: str) -> tuple[int, bytes, http1.Connection]:
    connection = await pool.acquire(address, 2.0)
    status, _ = await connection.request(GET, b"", False)
    chunks = []
    while (chunk := await connection.next_chunk()) is not None:
        chunks.append(chunk)
    pool.release(address, connection)
    return status, b"".join(chunks), connection


def test_keep_alive_reuses_one_connection() -> None:
    async def scenario() -> list[tuple[int, bytes, http1.Connection]]:
        server, address = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"])
        pool = http1.ConnectionPool()
        try:
            return [await call(pool, address) for _ in range(3)]
        finally:
            await shut(pool, server)

    results = asyncio.run(scenario())
    assert [r[:2] for r in results] == [(200, b"hello")] * 3
    assert len({id(r[2]) for r in results}) == 1


def test_a_connection_the_replica_closed_while_idle_is_not_reused() -> None:
    async def scenario() -> tuple[bool, bool]:
        server, address = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], 1)
        pool = http1.ConnectionPool()
        try:
            _, _, first = await call(pool, address)
            await asyncio.sleep(0.05)  # the server closed the kept-alive connection
            second = await pool.acquire(address, 2.0)
            return second is first, second.closed
        finally:
            await shut(pool, server)

    same, closed = asyncio.run(scenario())
    assert not same and not closed


def test_a_head_that_does_not_come_in_time_is_a_timeout() -> None:
    async def scenario() -> tuple[bool, bool]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            await reader.read()  # never answers: waits for the client to give up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = http1.ConnectionPool()
        try:
            connection = await pool.acquire(address, 2.0)
            try:
                await connection.request(GET, b"", False, 0.05)
            except TimeoutError:
                timed_out = True
            else:
                timed_out = False
            connection.abort()
            return timed_out, connection.finished
        finally:
            await shut(pool, server)

    timed_out, reusable = asyncio.run(scenario())
    assert timed_out and not reusable


def test_cutting_a_replica_fails_its_calls_in_flight_and_drops_its_idle_connections() -> None:
    """A peer that went silent (its node died) never closes: `cut` fails the waiting call
    at once, where otherwise only the call's timeout would end it."""

    async def main() -> None:
        served: list[asyncio.Task[None]] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.append(asyncio.current_task())  # type: ignore[arg-type]
            await reader.read()  # takes the request, never answers, until the client goes
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = http1.ConnectionPool()
        connection = await pool.acquire(address, 5)
        waiting = asyncio.ensure_future(
            connection.request(b"GET / HTTP/1.1\r\nHost: r\r\n\r\n", b"", False, 3600)
        )
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert pool.cut(address, ConnectionAbortedError("its node w1 is down")) == 1
        with pytest.raises(ConnectionAbortedError, match="w1 is down"):
            await asyncio.wait_for(waiting, 5)
        assert pool.cut(address, ConnectionAbortedError("again")) == 0  # nothing left to cut
        await asyncio.wait_for(asyncio.gather(*served), 5)
        server.close()
        await server.wait_closed()

    asyncio.run(main())
