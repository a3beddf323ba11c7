from faas.handler import Context, Event, WebSocket


def handle(event: Event, context: Context) -> str:
    return "websocket echo"


async def handle_websocket(ws: WebSocket, context: Context) -> None:
    await ws.accept()
    async for message in ws:
        await ws.send(message)
