"""faas.testing.websocket: a WebSocket handler against a scripted client, in-process.

The handler is tests/e2e/projects/websockets/functions/echo.py, which
tests/e2e/test_websockets.py runs through a real gateway."""

from __future__ import annotations

from pathlib import Path

from faas.handler import Context, WebSocket
from faas.testing import websocket

ECHO = Path(__file__).resolve().parents[1] / "e2e/projects/websockets/functions/echo.py"


def test_messages_echo_and_the_clients_close_reaches_the_handler() -> None:
    result = websocket(
        str(ECHO),
        ["hi", b"\x00\xff", "where"],
        path="/room/1",
        query={"q": "yes"},
        headers={"X-Probe": "p"},
        subprotocols=["echo.v1"],
        close_code=4002,
    )
    assert result.accepted and result.subprotocol == "echo.v1"
    assert result.sent == ["hi", b"\x00\xff", "/room/1 yes p"]
    assert (result.close_code, result.error) == (4002, None)


def test_the_handlers_close_and_a_message_too_big() -> None:
    closed = websocket(str(ECHO), ["close please", "never read"])
    assert (closed.close_code, closed.close_reason) == (4001, "as asked")
    too_big = websocket(str(ECHO), ["too big"], max_message_size=64 * 1024)
    assert too_big.close_code == 1009 and too_big.sent == []


def test_a_handler_that_raises_closes_with_1011_and_keeps_the_error() -> None:
    async def broken(ws: WebSocket, context: Context) -> None:
        await ws.accept()
        raise ValueError("bad state")

    result = websocket(broken, ["x"])
    assert result.close_code == 1011
    assert isinstance(result.error, ValueError)
