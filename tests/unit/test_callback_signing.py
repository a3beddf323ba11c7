"""Callbacks per Standard Webhooks, checked with the `standardwebhooks` package receivers use.

The sender runs against a real SQLite queue and a receiver on 127.0.0.1; the
keys come from a real secret store and the project's generated key file.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from runtime.events import callbacks, signing
from runtime.events.callbacks import CallbackSender
from runtime.events.queue import CallbackState, Kind, Message, Result, State
from runtime.events.service import EventService, generated_key
from runtime.events.sqlite import SqliteQueue
from runtime.secrets import SecretStore
from runtime.spec import GatewaySettings, load_project_text

KEY = b"k" * 32
SECRET = signing.secret_text(KEY)
BODY = b'{"ok": true}'
SIG = "webhook-signature"


def signed(
    body: bytes = BODY, *, key: bytes = KEY, status: int = 200, at: float | None = None
) -> dict[str, str]:
    msg_id = signing.message_id("5b1e" * 8, "resize", status)
    return signing.headers(key, msg_id, time.time() if at is None else at, body)


def verify(body: bytes, headers: dict[str, str], secret: str | bytes = SECRET) -> None:
    Webhook(secret).verify(body, headers, json_parse=False)


# -- the signature -----------------------------------------------------------------------


def test_a_signed_callback_verifies_with_the_standardwebhooks_package() -> None:
    headers = signed()
    verify(BODY, headers)
    assert headers["webhook-signature"].startswith("v1,")
    assert signing.parse_message_id(headers["webhook-id"]) == ("5b1e" * 8, "resize", 200)
    verify(BODY, headers, KEY)  # a receiver may pass the key's bytes too


def _swap(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    return {**headers, name: value}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (_swap(h, "webhook-id", "f" * 32 + ":resize:200"), b), id="id"),
        pytest.param(
            lambda h, b: (_swap(h, "webhook-id", "5b1e" * 8 + ":billing:200"), b), id="function"
        ),
        pytest.param(
            lambda h, b: (_swap(h, "webhook-id", "5b1e" * 8 + ":resize:500"), b), id="status"
        ),
        pytest.param(
            lambda h, b: (
                _swap(h, "webhook-timestamp", str(int(h["webhook-timestamp"]) + 1)),
                b,
            ),
            id="timestamp",
        ),
        pytest.param(lambda h, b: (h, b + b" "), id="body"),
        pytest.param(
            lambda h, b: (_swap(h, "webhook-signature", signed(key=b"x" * 32)[SIG]), b),
            id="another-key",
        ),
    ],
)
def test_tampering_with_any_signed_part_fails(
    tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]],
) -> None:
    headers, body = tamper(signed(), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(body, headers)


def test_a_stale_timestamp_fails_even_with_a_valid_signature() -> None:
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, signed(at=time.time() - 6 * 60))
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(BODY, signed(at=time.time() + 6 * 60))


def test_ids_with_the_separator_of_the_signed_content_are_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        signing.sign(KEY, "a.b", 1, BODY)
    with pytest.raises(ValueError):
        signing.parse_message_id("abc:resize")


def test_secrets_in_whsec_form_decode_as_the_package_decodes_them() -> None:
    secret = signing.new_secret()
    key = signing.key_from_secret(secret.encode() + b"\n")
    assert len(key) == signing.KEY_BYTES
    assert Webhook(secret)._whsecret == key
    unpadded = "whsec_" + base64.b64encode(b"a" * 31).decode().rstrip("=")
    assert signing.key_from_secret(unpadded.encode()) == b"a" * 31
    assert signing.key_from_secret(b"plain value") == b"plain value"  # used as it is
    with pytest.raises(signing.BadSecret):
        signing.key_from_secret(b"")


# -- keys --------------------------------------------------------------------------------


def test_the_generated_key_is_owner_only_in_whsec_form(tmp_path: Path) -> None:
    path = tmp_path / ".faas" / "callback-key"
    key = generated_key(path)
    text = path.read_text().strip()
    assert text.startswith("whsec_") and path.stat().st_mode & 0o777 == 0o600
    assert signing.key_from_secret(text.encode()) == key and len(key) == 32
    assert generated_key(path) == key


def test_an_old_hex_key_file_is_converted_keeping_its_key(tmp_path: Path) -> None:
    path = tmp_path / "callback-key"
    old = "ab" * 32
    path.write_text(old + "\n")
    path.chmod(0o600)
    assert generated_key(path) == old.encode()  # the bytes that signed before
    text = path.read_text().strip()
    assert text.startswith("whsec_") and path.stat().st_mode & 0o777 == 0o600
    headers = signed(key=old.encode())
    verify(BODY, headers, text)


def test_a_function_key_comes_from_the_function_then_the_gateway_then_the_file(
    tmp_path: Path,
) -> None:
    own, shared = signing.new_secret(), b"a gateway-wide secret"
    project = load_project_text(
        """\
version: 1
gateway:
  callback_secret: shared-key
defaults:
  callback_secret: team-key
functions:
  billing:
    handler: functions/billing.py
    callback_secret: billing-key
  resize:
    handler: functions/resize.py
""",
        filename="functions.yaml",
        root=tmp_path,
    )
    assert project.functions["billing"].callback_secret == "billing-key"
    assert project.functions["resize"].callback_secret == "team-key"  # from defaults
    store = SecretStore(
        tmp_path,
        environ={
            "FAAS_SECRET_BILLING_KEY": own,
            "FAAS_SECRET_TEAM_KEY": "whsec_" + base64.b64encode(b"t" * 24).decode(),
            "FAAS_SECRET_SHARED_KEY": shared.decode(),
        },
    )
    platform = SimpleNamespace(project=project)
    service = EventService(platform, tmp_path, store, queue=SqliteQueue(tmp_path / "q.db"))  # type: ignore[arg-type]
    assert service.signing_key("billing") == signing.key_from_secret(own.encode())
    assert service.signing_key("resize") == b"t" * 24
    only_gateway = SimpleNamespace(
        name="p",
        gateway=GatewaySettings(callback_secret="shared-key"),
        functions={"resize": SimpleNamespace(callback_secret=None)},
    )
    platform.project = only_gateway
    assert service.signing_key("resize") == shared
    assert service.signing_key("removed-since") == shared
    platform.project = SimpleNamespace(name="p", gateway=GatewaySettings(), functions={})
    assert service.signing_key("resize") == generated_key(tmp_path / "callback-key")


# -- the sender ----------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


async def receiving(work: Callable[[Receiver], Awaitable[None]]) -> None:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/done"
    try:
        await work(receiver)
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(10):
        while not await condition():  # noqa: ASYNC110 - polling what the sender records
            await asyncio.sleep(0.01)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callbacks, "BACKOFF", 0.001)
    monkeypatch.setattr(callbacks, "MAX_BACKOFF", 0.002)


async def finished_call(
    queue: SqliteQueue, call_id: str, function: str, url: str, result: Result
) -> None:
    """A call stored, leased and finished with `result`, its callback now owed."""
    message = Message(call_id, Kind.CALL, time.time(), callback_url=url)
    await queue.enqueue(message, [function], {function: 10})
    (delivery,) = await queue.lease(function, 1, time.time(), 30)
    assert await queue.finish(delivery, State.DONE, result, time.time())


def sending(
    tmp_path: Path,
    key: Callable[[str], bytes],
    work: Callable[[SqliteQueue, CallbackSender, Receiver], Awaitable[None]],
) -> None:
    async def main() -> None:
        queue = SqliteQueue(tmp_path / "q.db")
        await queue.open(time.time())

        async def with_receiver(receiver: Receiver) -> None:
            sender = CallbackSender(queue, key, lambda: ("127.0.0.1",), jitter=lambda: 0.0)
            task = asyncio.create_task(sender.run())
            try:
                await work(queue, sender, receiver)
            finally:
                await sender.stop()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        try:
            await receiving(with_receiver)
        finally:
            await queue.close()

    asyncio.run(main())


def test_callbacks_carry_a_signature_over_call_function_and_status(tmp_path: Path) -> None:
    keys = {"billing": b"b" * 32, "resize": b"r" * 32}

    async def work(queue: SqliteQueue, sender: CallbackSender, receiver: Receiver) -> None:
        answer = Result(201, (("content-type", "text/plain"),), b"made", None, 0.25)
        await finished_call(queue, "c1", "billing", receiver.url, answer)
        await finished_call(queue, "c2", "resize", receiver.url, Result(503, error="down"))
        sender.wake()

        async def both() -> bool:
            return len(receiver.got) == 2

        await until(both)
        by_id = {h["webhook-id"]: (h, body) for h, body in receiver.got}
        headers, body = by_id["c1:billing:201"]
        verify(body, headers, signing.secret_text(keys["billing"]))
        assert body == b"made" and headers["Content-Type"] == "text/plain"
        assert headers["X-Call-Id"] == "c1" and headers["X-Function-Status"] == "201"
        with pytest.raises(WebhookVerificationError):  # one function's key is not another's
            verify(body, headers, signing.secret_text(keys["resize"]))
        headers, body = by_id["c2:resize:503"]
        verify(body, headers, signing.secret_text(keys["resize"]))
        record = await queue.call("c2")
        assert record is not None and record.callback_state is CallbackState.SENT

    sending(tmp_path, keys.__getitem__, work)


def test_a_bad_stored_header_never_reaches_the_wire(tmp_path: Path) -> None:
    """A result stored before headers were checked: its Content-Type is not sent."""

    async def work(queue: SqliteQueue, sender: CallbackSender, receiver: Receiver) -> None:
        bad = Result(200, (("content-type", "text/plain\nx-injected: 1"),), b"out", None, 0.1)
        await finished_call(queue, "c1", "resize", receiver.url, bad)
        sender.wake()

        async def sent() -> bool:
            record = await queue.call("c1")
            return record is not None and record.callback_state is CallbackState.SENT

        await until(sent)
        ((headers, body),) = receiver.got
        assert headers["Content-Type"] == callbacks.DEFAULT_CONTENT_TYPE
        assert "x-injected" not in {name.lower() for name in headers}
        verify(body, headers)

    sending(tmp_path, lambda function: KEY, work)


@pytest.mark.usefixtures("fast_retries")
def test_a_sender_that_raises_counts_attempts_and_then_stops(tmp_path: Path) -> None:
    tries: list[str] = []

    def broken_key(function: str) -> bytes:
        tries.append(function)
        raise RuntimeError("no key today")

    async def work(queue: SqliteQueue, sender: CallbackSender, receiver: Receiver) -> None:
        await finished_call(queue, "c1", "resize", receiver.url, Result(200, (), b"x"))
        sender.wake()

        async def failed() -> bool:
            record = await queue.call("c1")
            return record is not None and record.callback_state is CallbackState.FAILED

        await until(failed)
        record = await queue.call("c1")
        assert record is not None
        assert record.callback_attempts == callbacks.ATTEMPTS == len(tries)
        assert record.callback_error == "RuntimeError: no key today"
        assert queue.next_callback_due() is None  # nothing left to lease, ever
        assert receiver.got == []

    sending(tmp_path, broken_key, work)


def test_leases_that_ran_out_count_and_end_in_failed(tmp_path: Path) -> None:
    """A sender that died mid-POST each time: past the attempts, the job is failed, not sent."""

    async def work(queue: SqliteQueue, sender: CallbackSender, receiver: Receiver) -> None:
        await finished_call(queue, "c1", "resize", receiver.url, Result(200, (), b"x"))
        for _ in range(callbacks.ATTEMPTS):
            (job,) = await queue.lease_callbacks(time.time(), 1, 0.0)  # never reported back
        assert job.attempt == callbacks.ATTEMPTS
        sender.wake()

        async def failed() -> bool:
            record = await queue.call("c1")
            return record is not None and record.callback_state is CallbackState.FAILED

        await until(failed)
        record = await queue.call("c1")
        assert record is not None and record.callback_attempts == callbacks.ATTEMPTS + 1
        assert record.callback_error is not None and "attempts" in record.callback_error
        assert receiver.got == []

    sending(tmp_path, lambda function: KEY, work)
