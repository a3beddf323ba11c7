"""The callback sender over the JetStream queue: signed per Standard Webhooks, bounded attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from runtime.events import callbacks, signing
from runtime.events.callbacks import CallbackSender
from runtime.events.jetstream.store import JetStreamQueue
from runtime.events.queue import CallbackState, Kind, Message, Result, State
from tests.nats_server import NatsServer

KEY = b"j" * 32


@dataclass
class Sender:
    queue: JetStreamQueue
    sender: CallbackSender

    async def finished_call(self, call_id: str, url: str, result: Result) -> None:
        """A call stored, leased and finished with `result`; the sender told, as the worker does."""
        queue = self.queue
        message = Message(call_id, Kind.CALL, time.time(), callback_url=url)
        await queue.enqueue(message, ["resize"], {"resize": 10})
        deadline = time.monotonic() + 5
        while not (leased := await queue.lease("resize", 1, time.time(), 30)):
            assert time.monotonic() < deadline, "the call never fell due"
            await asyncio.sleep(0.05)
        assert await queue.finish(leased[0], State.DONE, result, time.time())
        while queue.next_callback_due() is None:
            assert time.monotonic() < deadline, "no callback owed"
            await asyncio.sleep(0.05)
        self.sender.wake()

    async def callback_state(self, call_id: str, state: CallbackState) -> None:
        deadline = time.monotonic() + 20
        while (record := await self.queue.call(call_id)) is None or (
            record.callback_state is not state
        ):
            assert time.monotonic() < deadline, f"callback of {call_id} never became {state}"
            await asyncio.sleep(0.05)


def sending(
    server: NatsServer,
    key: Callable[[str], bytes],
    work: Callable[[Sender, str, list[tuple[dict[str, str], bytes]]], Awaitable[None]],
) -> None:
    """Run `work` with a queue, a running sender and a receiver on 127.0.0.1."""

    async def main() -> None:
        got: list[tuple[dict[str, str], bytes]] = []

        async def handle(request: web.Request) -> web.Response:
            got.append((dict(request.headers), await request.read()))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/done", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/done"
        queue = JetStreamQueue(server.url, "hooks", refresh_interval=0.05, poll_interval=0.1)
        await queue.open(time.time())
        sender = CallbackSender(queue, key, lambda: ("127.0.0.1",), jitter=lambda: 0.0)
        task = asyncio.create_task(sender.run())
        try:
            await asyncio.wait_for(work(Sender(queue, sender), url, got), 30)
        finally:
            await sender.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await queue.close()
            await runner.cleanup()

    asyncio.run(main())


def test_a_callback_is_signed_and_verifies(nats_server: NatsServer) -> None:
    async def work(it: Sender, url: str, got: list[tuple[dict[str, str], bytes]]) -> None:
        answer = Result(200, (("content-type", "text/plain"),), b"done", None, 0.1)
        await it.finished_call("c1", url, answer)
        await it.callback_state("c1", CallbackState.SENT)
        ((headers, body),) = got
        Webhook(signing.secret_text(KEY)).verify(body, headers, json_parse=False)
        assert headers["webhook-id"] == "c1:resize:200" and body == b"done"

    sending(nats_server, lambda function: KEY, work)


def test_a_sender_that_raises_stops_after_its_attempts(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "BACKOFF", 0.001)
    monkeypatch.setattr(callbacks, "MAX_BACKOFF", 0.002)
    tries: list[str] = []

    def broken_key(function: str) -> bytes:
        tries.append(function)
        raise RuntimeError("no key today")

    async def work(it: Sender, url: str, got: list[tuple[dict[str, str], bytes]]) -> None:
        await it.finished_call("c1", url, Result(200, (), b"x"))
        await it.callback_state("c1", CallbackState.FAILED)
        record = await it.queue.call("c1")
        assert record is not None
        assert record.callback_attempts == callbacks.ATTEMPTS == len(tries)
        assert record.callback_error == "RuntimeError: no key today"
        assert got == []

    sending(nats_server, broken_key, work)
