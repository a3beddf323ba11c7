"""Serving invocations: authentication, readiness, running handlers with timeouts, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import inspect
import math
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from faas.handler import JSON_TYPE, BodyStream, Context, Event, Headers

from .body import RequestBodyError
from .config import ConfigError, Settings, forget_variable, load_settings
from .contract import (
    INVALID_RETURN,
    RAISED,
    dump_json,
    error_body,
    new_call_id,
    timed_out,
    to_reply,
)
from .json_log import log, setup_logging
from .lines import LineWriter
from .loader import Handler, HandlerLoadError, LoadFailure, load_handler, reload_handler
from .protocol import Connection, Request
from .wire import (
    ATTEMPT_HEADER,
    CALL_ID_HEADER,
    CLAIM_HEADER,
    CLAIMED,
    EVENT_ID_HEADER,
    FUNCTION_NAME_ENV,
    INIT_PATH,
    MAX_MESSAGE_HEADER,
    MIN_CLAIM_TOKEN,
    READY_PATH,
    RELOAD_PATH,
    RETIRE_PATH,
    TIMEOUT_HEADER,
    TOKEN_ENV,
    TOKEN_HEADER,
    TOPIC_HEADER,
    WEBSOCKET_HEADER,
    claim_digest,
)
from .workers import Workers

if TYPE_CHECKING:  # warm.py is imported by warm watchdogs only
    from .warm import RootWriter

WEBSOCKET_HANDLER = "handle_websocket"
DEFAULT_MAX_MESSAGE = 1024 * 1024

_UNAVAILABLE = (503, dump_json({"error": "the function's handler failed to import"}))
"""A call that reaches a replica whose handler did not import: not why (that is for the
readiness probe and the log; an import-time exception may quote a secret)."""


class Watchdog:
    """Routes each parsed request: token check, readiness probe, or an invocation.

    A warm watchdog (`settings.warm`) starts without a handler and takes one from `POST /_/init`.
    """

    def __init__(
        self,
        settings: Settings,
        handler: Handler | None,
        failure: LoadFailure | None,
        writer: RootWriter | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.tunnels: set[Any] = set()
        """Open WebSocket calls (tunnel.Tunnel): closed with 1001 when the replica drains."""
        self.draining = False
        self.max_body = settings.max_body
        self.inflight = 0  # handler calls still running, including timed-out threads
        self.idle = asyncio.Event()  # set once draining and nothing is left
        self.function_name = settings.function_name
        self.hostname = socket.gethostname()
        self.timeout = settings.timeout
        self.settings = settings
        self.handler = handler
        self.workers = Workers(settings.threads)
        self._token = settings.token.encode()
        self.warm = settings.warm  # stays True once assigned: a second /_/init is refused
        self.assigned: str | None = None  # the function a warm watchdog was given by /_/init
        self.writer = writer
        """A warm watchdog started as root: what writes its function's files (warm.py)."""
        self.claimed = False
        """A watchdog of a shared warm service (`settings.claim`) took its one claim."""
        self.retire: Callable[[], None] = lambda: None
        """Set by `serve`: drain and exit 0 (POST /_/retire of a claimed watchdog)."""
        self.last_request = self.loop.time()
        if handler is not None:
            self._ready = (200, dump_json({"status": "ready"}))
        elif failure is not None:
            self._ready = (503, dump_json(failure.to_json()))
        else:
            assert settings.warm, "only a warm watchdog starts without a handler or a failure"
            self._ready = (200, dump_json({"status": "warm"}))

    def dispatch(self, conn: Connection, request: Request) -> None:
        faas = request.faas
        call_id = faas.get(CALL_ID_HEADER) or new_call_id()
        token = faas.get(TOKEN_HEADER)
        if token is None or not hmac.compare_digest(token.encode("latin-1"), self._token):
            error = "missing X-Faas-Token" if token is None else "invalid X-Faas-Token"
            conn.respond(403, dump_json({"error": error}), JSON_TYPE, call_id)
            return
        self.last_request = self.loop.time()
        if request.path == RETIRE_PATH and request.method == "POST" and self.claimed:
            conn.respond(200, dump_json({"status": "retiring"}), JSON_TYPE, call_id)
            self.retire()
        elif self.warm and self._warm_dispatch(conn, request, call_id):
            pass  # answered by the warm watchdog itself
        elif request.path == RELOAD_PATH and request.method == "POST":
            conn.respond(*self.reload(), JSON_TYPE, call_id)
        elif request.path == READY_PATH and request.method == "GET":
            conn.respond(*self._ready, JSON_TYPE, call_id)
        elif self.handler is None:
            conn.respond(*_UNAVAILABLE, JSON_TYPE, call_id)
        elif faas.get(WEBSOCKET_HEADER) == "1":
            self._open_socket(conn, request, call_id, self.handler)
        else:
            self._invoke(conn, request, call_id, self.handler)

    def _warm_dispatch(self, conn: Connection, request: Request, call_id: str) -> bool:
        """Answer what only a warm watchdog answers; False: route the request as usual."""
        if request.path == INIT_PATH and request.method == "POST":
            claim = request.faas.get(CLAIM_HEADER)
            if self.settings.claim and not self.claimed:
                status, body = self._claim(claim, request.body)
            elif self.settings.claim and (claim is not None or self.assigned is not None):
                status, body = 409, dump_json({"error": "this replica was claimed already"})
            elif self.settings.claim:  # the claimer, once it saw its claim logged
                status, body = self.init(request.body)
                if status not in (200, 503):  # refused: nothing will use it; a new one comes
                    self.retire()
            elif claim is not None:
                error = "this warm replica is not a shared one: it takes no claim"
                status, body = 400, dump_json({"error": error})
            elif self.assigned is None:
                status, body = self.init(request.body)
            else:
                error = f"this replica already serves {self.assigned}"
                status, body = 409, dump_json({"error": error})
        elif self.assigned is not None:
            return False
        elif request.path == READY_PATH and request.method == "GET":
            status, body = self._ready
        else:
            error = "this replica has no function yet"
            status, body = 409, dump_json({"error": error, "call_id": call_id})
        conn.respond(status, body, JSON_TYPE, call_id)
        return True

    def _claim(self, claim: str | None, archive: bytes) -> tuple[int, bytes]:
        """Take the one claim of a shared warm service's watchdog: from now on only the
        claimer's token is accepted. The function follows in a second POST /_/init.

        Before it answers, the claim's digest goes to the container's output
        (`claim_line`), where only the engine's API reads it: the claimer sends the
        function only once the first claim its task logged is its own. The function
        code that runs here later can write lines too, but only after that one, so a
        watchdog that runs some function's code already (and would accept any claim)
        cannot pass for a fresh one (runtime/supply/warm_tasks.py).
        """
        from dataclasses import replace

        if claim is None:
            return 400, dump_json({"error": f"a shared warm replica needs {CLAIM_HEADER}"})
        if len(claim) < MIN_CLAIM_TOKEN or not claim.isascii() or not claim.isprintable():
            error = f"{CLAIM_HEADER} must be at least {MIN_CLAIM_TOKEN} printable characters"
            return 400, dump_json({"error": error})
        if archive:
            error = "a claim carries no function: send it once the claim is seen logged"
            return 400, dump_json({"error": error})
        self.claimed = True
        self._token = claim.encode()
        self.settings = replace(self.settings, token=claim)
        # On standard error, unbuffered, whatever the log level: the one stream the
        # claimer reads, in which anything the function writes comes after this line.
        os.write(2, claim_line(claim))
        return 200, dump_json({"status": "claimed"})

    def init(self, archive: bytes) -> tuple[int, bytes]:
        """Become the function in `archive` (format in warm.py): 200, 503 if it fails to import.

        A refused archive (400) or unwritable files (500) leave this a warm watchdog. The import
        runs on the loop's thread, as main() runs it on the main thread (a handler may
        install signal handlers); there is nothing else to serve meanwhile.
        """
        from dataclasses import replace

        from . import warm

        try:
            plan = warm.parse_archive(archive)
        except warm.ArchiveError as exc:
            log.warning(f"refused a function archive: {exc}")
            return 400, dump_json({"error": str(exc)})
        settings = self.settings
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.write(archive)
            else:
                dirs = (settings.code_dir, settings.secrets_dir, settings.deps_dir)
                warm.apply(plan, *dirs, for_another_user=False)
        except warm.ArchiveError as exc:  # checked here already: the writer disagrees
            log.error(f"the writer refused the function archive: {exc}")
            return 500, dump_json({"error": f"cannot write the function's files: {exc}"})
        except OSError as exc:
            log.error(f"cannot write the function's files: {exc}")
            return 500, dump_json({"error": f"cannot write the function's files: {exc}"})
        if plan.deps:  # the import system may have listed the (then empty) directory
            importlib.invalidate_caches()
            if settings.deps_dir not in sys.path:
                sys.path.insert(0, settings.deps_dir)
        os.environ.update(plan.environment)
        self.settings = settings = replace(
            settings,
            function_name=plan.function,
            handler_file=plan.handler_file,
            handler_name=plan.handler_name,
        )
        self.function_name = self.assigned = plan.function
        setup_logging(plan.function, settings.log_level, secrets_dir=settings.secrets_dir)

        started = time.perf_counter()
        handler, failure = import_handler(settings)
        import_ms = round((time.perf_counter() - started) * 1000, 1)
        log_import(settings, failure, import_ms)
        self.handler = handler
        if failure is not None:
            self._ready = (503, dump_json(failure.to_json()))
            return self._ready
        self._ready = (200, dump_json({"status": "ready"}))
        answer = {"status": "ready", "function": plan.function, "import_ms": import_ms}
        return 200, dump_json(answer)

    def reload(self) -> tuple[int, bytes]:
        """Swap in the handler's current code (development: the code is mounted).

        On failure the previous handler keeps serving and the answer says why (422).
        """
        settings = self.settings
        started = time.perf_counter()
        try:
            handler = reload_handler(
                settings.code_dir, settings.handler_file, settings.handler_name
            )
        except HandlerLoadError as exc:
            failure = exc.failure
            log.error(
                f"reload failed: {failure.error}",
                extra={"file": failure.file, "line": failure.line},
            )
            return 422, dump_json({"status": "failed", **failure.to_json()})
        self.handler = handler
        self._ready = (200, dump_json({"status": "ready"}))
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        log.info("handler reloaded", extra={"reload_ms": elapsed})
        return 200, dump_json({"status": "reloaded", "reload_ms": elapsed})

    def _invoke(self, conn: Connection, request: Request, call_id: str, handler: Handler) -> None:
        faas = request.faas
        timeout = self.timeout
        if TIMEOUT_HEADER in faas:
            timeout = _call_timeout(faas[TIMEOUT_HEADER], timeout, self.settings.timeout_is_limit)
        topic = faas.get(TOPIC_HEADER)
        pipe = request.stream
        event = Event(
            request.method,
            request.path,
            request.query_string,
            Headers.wrap(request.headers),
            request.body,
            topic,
            faas.get(EVENT_ID_HEADER),
            _attempt(faas.get(ATTEMPT_HEADER)) if topic is not None else 1,
            None if pipe is None else BodyStream(pipe.next, pipe.next_from_thread),
        )
        context = Context(
            self.function_name,
            call_id,
            time.time() + timeout,
            self.hostname,
            self.settings.secrets_dir,
        )
        call = Call(self, conn, call_id, timeout)
        conn.call = call
        self.inflight += 1
        if handler.is_async:
            try:
                call.run_async(handler.call(event, context))
            except BaseException as exc:  # e.g. a TypeError from the call itself
                self.call_ended()
                call.fail(exc)
                return
        else:
            self.workers.submit(partial(call.run_in_thread, handler.call, event, context))
        call.timer = self.loop.call_later(timeout, call.expire)

    def _open_socket(
        self, conn: Connection, request: Request, call_id: str, handler: Handler
    ) -> None:
        """A WebSocket call: `handle_websocket(ws, context)` of the handler's module."""
        from . import tunnel

        module = sys.modules.get(handler.module)
        func = getattr(module, WEBSOCKET_HANDLER, None)
        if not inspect.iscoroutinefunction(func):
            what = "is not an async function" if func is not None else "is missing"
            message = f"{WEBSOCKET_HANDLER} {what} in {self.settings.handler_file}"
            tunnel.missing_handler(conn, call_id, message)
            return
        try:
            max_size = int(request.faas.get(MAX_MESSAGE_HEADER, ""))
        except ValueError:
            max_size = DEFAULT_MAX_MESSAGE
        timeout = self.timeout
        if TIMEOUT_HEADER in request.faas:
            timeout = _call_timeout(
                request.faas[TIMEOUT_HEADER], timeout, self.settings.timeout_is_limit
            )
        context = Context(
            self.function_name,
            call_id,
            time.time() + timeout,
            self.hostname,
            self.settings.secrets_dir,
        )
        self.inflight += 1
        channel = tunnel.Tunnel(conn, call_id, max_size, self.call_ended, user_traceback)
        self.tunnels.add(channel)
        channel.on_end = partial(self._socket_ended, channel)
        channel.start(func, request, context)

    def _socket_ended(self, channel: Any) -> None:
        self.tunnels.discard(channel)
        self.call_ended()

    def opened(self, conn: Connection) -> None:
        self.connections.add(conn)

    def closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.draining:
            self._check_idle()

    def call_ended(self) -> None:
        self.inflight -= 1
        if self.draining:
            self._check_idle()

    def drain(self) -> None:
        """Stop keeping connections alive and close the idle ones; `idle` is set when done."""
        self.draining = True
        for channel in list(self.tunnels):
            channel.going_away()
        for conn in list(self.connections):
            conn.close_if_idle()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.inflight and not self.connections:
            self.idle.set()


class Call:
    """One invocation in flight: ends with the handler's reply, a 500, or a 504."""

    __slots__ = ("answered", "call_id", "conn", "task", "timeout", "timer", "wd")

    def __init__(self, wd: Watchdog, conn: Connection, call_id: str, timeout: float) -> None:
        self.wd = wd
        self.conn = conn
        self.call_id = call_id
        self.timeout = timeout
        self.answered = False  # a response was sent (or the client left): ignore the rest
        self.task: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def run_async(self, awaitable: Any) -> None:
        self.task = start_task(awaitable, self.wd.loop)
        self.task.add_done_callback(self._task_done)

    def run_in_thread(
        self, func: Callable[[Any, Any], Any], event: Event, context: Context
    ) -> None:
        """Worker-thread side: run the sync handler and hand the outcome to the loop."""
        result: Any = None
        error: BaseException | None = None
        if not self.answered:  # it timed out while queued: skip it
            try:
                result = func(event, context)
            except BaseException as exc:
                error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are exiting
            self.wd.loop.call_soon_threadsafe(self._thread_done, result, error)

    def _thread_done(self, result: Any, error: BaseException | None) -> None:
        if error is None and inspect.isawaitable(result):
            if self.answered:
                if inspect.iscoroutine(result):
                    result.close()  # never to be awaited
            else:
                try:  # a sync function that returned an awaitable: finish it on the loop
                    self.run_async(result)
                    return
                except BaseException as exc:
                    error = exc
        self._settle(result, error)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self.wd.call_ended()
            if not self.answered:  # cancelled by the handler itself, not by us
                self.fail(asyncio.CancelledError("the function's task was cancelled"))
            return
        error = task.exception()
        self._settle(task.result() if error is None else None, error)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        if self.answered:
            self.wd.call_ended()
            if error is not None:
                extra = {"call_id": self.call_id, "traceback": user_traceback(error)}
                log.error("function raised after its call had ended", extra=extra)
            return
        if error is not None:
            self.wd.call_ended()
            self.fail(error)
            return
        try:
            reply = to_reply(result)
        except Exception as exc:  # ConversionError, or e.g. a str that cannot be UTF-8
            self.wd.call_ended()
            log.error(f"invalid return value: {exc}", extra={"call_id": self.call_id})
            self._answer(500, INVALID_RETURN)
            return
        self._finish()
        if reply.stream is not None:  # the call stays in flight until the stream ends
            from .streaming import Stream

            wd = self.wd
            Stream(
                self.conn, self.call_id, reply, self.timeout, wd.workers, wd.call_ended,
                user_traceback,
            ).start()  # fmt: skip
            return
        self.wd.call_ended()
        self.conn.respond(reply.status, reply.body, reply.content_type, self.call_id, reply.headers)

    def fail(self, error: BaseException) -> None:
        if isinstance(error, RequestBodyError):  # the body, not the function, was at fault
            log.warning(f"request body refused: {error.message}", extra={"call_id": self.call_id})
            self._answer(error.status, error.message)
            return
        extra = {"call_id": self.call_id, "traceback": user_traceback(error)}
        log.error("function raised an exception", extra=extra)
        self._answer(500, RAISED)

    def expire(self) -> None:
        """The timer fired: answer 504; a task is cancelled, a thread runs on unobserved."""
        if self.answered:
            return
        if self.task is not None:
            self.task.cancel()
        message = timed_out(self.timeout)
        log.warning(message, extra={"call_id": self.call_id})
        self._answer(504, message)

    def abandon(self) -> None:
        """The client disconnected: nobody is left to answer."""
        if self.answered:
            return
        self._finish()
        if self.task is not None:
            self.task.cancel()
        log.info("client disconnected during the call", extra={"call_id": self.call_id})

    def _answer(self, status: int, error: str) -> None:
        self._finish()
        self.conn.respond(status, error_body(error, self.call_id), JSON_TYPE, self.call_id)

    def _finish(self) -> None:
        self.answered = True
        if self.timer is not None:
            self.timer.cancel()


if sys.version_info >= (3, 12):

    def start_task(awaitable: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Run a coroutine eagerly: one that never suspends finishes without a loop turn."""
        if asyncio.iscoroutine(awaitable):
            return asyncio.Task(awaitable, loop=loop, eager_start=True)
        return asyncio.ensure_future(awaitable, loop=loop)

else:

    def start_task(awaitable: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.ensure_future(awaitable, loop=loop)
        return future


# Leading traceback frames from these directories are plumbing, not the user's code.
_PLUMBING = (os.path.dirname(asyncio.__file__), os.path.dirname(__file__))


def user_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PLUMBING):
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


def _call_timeout(raw: str, default: float, is_limit: bool) -> float:
    """The call's time limit as the gateway sent it (TIMEOUT_HEADER, with the replica's
    token; callers cannot send it): below `default` when that is a configured limit
    (`Settings.timeout_is_limit`), else as sent. Replicas and warm watchdogs are not
    started with their function's timeout: a limit above the default comes with the call."""
    try:
        value = float(raw)
    except ValueError:
        return default
    ceiling = default if is_limit else math.inf
    return value if 0 < value < ceiling else default


def _attempt(raw: str | None) -> int:
    try:
        return int(raw) if raw else 1
    except ValueError:
        return 1


def import_handler(settings: Settings) -> tuple[Handler | None, LoadFailure | None]:
    try:
        return load_handler(settings.code_dir, settings.handler_file, settings.handler_name), None
    except HandlerLoadError as exc:
        return None, exc.failure


def log_import(settings: Settings, failure: LoadFailure | None, import_ms: float) -> None:
    """One line for the import's outcome, the same at a start and at a warm watchdog's /_/init."""
    if failure is None:
        log.info(
            "handler imported", extra={"handler": settings.handler_file, "import_ms": import_ms}
        )
    else:
        log.error(
            f"handler failed to import: {failure.error}",
            extra={"file": failure.file, "line": failure.line, "traceback": failure.traceback},
        )


async def serve(
    settings: Settings,
    handler: Handler | None,
    failure: LoadFailure | None,
    writer: RootWriter | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then give the calls in flight `shutdown_grace` seconds."""
    loop = asyncio.get_running_loop()
    wd = Watchdog(settings, handler, failure, writer)
    server = await loop.create_server(
        lambda: Connection(wd), settings.host, settings.port, backlog=1024
    )
    stop: asyncio.Future[str] = loop.create_future()

    def on_signal(name: str) -> None:
        if not stop.done():
            stop.set_result(name)
        else:
            wd.idle.set()  # a second signal: stop waiting for calls

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    wd.retire = partial(on_signal, "retired")
    idle_watch = loop.create_task(_exit_when_idle(wd, settings.claim_idle))

    port = server.sockets[0].getsockname()[1]
    log.info("listening", extra={"host": settings.host, "port": port})
    name = await stop
    idle_watch.cancel()

    if settings.drain_delay and name != "retired":  # a gateway retires only what it left
        # Engines that pick which replica stops (Swarm) tell the gateway after the
        # replica: keep accepting until the gateway has stopped sending calls here.
        log.info(f"{name}: accepting calls for {settings.drain_delay:g}s more")
        await asyncio.sleep(settings.drain_delay)
    log.info(f"{name}: draining {wd.inflight} call(s)")
    server.close()
    wd.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wd.idle.wait(), settings.shutdown_grace)
    wd.workers.stop()
    if wd.inflight:  # only daemon threads can be left, and they do not delay the exit
        log.warning(f"exiting with {wd.inflight} call(s) still running")
    else:
        log.info("stopped")


def claim_line(token: str) -> bytes:
    """The output line a claim leaves: its token's digest (the token itself opens calls)."""
    entry = {"level": "info", "function": "warm", "msg": CLAIMED, "claim": claim_digest(token)}
    return dump_json(entry) + b"\n"


async def _exit_when_idle(wd: Watchdog, idle: float) -> None:
    """A claimed watchdog that has had no request for `idle` seconds retires itself: the
    gateway that claimed it is gone (it retires its replicas itself, well before)."""
    if not idle:
        return
    while True:
        await asyncio.sleep(min(idle / 4, 5.0))
        quiet = wd.loop.time() - wd.last_request
        if wd.claimed and not wd.inflight and not wd.tunnels and quiet >= idle:
            log.warning(f"no request for {quiet:.0f}s since the claim: retiring")
            wd.retire()
            return


def become_unprivileged(settings: Settings) -> RootWriter | None:
    """A warm watchdog with `run_as`: fork the root writer, then become that user for good."""
    if settings.run_as is None:
        return None
    from .warm import RootWriter, become

    writer = RootWriter(settings.code_dir, settings.secrets_dir, settings.deps_dir)
    become(*settings.run_as)
    return writer


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        setup_logging(env.get(FUNCTION_NAME_ENV, "function"))
        log.critical(f"invalid configuration: {exc}")
        return 2
    setup_logging(settings.function_name, settings.log_level, secrets_dir=settings.secrets_dir)
    if env is os.environ and not forget_variable(TOKEN_ENV):
        # The handler has no use for the gateway's secret; unsetenv alone leaves it readable.
        log.warning(f"{TOKEN_ENV} could not be erased from /proc/self/environ")
    # user print()s show up promptly, a line at a time whichever threads print
    sys.stdout = LineWriter(sys.stdout)
    sys.stderr = LineWriter(sys.stderr)

    handler: Handler | None = None
    failure: LoadFailure | None = None
    writer: RootWriter | None = None
    if settings.warm:
        from . import warm  # import tarfile now, not on the cold start (/_/init)

        try:
            writer = become_unprivileged(settings)
        except OSError as exc:
            log.critical(f"cannot leave root: {exc}")
            return 1
        if settings.preload:
            loaded = warm.preload(settings.preload)
            log.info(
                "preloaded", extra={"modules": ",".join(loaded.imported), "import_ms": loaded.ms}
            )
            for module, error in loaded.failed.items():
                log.warning(f"preloading {module} failed: {error}")
        log.info("warm, waiting for a function")
    else:
        if settings.debug_port:
            from .debugging import start_debugger

            start_debugger(settings.debug_port)  # so a breakpoint in module code can stop too
        started = time.perf_counter()
        handler, failure = import_handler(settings)
        import_ms = round((time.perf_counter() - started) * 1000, 1)
        log_import(settings, failure, import_ms)

    try:
        asyncio.run(serve(settings, handler, failure, writer))
    except OSError as exc:
        log.critical(f"cannot listen on {settings.host}:{settings.port}: {exc}")
        return 1
    return 0
