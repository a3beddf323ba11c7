import asyncio
import time


def handle(event, context):
    time.sleep(5)
    return "too late"


async def handle_async(event, context):
    await asyncio.sleep(5)
    return "too late"
