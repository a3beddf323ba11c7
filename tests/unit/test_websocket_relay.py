"""gateway/websocket.py's relay between a caller's socket and a replica's tunnel (fakes
for both ends: the real ones are in tests/e2e/test_websockets.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import websocket
from gateway.websocket import Relay
from runtime.tunnel_client import TunnelBroken
from runtime.watchdog import frames


class Caller:
    """The caller's side, as Starlette's WebSocket shows it."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Tunnel:
    """The replica's tunnel: frames to hand out, frames written."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[frames.Frame | TunnelBroken] = asyncio.Queue()
        self.written: list[bytes] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def receive(self) -> frames.Frame:
        item = await self.incoming.get()
        if isinstance(item, TunnelBroken):
            raise item
        return item

    async def send(self, data: bytes) -> None:
        self.written.append(data)


def relay(timeout: float = 30, limit: int = 100) -> tuple[Relay, Caller, Tunnel, asyncio.Event]:
    caller, tunnel, leaving = Caller(), Tunnel(), asyncio.Event()
    opened = SimpleNamespace(tunnel=tunnel, handle=SimpleNamespace(leaving=leaving))
    spec = SimpleNamespace(timeout=timeout, name="f", max_message_size=limit)
    return Relay(caller, opened, spec, "call"), caller, tunnel, leaving  # type: ignore[arg-type]


def last_close(tunnel: Tunnel) -> tuple[int, str]:
    decoder = frames.Decoder(1000)
    decoder.feed(tunnel.written[-1])
    frame = decoder.next()
    assert frame is not None and frame.kind == frames.CLOSE
    return frames.parse_close(frame.payload)


def run_relay(scenario: Any) -> None:
    async def main() -> None:
        async with asyncio.timeout(10):
            await scenario()

    asyncio.run(main())


@pytest.fixture(autouse=True)
def short_graces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket, "LEAVING_GRACE", 0.0)
    monkeypatch.setattr(websocket, "CLOSE_GRACE", 0.0)


def test_messages_pass_both_ways_and_the_callers_close_code_reaches_the_replica() -> None:
    async def scenario() -> None:
        r, caller, tunnel, _ = relay()
        task = asyncio.ensure_future(r._relay())
        await caller.incoming.put({"type": "websocket.receive", "text": "hi"})
        await tunnel.incoming.put(frames.Frame(frames.BINARY, b"\x00"))
        await caller.incoming.put({"type": "websocket.disconnect", "code": 4002, "reason": "bye"})
        await task
        assert tunnel.written[0] == frames.encode(frames.TEXT, b"hi")
        assert caller.sent == [{"type": "websocket.send", "bytes": b"\x00"}]
        assert last_close(tunnel) == (4002, "bye")

    run_relay(scenario)


def test_the_replicas_close_code_reaches_the_caller() -> None:
    async def scenario() -> None:
        r, caller, tunnel, _ = relay()
        await tunnel.incoming.put(frames.Frame(frames.CLOSE, frames.close_payload(4001, "x")))
        await r._relay()
        assert caller.closed == (4001, "x")

    run_relay(scenario)


def test_a_callers_message_over_the_limit_closes_both_with_1009() -> None:
    async def scenario() -> None:
        r, caller, tunnel, _ = relay(limit=10)
        await caller.incoming.put({"type": "websocket.receive", "bytes": b"x" * 11})
        await r._relay()
        assert caller.closed is not None and caller.closed[0] == frames.TOO_BIG
        assert last_close(tunnel)[0] == frames.TOO_BIG

    run_relay(scenario)


@pytest.mark.parametrize(
    ("code", "expected"),
    [(frames.TOO_BIG, frames.TOO_BIG), (frames.INVALID_DATA, 1011), (frames.ABNORMAL, 1011)],
)
def test_a_broken_tunnel_closes_the_caller(code: int, expected: int) -> None:
    async def scenario() -> None:
        r, caller, tunnel, _ = relay()
        await tunnel.incoming.put(TunnelBroken(code, "broken"))
        await r._relay()
        assert caller.closed == (expected, "")

    run_relay(scenario)


def test_a_replica_leaving_service_closes_both_with_1001() -> None:
    async def scenario() -> None:
        r, caller, tunnel, leaving = relay()
        task = asyncio.ensure_future(r._relay())
        await asyncio.sleep(0)
        leaving.set()
        await task
        assert caller.closed is not None and caller.closed[0] == frames.GOING_AWAY
        assert last_close(tunnel)[0] == frames.GOING_AWAY

    run_relay(scenario)


def test_a_quiet_socket_closes_with_1001_idle() -> None:
    async def scenario() -> None:
        r, caller, tunnel, _ = relay(timeout=0.05)
        await r._relay()
        assert caller.closed == (frames.GOING_AWAY, "idle")
        assert last_close(tunnel) == (frames.GOING_AWAY, "idle")

    run_relay(scenario)
