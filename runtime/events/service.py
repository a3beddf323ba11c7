"""Durable work as one object: what `faas up` starts and stops, and what the gateway calls.

It owns the queue, the delivery worker, the callback sender and the cron
scheduler, and ties them to the platform: every function counts the queue's
due backlog toward its depth (so a function at zero with work waiting is
started), and work falling due wakes both the worker and the function's
autoscaler. The project is read from the platform each time, so a reloaded
functions.yaml changes subscriptions and limits for the next publish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from runtime.events import signing
from runtime.events.callbacks import CallbackSender
from runtime.events.clock import Clock, SystemClock
from runtime.events.delivery import Deliverer
from runtime.events.queue import (
    CallRecord,
    DeadLetter,
    Delivery,
    Kind,
    Message,
    Pairs,
    State,
    WorkQueue,
)
from runtime.events.scheduler import Scheduler
from runtime.events.sqlite import SqliteQueue, queue_path
from runtime.platform import Platform
from runtime.secrets import SecretStore
from runtime.spec import GatewaySettings, allowlist, topics

log = logging.getLogger("faas.events")

CALLBACK_KEY_FILE = "callback-key"


class EventService:
    def __init__(
        self,
        platform: Platform,
        state_dir: Path,
        secrets: SecretStore,
        *,
        queue: WorkQueue | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.platform = platform
        self.queue: WorkQueue = queue or SqliteQueue(queue_path(state_dir, platform.project.name))
        self._state_dir = state_dir
        self._secrets = secrets
        self._clock = clock or SystemClock()
        self._tasks: list[asyncio.Task[None]] = []
        self._scheduling: asyncio.Task[None] | None = None
        self.deliverer: Deliverer | None = None
        self.sender: CallbackSender | None = None
        self._project_key: bytes | None = None
        self._uncount: Callable[[], None] = lambda: None

    @property
    def settings(self) -> GatewaySettings:
        return self.platform.project.gateway

    # -- lifetime ----------------------------------------------------------------

    async def start(self) -> None:
        """Open the queue (its leftovers fall due again) and start delivering and firing."""
        await self.queue.open(self._clock.now())
        settings = self.settings
        deliverer = Deliverer(
            self.platform,
            self.queue,
            max_result_size=settings.max_body_size,
            retention=settings.result_retention,
            clock=self._clock,
        )
        self._project_key = None
        self.signing_key()  # made (or converted) now, so a receiver can be given it at once
        sender = CallbackSender(
            self.queue,
            self.signing_key,
            lambda: self.settings.callback_allow,
            clock=self._clock,
        )
        deliverer.on_finished = functools.partial(_wake_sender, sender)
        self.deliverer, self.sender = deliverer, sender
        self.queue.on_due = self._on_due
        # Every function's queue depth counts its due backlog, functions added later too.
        self._uncount = self.platform.count_backlog(self.queue.pending)
        self._spawn(deliverer.run())
        self._spawn(sender.run())
        self.reconfigure()

    def reconfigure(self) -> None:
        """Follow the platform's project (at start, and after a reload of functions.yaml):
        the scheduler restarts with the schedules as they now are."""
        if self._scheduling is not None:
            self._scheduling.cancel()
        scheduler = Scheduler(self.queue, self.platform.project.functions.values(), self._clock)
        self._scheduling = self._spawn(scheduler.run())
        if self.deliverer is not None:
            self.deliverer.wake()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(_report_crash)
        self._tasks = [*(t for t in self._tasks if not t.done()), task]
        return task

    def _on_due(self, function: str) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()
        if function in self.platform.pools:
            self.platform.demand(function)

    async def close(self) -> None:
        """Stop firing and delivering; work still leased falls due at the next start.

        Never raises: the platform's own shutdown (removing containers) comes next.
        """
        try:
            self._uncount()
            if self.deliverer is not None:
                await self.deliverer.stop()
            if self.sender is not None:
                await self.sender.stop()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            self._scheduling = None
            await self.queue.close()
        except Exception:
            log.exception("closing the event queue failed; leased work falls due at next start")

    def signing_key(self, function: str | None = None) -> bytes:
        """The key signing `function`'s callbacks, read at each send so a reload applies.

        The function's `callback_secret` (its own or from `defaults`), else
        `gateway.callback_secret`, else the project's key generated in .faas/.
        """
        spec = self.platform.project.functions.get(function) if function else None
        name = (spec.callback_secret if spec else None) or self.settings.callback_secret
        if name:
            return signing.key_from_secret(self._secrets.get(name))
        if self._project_key is None:
            self._project_key = generated_key(self._state_dir / CALLBACK_KEY_FILE)
        return self._project_key

    # -- events ------------------------------------------------------------------

    def subscribers(self, topic: str) -> list[str]:
        functions = self.platform.project.functions
        return topics.subscribers(topic, ((name, spec.events) for name, spec in functions.items()))

    async def publish(
        self, topic: str, body: bytes, content_type: str, functions: list[str]
    ) -> str:
        """Store an event for each subscriber (all or none); raises QueueFull past a backlog."""
        event_id = uuid.uuid4().hex
        if functions:
            message = Message(
                id=event_id,
                kind=Kind.EVENT,
                created_at=self._clock.now(),
                headers=(("content-type", content_type),),
                body=body,
                topic=topic,
            )
            await self.queue.enqueue(message, functions, self._limits(functions))
        return event_id

    # -- async calls -------------------------------------------------------------

    def callback_problem(self, url: str) -> str | None:
        return allowlist.url_problem(url, self.settings.callback_allow)

    async def submit(
        self,
        function: str,
        *,
        method: str,
        path: str,
        query: bytes,
        headers: Pairs,
        body: bytes,
        callback_url: str | None,
    ) -> str:
        call_id = uuid.uuid4().hex
        message = Message(
            id=call_id,
            kind=Kind.CALL,
            created_at=self._clock.now(),
            method=method,
            path=path,
            query=query,
            headers=headers,
            body=body,
            callback_url=callback_url,
        )
        await self.queue.enqueue(message, [function], self._limits([function]))
        return call_id

    async def cancel(self, call_id: str) -> State | None:
        return await self.queue.cancel(call_id, self._clock.now())

    async def call(self, call_id: str) -> CallRecord | None:
        return await self.queue.call(call_id)

    # -- dead letters ------------------------------------------------------------

    async def dead_letters(self, function: str | None = None) -> list[DeadLetter]:
        return await self.queue.dead_letters(function)

    async def replay(self, delivery_id: int) -> bool:
        return await self.queue.replay(delivery_id, self._clock.now())

    async def drop(self, delivery_id: int) -> bool:
        return await self.queue.drop(delivery_id)

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self.queue.counts()

    def _limits(self, functions: list[str]) -> dict[str, int]:
        return {name: self.platform.function(name).max_backlog for name in functions}


def generated_key(path: Path) -> bytes:
    """The project's callback key, in an owner-only file as `whsec_<base64>`, made on first use.

    A file from before Standard Webhooks holds a hex string, which was the
    key's bytes: it is rewritten in whsec form, the key unchanged.
    """
    try:
        text = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = signing.new_secret()
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return generated_key(path)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret + "\n")
        return signing.key_from_secret(secret.encode())
    key = signing.key_from_secret(text)
    if not text.startswith(signing.SECRET_PREFIX.encode()):
        _write_owner_only(path, signing.secret_text(key) + "\n")
        log.warning("converted the callback key to whsec_ form", extra={"path": str(path)})
    return key


def _write_owner_only(path: Path, content: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)
    temporary.replace(path)


def _wake_sender(sender: CallbackSender, delivery: Delivery) -> None:
    if delivery.message.callback_url is not None:
        sender.wake()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("an event loop task stopped", exc_info=task.exception())
