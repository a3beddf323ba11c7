"""Async hello for functions-framework --asgi (a Starlette request in, a str out)."""


async def handle(request):
    return "Hello, world!\n"
