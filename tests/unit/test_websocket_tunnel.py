"""The WebSocket tunnel: its framing (pure), and the real watchdog at the other end of
runtime/tunnel_client.py (a subprocess on loopback, no container)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.tunnel_client import TunnelBroken, TunnelConnection, connect
from runtime.watchdog import frames
from tests.unit.test_watchdog_server import TOKEN, Launcher, Watchdog

HANDLER = """
    from faas.handler import WebSocketClosed


    def handle(event, context):
        return "http"


    async def handle_websocket(ws, context):
        if ws.query.get("refuse"):
            await ws.close(4003, "not you")
            return
        await ws.accept(ws.subprotocols[0] if ws.subprotocols else None)
        try:
            async for message in ws:
                if message == "close":
                    await ws.close(4000, "asked to")
                    return
                if message == "raise":
                    raise RuntimeError("boom")
                if message == "big":
                    await ws.send(b"x" * 2000)
                    continue
                await ws.send(message)
        except WebSocketClosed:
            raise
        await ws.send("never: the client closed")
"""


# -- framing ---------------------------------------------------------------------------


def test_a_frame_splits_anywhere_and_decodes_whole() -> None:
    data = frames.encode(frames.TEXT, "héllo".encode()) + frames.encode_close(4001, "bye")
    decoder = frames.Decoder(100)
    got = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        while (frame := decoder.next()) is not None:
            got.append(frame)
    assert got == [
        frames.Frame(frames.TEXT, "héllo".encode()),
        frames.Frame(frames.CLOSE, b"\x0f\xa1bye"),
    ]
    assert frames.parse_close(got[1].payload) == (4001, "bye")
    assert decoder.buffered == 0


def test_a_length_over_the_limit_is_refused_from_its_head_with_1009() -> None:
    decoder = frames.Decoder(10)
    decoder.feed(frames.HEAD.pack(frames.BINARY, 11))
    with pytest.raises(frames.FrameError) as caught:
        decoder.next()
    assert caught.value.code == frames.TOO_BIG


@pytest.mark.parametrize(
    "data",
    [
        frames.HEAD.pack(99, 0),  # unknown kind
        frames.HEAD.pack(frames.CLOSE, 200) + b"x" * 200,  # close payload too long
        frames.HEAD.pack(frames.ACCEPT, 1000),  # subprotocol too long
    ],
)
def test_malformed_frames_are_protocol_errors(data: bytes) -> None:
    decoder = frames.Decoder(1 << 20)
    decoder.feed(data)
    with pytest.raises(frames.FrameError) as caught:
        decoder.next()
    assert caught.value.code == frames.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "payload", [b"\x03\xed", b"\x03\xee", b"\x00\x01", b"\x03", b"\x03\xe8\xff"]
)
def test_close_codes_that_may_not_be_sent_and_bad_reasons_are_refused(payload: bytes) -> None:
    with pytest.raises(frames.FrameError):
        frames.parse_close(payload)


def test_a_long_reason_is_cut_on_a_character_boundary() -> None:
    code, reason = frames.parse_close(frames.close_payload(1000, "é" * 100))
    assert code == 1000 and reason == "é" * 61


# -- the watchdog's end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def watchdog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watchdog]:
    launcher = Launcher(tmp_path_factory.mktemp("ws"))
    try:
        yield launcher.start({"app.py": HANDLER}, handler_file="app.py")
    finally:
        launcher.kill_all()


def head(query: str = "", protocols: str = "") -> bytes:
    lines = f"GET /room{query} HTTP/1.1\r\nhost: x\r\nx-faas-token: {TOKEN}\r\n"
    if protocols:
        lines += f"sec-websocket-protocol: {protocols}\r\n"
    return lines.encode()


OPENED: list[TunnelConnection] = []


async def opened(wd: Watchdog, query: str = "", protocols: str = "") -> TunnelConnection:
    tunnel = await connect(f"127.0.0.1:{wd.port}", 1000, head(query, protocols), 5)
    OPENED.append(tunnel)
    return tunnel


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        try:
            async with asyncio.timeout(10):
                await coro
        finally:
            for tunnel in OPENED:
                tunnel.close()
            await asyncio.gather(*(t.lost for t in OPENED))
            OPENED.clear()

    asyncio.run(bounded())


def test_echo_of_text_and_binary_and_a_client_close(watchdog: Watchdog) -> None:
    async def scenario() -> None:
        tunnel = await opened(watchdog, protocols="chat, other")
        assert await tunnel.receive() == frames.Frame(frames.ACCEPT, b"chat")
        await tunnel.send(frames.encode(frames.TEXT, b"hi"))
        await tunnel.send(frames.encode(frames.BINARY, b"\x00\xff"))
        assert await tunnel.receive() == frames.Frame(frames.TEXT, b"hi")
        assert await tunnel.receive() == frames.Frame(frames.BINARY, b"\x00\xff")
        await tunnel.send(frames.encode_close(4100, "done"))
        await tunnel.lost  # the handler ended on WebSocketClosed: the watchdog closes
        with pytest.raises(TunnelBroken):
            await tunnel.receive()

    run(scenario())


def test_the_handler_closes_with_its_own_code(watchdog: Watchdog) -> None:
    async def scenario() -> None:
        tunnel = await opened(watchdog)
        assert (await tunnel.receive()).kind == frames.ACCEPT
        await tunnel.send(frames.encode(frames.TEXT, b"close"))
        frame = await tunnel.receive()
        assert frame.kind == frames.CLOSE
        assert frames.parse_close(frame.payload) == (4000, "asked to")

    run(scenario())


def test_refused_before_accepting_and_raising_close_with_their_codes(watchdog: Watchdog) -> None:
    async def scenario() -> None:
        refused = await opened(watchdog, "?refuse=1")
        frame = await refused.receive()
        assert frames.parse_close(frame.payload) == (4003, "not you")
        raising = await opened(watchdog)
        assert (await raising.receive()).kind == frames.ACCEPT
        await raising.send(frames.encode(frames.TEXT, b"raise"))
        frame = await raising.receive()
        assert frames.parse_close(frame.payload)[0] == frames.INTERNAL_ERROR

    run(scenario())
    assert "boom" in watchdog.stdout() + watchdog.stderr()


def test_messages_over_the_limit_close_with_1009_both_ways(watchdog: Watchdog) -> None:
    async def scenario() -> None:
        sending = await opened(watchdog)  # max 1000 bytes: the handler's 2000 is refused
        assert (await sending.receive()).kind == frames.ACCEPT
        await sending.send(frames.encode(frames.TEXT, b"big"))
        frame = await sending.receive()
        assert frames.parse_close(frame.payload)[0] == frames.TOO_BIG
        receiving = await opened(watchdog)
        assert (await receiving.receive()).kind == frames.ACCEPT
        await receiving.send(frames.HEAD.pack(frames.BINARY, 5000))
        frame = await receiving.receive()
        assert frames.parse_close(frame.payload)[0] == frames.TOO_BIG

    run(scenario())


def test_a_module_without_handle_websocket_refuses_with_1011(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        wd = launcher.start(
            {"app.py": "def handle(event, context):\n    return 'x'\n"}, handler_file="app.py"
        )

        async def scenario() -> None:
            tunnel = await connect(f"127.0.0.1:{wd.port}", 1000, head(), 5)
            OPENED.append(tunnel)
            frame = await tunnel.receive()
            assert frames.parse_close(frame.payload)[0] == frames.INTERNAL_ERROR

        run(scenario())
        assert "handle_websocket is missing in app.py" in wd.stdout() + wd.stderr()
    finally:
        launcher.kill_all()


def test_a_stopping_replica_closes_its_sockets_with_1001(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        wd = launcher.start({"app.py": HANDLER}, handler_file="app.py")

        async def scenario() -> None:
            tunnel = await opened(wd)
            assert (await tunnel.receive()).kind == frames.ACCEPT
            wd.proc.send_signal(signal.SIGTERM)
            frame = await tunnel.receive()
            assert frames.parse_close(frame.payload)[0] == frames.GOING_AWAY

        run(scenario())
        assert wd.proc.wait(timeout=10) == 0
    finally:
        launcher.kill_all()


# -- the gateway's end, facing a hostile replica ------------------------------------------


async def hostile_replica(written: bytes) -> tuple[asyncio.Server, str]:
    """A 'replica' that answers any tunnel with `written`, then waits."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(written)
        await writer.drain()
        await reader.read()  # until the gateway's end closes
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("written", "code"),
    [
        (frames.HEAD.pack(frames.BINARY, 1 << 30), frames.TOO_BIG),  # refused from its head
        (frames.encode(frames.TEXT, b"\xff\xfe"), frames.INVALID_DATA),
        (frames.encode(frames.CLOSE, b"\x03\xed"), frames.PROTOCOL_ERROR),  # 1005 is not sendable
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", frames.PROTOCOL_ERROR),
    ],
)
def test_what_a_hostile_replica_writes_breaks_only_its_own_tunnel(
    written: bytes, code: int
) -> None:
    async def scenario() -> None:
        server, address = await hostile_replica(frames.encode(frames.ACCEPT, b"") + written)
        async with server:
            tunnel = await connect(address, 1000, head(), 5)
            OPENED.append(tunnel)
            assert (await tunnel.receive()).kind == frames.ACCEPT
            with pytest.raises(TunnelBroken) as caught:
                await tunnel.receive()
            assert caught.value.code == code
            await tunnel.lost  # the connection is dropped, never reused
            assert tunnel.decoder.buffered <= len(written)

    run(scenario())
