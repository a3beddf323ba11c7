"""Echoes each message back; a few messages ask for something else."""

from faas.handler import Context, Event, WebSocket, WebSocketClosed


def handle(event: Event, context: Context) -> str:
    return "this function speaks WebSocket"


async def handle_websocket(ws: WebSocket, context: Context) -> None:
    await ws.accept("echo.v1" if "echo.v1" in ws.subprotocols else None)
    try:
        while True:
            message = await ws.receive()
            if message == "where":
                await ws.send(f"{ws.path} {ws.query.get('q', '')} {ws.headers.get('x-probe', '')}")
            elif message == "close please":
                await ws.close(4001, "as asked")
                return
            elif message == "too big":
                await ws.send(b"x" * (64 * 1024 + 1))
            else:
                await ws.send(message)
    except WebSocketClosed as closed:
        context.logger.info(f"client closed with {closed.code} {closed.reason}")
