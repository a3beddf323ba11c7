from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from gateway.fastpath import function_target
from gateway.protocol import FunctionCycle, takes_fast_path

METHODS = frozenset({"GET", "POST", "HEAD"})


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def scope(
    path: str = "/function/hello",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    http_version: str = "1.1",
    raw_path: bytes | None = None,
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "http_version": http_version,
        "headers": headers if headers is not None else [(b"host", b"example")],
    }


@pytest.mark.parametrize(
    ("path", "raw", "expected"),
    [
        ("/function/hello", None, ("hello", "/")),
        ("/function/hello/", None, ("hello", "/")),
        ("/function/hello/a/b", b"/function/hello/a%2Fb", ("hello", "/a%2Fb")),
        ("/function/", None, None),
        ("/functions/hello", None, None),
        ("/healthz", None, None),
    ],
)
def test_function_target(path: str, raw: bytes | None, expected: tuple[str, str] | None) -> None:
    assert function_target(scope(path, raw_path=raw)) == expected


def test_plain_calls_take_the_fast_path() -> None:
    assert takes_fast_path(scope(), METHODS, 8192)
    assert takes_fast_path(scope(method="POST"), METHODS, 8192)


@pytest.mark.parametrize(
    "call",
    [
        scope(method="PATCH"),  # not a method the route takes
        scope(path="/system/functions"),
        scope(path="/function/"),
        scope(http_version="1.0"),
        scope(headers=[(b"x-forwarded-for", b"203.0.113.9")]),
        scope(headers=[(b"x-forwarded-proto", b"https")]),
        scope(headers=[(b"x-big", b"x" * 9000)]),  # the full app answers 431
    ],
)
def test_calls_the_middleware_acts_on_take_the_full_app(call: dict[str, Any]) -> None:
    assert not takes_fast_path(call, METHODS, 8192)


def test_header_size_counts_as_the_limit_does() -> None:
    headers = [(b"x-a", b"y" * 96)]  # 3 + 96 + 4 = 103 bytes
    assert takes_fast_path(scope(headers=headers), METHODS, 103)
    assert not takes_fast_path(scope(headers=headers), METHODS, 102)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(method: str = "GET", keep_alive: bool = True) -> tuple[FunctionCycle, FakeTransport]:
    transport = FakeTransport()
    responses: list[None] = []
    made = FunctionCycle(
        scope=scope(method=method),  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: responses.append(None),
    )
    made._head, made._flush = [], None
    return made, transport


def start(*headers: tuple[bytes, bytes], status: int = 200) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


@in_loop
async def test_head_and_a_whole_body_leave_in_one_write() -> None:
    made, transport = cycle()
    await made.send(start((b"content-length", b"2"), (b"x-call-id", b"abc")))
    await made.send(body(b"hi"))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-call-id: abc\r\n\r\nhi"]
    assert made.response_complete
    await asyncio.sleep(0)  # the head's fallback flush was cancelled: nothing more
    assert len(transport.writes) == 1


@in_loop
async def test_the_head_is_not_held_back_by_a_late_body() -> None:
    made, transport = cycle()
    await made.send(start((b"content-length", b"4")))
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"]
    await made.send(body(b"ab", more=True))
    await made.send(body(b"cd"))
    assert transport.writes[1:] == [b"ab", b"cd"]
    assert made.response_complete


@in_loop
async def test_without_a_length_the_body_is_chunked() -> None:
    made, transport = cycle()
    await made.send(start())
    await made.send(body(b"abc", more=True))
    await made.send(body(b""))
    assert b"".join(transport.writes) == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )


@in_loop
async def test_head_requests_get_no_body() -> None:
    made, transport = cycle("HEAD")
    await made.send(start((b"content-length", b"5")))
    await made.send(body(b""))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]
    assert made.response_complete


@in_loop
async def test_a_closing_connection_says_so_and_closes() -> None:
    made, transport = cycle(keep_alive=False)
    await made.send(start((b"content-length", b"0"), status=404))
    await made.send(body(b""))
    assert transport.writes == [
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ]
    assert transport.closed


@in_loop
async def test_invalid_header_values_are_refused() -> None:
    made, _ = cycle()
    with pytest.raises(RuntimeError, match="header value"):
        await made.send(start((b"x-bad", b"a\nb")))


@in_loop
async def test_a_body_longer_than_its_length_is_refused() -> None:
    made, _ = cycle()
    await made.send(start((b"content-length", b"1")))
    with pytest.raises(RuntimeError, match="longer"):
        await made.send(body(b"too long"))
