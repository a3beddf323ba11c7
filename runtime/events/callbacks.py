"""POSTing each finished async call's result to its `X-Callback-Url`, at least once.

The request carries the function's answer as its body (with its
Content-Type), signed per Standard Webhooks (see signing.py):

    webhook-id           <call id>:<function>:<status>, the same on every attempt
    webhook-timestamp    unix seconds when this attempt was sent
    webhook-signature    v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

and, for reading convenience only (unsigned: a receiver acts on the id's
parts, never on these):

    X-Call-Id            the call's id, as the 202 gave it
    X-Function-Name      the function called
    X-Function-Status    the function's HTTP status (or the platform's: 504 timeout, ...)
    X-Duration-Seconds   how long the last attempt took
    X-Faas-Attempt       this callback's attempt number

The key is the function's own (`callback_secret` on the function or in
`defaults`), else `gateway.callback_secret`, else the project's generated
one, chosen by the `key` callable at each send.

The callback is owed durably: the call's result and "callback pending" are
committed together, and a sender that dies mid-POST leaves a lease that
falls due again. A 2xx answer settles it; a network error, a timeout, a
status in 408, 429 or 5xx, or any exception while preparing or sending
(a missing secret, a bad stored header) is retried with backoff, up to
`ATTEMPTS` times; then, or on any other status, the callback is marked
failed (the result stays readable at `GET /system/calls/{id}`). Attempts
are counted when a job is leased, so one whose earlier leases ran out
without an answer (a crash mid-send) is failed, not sent, once it is past
`ATTEMPTS`: nothing is leased again forever. Redirects are not followed,
and the target is checked against `gateway.callback_allow` again at send
time, in case the list changed since the call was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import aiohttp

from runtime.events import signing
from runtime.events.clock import Clock, SystemClock
from runtime.events.queue import CallbackJob, CallbackState, WorkQueue, storable_header
from runtime.events.retry import backoff
from runtime.spec import allowlist

log = logging.getLogger("faas.callbacks")

ATTEMPTS = 6
BACKOFF = 1.0
MAX_BACKOFF = 60.0
TIMEOUT = 10.0
CONCURRENCY = 32
LEASE = TIMEOUT + 20.0
IDLE_WAIT = 60.0
RETRIED = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "faas-callback/2"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class CallbackSender:
    def __init__(
        self,
        queue: WorkQueue,
        key: Callable[[str], bytes],
        allowed: Callable[[], tuple[str, ...]],
        *,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._queue = queue
        self._key = key
        self._allowed = allowed
        self._clock = clock or SystemClock()
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            due = self._queue.next_callback_due()
            room = CONCURRENCY - self._busy
            if due is None or room <= 0:
                wait = IDLE_WAIT  # woken by a new callback or a finished send
            elif due > now:
                wait = due - now
            elif await self._start(now, room):
                continue
            else:
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, IDLE_WAIT)):
                    await self._wake.wait()

    async def _start(self, now: float, room: int) -> bool:
        try:
            jobs = await self._queue.lease_callbacks(now, room, LEASE)
        except Exception:
            log.exception("leasing callbacks failed")
            return False
        for job in jobs:
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._send(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return bool(jobs)

    async def _send(self, job: CallbackJob) -> None:
        try:
            state, status, error = await self._post(job)
            due_at = 0.0
            if state is None:
                due_at = self._clock.now() + backoff(
                    job.attempt, BACKOFF, MAX_BACKOFF, self._jitter()
                )
            fields = {"call_id": job.call_id, "attempt": job.attempt, "status": status}
            if state is CallbackState.FAILED:
                log.warning("callback failed", extra={**fields, "error": error})
            elif state is None:
                log.info("callback will be retried", extra={**fields, "error": error})
            await self._queue.callback_finished(job, state, status, error, due_at)
        except Exception:
            log.exception("callback bookkeeping failed", extra={"call_id": job.call_id})
        finally:
            self._busy -= 1
            self._wake.set()

    async def _post(self, job: CallbackJob) -> tuple[CallbackState | None, int | None, str | None]:
        if job.attempt > ATTEMPTS:
            return CallbackState.FAILED, None, f"no answer after {ATTEMPTS} attempts"
        problem = allowlist.url_problem(job.url, self._allowed())
        if problem is not None:
            return CallbackState.FAILED, None, problem
        try:
            async with self._client().post(
                job.url,
                data=job.result.body,
                headers=self._headers(job),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return self._again(job), None, _describe(exc)
        except Exception as exc:  # preparing the request failed: still an attempt
            log.exception("sending a callback failed", extra={"call_id": job.call_id})
            return self._again(job), None, _describe(exc)
        if 200 <= status < 300:
            return CallbackState.SENT, status, None
        if status in RETRIED:
            return self._again(job), status, f"the target answered {status}"
        return CallbackState.FAILED, status, f"the target answered {status}"

    def _headers(self, job: CallbackJob) -> dict[str, str]:
        result = job.result
        content_type = next(
            (v for k, v in result.headers if k == "content-type" and storable_header(k, v)),
            DEFAULT_CONTENT_TYPE,
        )
        msg_id = signing.message_id(job.call_id, job.function, result.status)
        return {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            **signing.headers(self._key(job.function), msg_id, self._clock.now(), result.body),
            "X-Call-Id": job.call_id,
            "X-Function-Name": job.function,
            "X-Function-Status": str(result.status),
            "X-Duration-Seconds": f"{result.duration:.3f}",
            "X-Faas-Attempt": str(job.attempt),
        }

    def _again(self, job: CallbackJob) -> CallbackState | None:
        return None if job.attempt < ATTEMPTS else CallbackState.FAILED

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                trust_env=False, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
            )
        return self._session

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
