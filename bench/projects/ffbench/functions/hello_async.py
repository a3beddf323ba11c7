"""Async hello for our watchdog; ff/main_async.py is the same for functions-framework."""


async def handle(event, context):
    return "Hello, world!\n"
