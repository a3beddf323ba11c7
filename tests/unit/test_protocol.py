from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from gateway.fastpath import function_target
from gateway.limits import ListenerLimits, connection_cap
from gateway.protocol import (
    FunctionCycle,
    GatewayProtocol,
    missing_hooks,
    protocol_for,
    takes_fast_path,
)

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
    assert takes_fast_path(scope(), METHODS)
    assert takes_fast_path(scope(method="POST"), METHODS)
    assert takes_fast_path(scope(headers=[(b"x-big", b"x" * 9000)]), METHODS)  # sized already


@pytest.mark.parametrize(
    "call",
    [
        scope(method="PATCH"),  # not a method the route takes
        scope(path="/system/functions"),
        scope(path="/function/"),
        scope(http_version="1.0"),
        scope(headers=[(b"x-forwarded-for", b"203.0.113.9")]),
        scope(headers=[(b"x-forwarded-proto", b"https")]),
    ],
)
def test_calls_the_middleware_acts_on_take_the_full_app(call: dict[str, Any]) -> None:
    assert not takes_fast_path(call, METHODS)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


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


# -- uvicorn's private API, pinned ----------------------------------------------------


def test_this_uvicorn_has_every_hook_the_protocol_uses() -> None:
    """Fails on a uvicorn release that changed its request cycle: pin or adapt (pyproject.toml)."""
    assert missing_hooks() == [], "uvicorn changed what gateway/protocol.py relies on"


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (HttpToolsProtocol, "_start_asgi_task", "HttpToolsProtocol._start_asgi_task"),
        (HttpToolsProtocol, "on_message_complete", "HttpToolsProtocol.on_message_complete"),
        (RequestResponseCycle, "send_500_response", "RequestResponseCycle.send_500_response"),
    ],
)
def test_a_missing_hook_is_named_and_refuses_to_serve(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    assert named in missing_hooks()
    with pytest.raises(RuntimeError, match=named):
        protocol_for(LIMITS)


def test_a_missing_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RequestResponseCycle.__init__

    @functools.wraps(original)
    def without_flow(self: RequestResponseCycle, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        del self.flow

    monkeypatch.setattr(RequestResponseCycle, "__init__", without_flow)
    assert missing_hooks() == ["RequestResponseCycle().flow"]


# -- limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("descriptors", "configured", "cap"),
    [
        (20_000, None, 9840),  # (20000 - 256 reserved - 64 admin) // 2
        (1024, None, 352),
        (1_048_576, None, 524_128),
        (20_000, 50, 50),  # a configured cap below the budget stands
        (1024, 5000, 352),  # above it, the budget wins
        (300, None, 16),  # never below a floor
    ],
)
def test_connection_cap_leaves_descriptors_for_replicas(
    descriptors: int, configured: int | None, cap: int
) -> None:
    assert connection_cap(descriptors, configured) == cap


LIMITS = ListenerLimits(max_header_size=200, header_timeout=0.05, max_connections=3)
OK_HEAD = b"GET /function/hello HTTP/1.1\r\nHost: a\r\n\r\n"


class Served:
    """A gateway protocol on a fake transport, its app recording what reached it."""

    def __init__(self, limits: ListenerLimits = LIMITS, state: ServerState | None = None) -> None:
        self.calls: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self.calls.append(scope)
            body = b"ok"
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        config = Config(app=app, log_config=None, lifespan="off", ws="none")
        self.protocol: GatewayProtocol = protocol_for(limits)(
            config, state or ServerState(), {}, _loop=asyncio.get_running_loop()
        )
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    @property
    def output(self) -> bytes:
        return b"".join(self.transport.writes)

    def answer(self) -> tuple[int, dict[str, Any], bytes]:
        head, _, body = self.output.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        return status, json.loads(body), head.lower()


def assert_refused(served: Served, status: int) -> dict[str, Any]:
    code, document, head = served.answer()
    assert code == status
    assert b"content-type: application/json" in head
    assert f"x-call-id: {document['call_id']}".encode() in head
    assert b"connection: close" in head
    assert served.transport.closed
    return document


@in_loop
async def test_an_unfinished_head_past_the_limit_is_431_and_nothing_more_is_read() -> None:
    served = Served()
    served.protocol.data_received(b"GET /function/hello HTTP/1.1\r\nX-Big: ")
    served.protocol.data_received(b"a" * 150)  # 187 bytes: under 200, still held
    assert served.output == b""
    served.protocol.data_received(b"a" * 10_000)
    assert "over the limit of 200 bytes" in assert_refused(served, 431)["error"]
    writes = len(served.transport.writes)
    served.protocol.data_received(b"a" * 10_000)  # dropped unparsed
    assert len(served.transport.writes) == writes and served.calls == []


@in_loop
async def test_a_head_within_the_limit_passes_with_its_body_in_the_same_read() -> None:
    served = Served()
    head = b"POST /function/hello HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"
    served.protocol.data_received(head + b"x" * 1000)  # 1,000 bytes past the limit in total
    await asyncio.sleep(0.01)
    assert [c["path"] for c in served.calls] == ["/function/hello"]
    assert served.output.startswith(b"HTTP/1.1 200 OK") and not served.transport.closed


@in_loop
async def test_each_request_on_a_kept_alive_connection_gets_the_whole_limit() -> None:
    served = Served()
    for _ in range(5):
        served.protocol.data_received(OK_HEAD.replace(b"Host: a", b"Host: " + b"a" * 120))
        await asyncio.sleep(0.01)
    assert len(served.calls) == 5 and not served.transport.closed


@in_loop
async def test_a_head_not_complete_in_time_is_408() -> None:
    served = Served()
    served.protocol.data_received(b"GET /function/hello HTTP/1.1\r\nHo")
    await asyncio.sleep(0.2)
    assert "did not arrive within 0.05s" in assert_refused(served, 408)["error"]
    assert served.calls == []


@in_loop
async def test_a_connection_that_sends_nothing_is_408() -> None:
    served = Served()
    await asyncio.sleep(0.2)
    assert_refused(served, 408)


@in_loop
async def test_a_kept_alive_connection_idle_between_requests_gets_no_408() -> None:
    served = Served()
    served.protocol.data_received(OK_HEAD)
    await asyncio.sleep(0.2)  # past the head timeout: only uvicorn's keep-alive timer runs
    assert served.output.startswith(b"HTTP/1.1 200 OK") and not served.transport.closed
    served.protocol.data_received(OK_HEAD)
    await asyncio.sleep(0.01)
    assert len(served.calls) == 2


@in_loop
async def test_connections_past_the_cap_are_503_and_never_read() -> None:
    state = ServerState()
    held = [Served(state=state) for _ in range(3)]
    refused = Served(state=state)
    assert "too many open connections" in assert_refused(refused, 503)["error"]
    assert len(state.connections) == 3
    refused.protocol.data_received(OK_HEAD)
    refused.protocol.connection_lost(None)
    assert refused.calls == [] and len(state.connections) == 3
    held[0].transport.closed = True
    held[0].protocol.connection_lost(None)
    assert not Served(state=state).transport.closed  # room again


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", "Invalid method"),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", "header value"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  b\r\n\r\n", "whitespace"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Content-Length",
        ),
    ],
)
def test_what_llhttp_refuses_is_400_json(request_bytes: bytes, reason: str) -> None:
    async def run() -> None:
        served = Served()
        served.protocol.data_received(request_bytes)
        assert reason in assert_refused(served, 400)["error"]
        assert served.calls == []

    asyncio.run(run())


@in_loop
async def test_a_failing_app_answers_500_json() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("internal detail")

    served = Served()
    served.protocol.app = failing
    served.protocol.data_received(OK_HEAD)
    await asyncio.sleep(0.01)
    document = assert_refused(served, 500)
    assert document["error"] == "internal error in the gateway"


@in_loop
async def test_a_refusal_waits_for_the_response_in_flight() -> None:
    release = asyncio.Event()
    served = Served()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    served.protocol.app = slow
    served.protocol.data_received(OK_HEAD.replace(b"/function/hello", b"/other"))
    served.protocol.data_received(b"GET /function/hello HTTP/1.1\r\nX-Big: " + b"a" * 500)
    await asyncio.sleep(0.01)
    assert served.output == b"" and not served.transport.closed  # the first answer comes first
    release.set()
    await asyncio.sleep(0.01)
    first, _, second = served.output.partition(b"ok")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert second.startswith(b"HTTP/1.1 431") and served.transport.closed


@in_loop
async def test_an_upgrade_is_served_as_a_plain_request_and_closes() -> None:
    served = Served()
    upgrade = b"GET /function/hello HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    served.protocol.data_received(upgrade + OK_HEAD)
    await asyncio.sleep(0.01)
    assert len(served.calls) == 1
    assert b"connection: close" in served.output.lower() and served.transport.closed
