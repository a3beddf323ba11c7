import asyncio


async def handle(event, context):
    await asyncio.sleep(0.05)
    return "done\n"
