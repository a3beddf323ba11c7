import asyncio
import os


async def handle(event, context):
    await asyncio.sleep(int(event.query.get("ms", "300")) / 1000)
    return {"replica": os.uname().nodename}
