"""The lean gateway -> watchdog client: parsing, keep-alive reuse, stale connections."""

from __future__ import annotations

import asyncio

import pytest

from runtime import http1


@pytest.mark.parametrize(
    ("raw", "status", "length"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b", 200, 5),
        (b"HTTP/1.1 204 No Content\r\nX-Call-Id: 1", 204, -1),
        (b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0", 503, 0),
    ],
)
def test_parse_head(raw: bytes, status: int, length: int) -> None:
    parsed_status, headers, parsed_length = http1._parse_head(raw)
    assert (parsed_status, parsed_length) == (status, length)
    assert all(name == name.lower() for name, _ in headers)


@pytest.mark.parametrize(
    "raw",
    [b"garbage", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon", b"HTTP/1.1 200 OK\r\n"
     b"transfer-encoding: chunked"],
)  # fmt: skip
def test_parse_head_rejects(raw: bytes) -> None:
    with pytest.raises(http1.ProtocolError):
        http1._parse_head(raw)


async def serve(answers: list[bytes], close_after: int | None = None) -> tuple[asyncio.Server, str]:
    """A server answering each request with the next canned response."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        served = 0
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


async def shut(pool: http1.Pool, server: asyncio.Server) -> None:
    pool.close()
    await asyncio.sleep(0.05)  # let the closed transports finish closing
    server.close()
    await server.wait_closed()


async def call(pool: http1.Pool, address: str) -> tuple[int, bytes, bool]:
    connection, reused = await pool.acquire(address, 2.0)
    status, _ = await connection.request(b"GET / HTTP/1.1\r\nhost: x\r\n", b"", False)
    body = b"".join([chunk async for chunk in connection.body()])
    pool.release(address, connection)
    return status, body, reused


def test_keep_alive_reuses_one_connection() -> None:
    async def scenario() -> list[tuple[int, bytes, bool]]:
        server, address = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"])
        pool = http1.Pool()
        try:
            return [await call(pool, address) for _ in range(3)]
        finally:
            await shut(pool, server)

    results = asyncio.run(scenario())
    assert [r[:2] for r in results] == [(200, b"hello")] * 3
    assert [r[2] for r in results] == [False, True, True]


def test_a_closed_idle_connection_is_seen_as_stale() -> None:
    async def scenario() -> tuple[bool, bool]:
        server, address = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], 1)
        pool = http1.Pool()
        try:
            await call(pool, address)
            await asyncio.sleep(0.05)  # the server closed the kept-alive connection
            connection, reused = await pool.acquire(address, 2.0)
            return reused, connection.closed
        finally:
            await shut(pool, server)

    reused, closed = asyncio.run(scenario())
    assert not reused and not closed  # the closed one was dropped, a new one made


def test_a_head_that_does_not_come_in_time_is_a_timeout() -> None:
    async def scenario() -> tuple[bool, bool]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            await reader.read()  # never answers: waits for the client to give up
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = http1.Pool()
        try:
            connection, _ = await pool.acquire(address, 2.0)
            try:
                await connection.request(b"GET / HTTP/1.1\r\nhost: x\r\n", b"", False, 0.05)
            except TimeoutError:
                timed_out = True
            else:
                timed_out = False
            connection.abort()
            return timed_out, connection.finished
        finally:
            await shut(pool, server)

    timed_out, reusable = asyncio.run(scenario())
    assert timed_out
    assert not reusable


def test_body_reader_streams_parts_as_they_come() -> None:
    async def scenario() -> list[bytes]:
        async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"def")
            await writer.drain()
            await reader.read()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(slow, "127.0.0.1", 0)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = http1.Pool()
        try:
            connection, _ = await pool.acquire(address, 2.0)
            status, _ = await connection.request(b"GET / HTTP/1.1\r\nhost: x\r\n", b"", False, 5)
            assert status == 200
            parts = [part async for part in connection.body()]
            assert connection.finished
            pool.release(address, connection)
            return parts
        finally:
            await shut(pool, server)

    assert asyncio.run(scenario()) == [b"abc", b"def"]
