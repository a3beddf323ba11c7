"""Call a handler in-process, as a replica's watchdog would, for unit tests on the host.

    from faas.testing import call

    def test_hello() -> None:
        response = call("functions/hello.py", query={"name": "ada"})
        assert response.status == 200
        assert response.json() == {"message": "hello ada", "function": "hello"}

The event and context are built, the return value converted and errors answered by the
watchdog's own code (`faas.handler`, runtime/watchdog/contract.py and loader.py): a
handler that raises answers 500 with the same body a caller would get, and the
exception is kept on `response.error` so the test can show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from faas.handler import (
    JSON_TYPE,
    BodyStream,
    Context,
    Event,
    Headers,
    Query,
    WebSocket,
    WebSocketClosed,
)
from runtime.watchdog.contract import (
    INVALID_RETURN,
    RAISED,
    ConversionError,
    chunk_bytes,
    dump_json,
    error_body,
    new_call_id,
    stream_content_type,
    timed_out,
    to_reply,
)
from runtime.watchdog.loader import HandlerLoadError, as_handler, load_handler

__all__ = ["HandlerLoadError", "TestResponse", "TestSocket", "acall", "call", "websocket"]

DEFAULT_TIMEOUT = 10.0
"""The watchdog's default when a function sets no `timeout:`."""

QueryArg = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] | str
_NO_JSON: Any = object()


class TestResponse:
    """What the caller of the function would receive (before the gateway's own headers).

    Attributes:
        status: the HTTP status.
        headers: case-insensitive response headers, `Content-Type` and `X-Call-Id` included.
        body: the body as bytes.
        error: the exception the handler raised (or that its return value caused), else None.
            For a streamed answer cut short, what cut it (`body` is what was sent before).
        chunks: a streamed answer's chunks, in order (None for a whole answer).
    """

    __test__ = False  # not a test class, whatever pytest's name pattern says

    __slots__ = ("body", "call_id", "chunks", "error", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        call_id: str,
        error: BaseException | None = None,
        chunks: list[bytes] | None = None,
    ) -> None:
        self.status = status
        self.headers = Headers(headers)
        self.body = body
        self.call_id = call_id
        self.error = error
        self.chunks = chunks

    @property
    def content_type(self) -> str | None:
        value: str | None = self.headers.get("content-type")
        return value

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError if it is not JSON."""
        import json

        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status} {self.content_type} {self.body[:60]!r}>"


def call(
    handler: Callable[..., Any] | str | os.PathLike[str],
    *,
    method: str | None = None,
    path: str = "/",
    query: QueryArg | None = None,
    json: Any = _NO_JSON,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    topic: str | None = None,
    event_id: str | None = None,
    attempt: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    function_name: str | None = None,
    stream_body: bool = False,
) -> TestResponse:
    """Call `handler` once as its replica would and return what the caller would get.

    `handler` is the function itself, or a file path as in functions.yaml
    (`functions/hello.py` or `functions/hello.py:name`, relative to the current directory),
    imported afresh for each call. `method` defaults to POST when there is a body and GET
    otherwise. `query` is a dict (a list value repeats the name), pairs, or a raw string.
    `json` is sent as an `application/json` body. `secrets` are what `context.secret(name)`
    reads; `env` is set in `os.environ` for the call (and the import) and then restored.
    `topic`, `event_id` and `attempt` make it an event delivery. `stream_body` calls it as
    a function with `request_body: stream` is called (the body only through
    `event.stream()`). Must not be called from a running event loop: use `acall` there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("faas.testing.call() inside an event loop: use `await acall(...)`")
    return asyncio.run(
        acall(
            handler,
            method=method,
            path=path,
            query=query,
            json=json,
            body=body,
            headers=headers,
            secrets=secrets,
            env=env,
            topic=topic,
            event_id=event_id,
            attempt=attempt,
            timeout=timeout,
            function_name=function_name,
            stream_body=stream_body,
        )
    )


async def acall(
    handler: Callable[..., Any] | str | os.PathLike[str],
    *,
    method: str | None = None,
    path: str = "/",
    query: QueryArg | None = None,
    json: Any = _NO_JSON,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    topic: str | None = None,
    event_id: str | None = None,
    attempt: int = 1,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the function's own `timeout:`
    function_name: str | None = None,
    stream_body: bool = False,
) -> TestResponse:
    """`call`, for tests that already run an event loop."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    if json is not _NO_JSON:
        if body is not None:
            raise TypeError("pass either json= or body=, not both")
        data = dump_json(json)
        lowered.setdefault("content-type", JSON_TYPE)
    else:
        data = body.encode() if isinstance(body, str) else (body or b"")
    path, _, inline_query = path.partition("?")
    query_string = _query_string(query) if query is not None else inline_query
    call_id = new_call_id()
    with _environment(env), _secrets_dir(secrets) as secrets_dir:
        func, is_async, name = _resolve(handler)
        event = Event(
            method or ("POST" if data or json is not _NO_JSON else "GET"),
            path or "/",
            query_string,
            Headers.wrap(lowered),
            data,
            topic,
            event_id,
            attempt if topic is not None else 1,
            BodyStream.of(data) if stream_body else None,
        )
        context = Context(
            function_name or name,
            call_id,
            time.time() + timeout,
            socket.gethostname(),
            secrets_dir,
        )
        return await _run(func, is_async, event, context, timeout)


async def _run(
    func: Callable[[Any, Any], Any], is_async: bool, event: Event, context: Context, limit: float
) -> TestResponse:
    """The watchdog's `Call`: async handlers on the loop, others on a thread of their own."""
    call_id = context.call_id
    try:
        async with asyncio.timeout(limit):
            if is_async:
                result = await func(event, context)
            else:
                result = await _in_thread(lambda: func(event, context))
                if inspect.isawaitable(result):
                    result = await result
    except TimeoutError as exc:
        return _answer(504, timed_out(limit), call_id, exc)
    except BaseException as exc:  # what the watchdog catches too: SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _answer(500, RAISED, call_id, exc)
    try:
        reply = to_reply(result)
    except Exception as exc:
        return _answer(500, INVALID_RETURN, call_id, exc)
    response_headers = dict(reply.headers or ())
    content_type = reply.content_type
    chunks: list[bytes] | None = None
    error: BaseException | None = None
    if reply.stream is not None:
        chunks, first, error = await _collect(reply.stream, limit)
        if content_type is None and first is not None:
            content_type = stream_content_type(first)
        if error is not None and first is None:  # nothing was sent yet: an error answer
            if isinstance(error, TimeoutError):
                return _answer(504, timed_out(limit), call_id, error)
            message = INVALID_RETURN if isinstance(error, ConversionError) else RAISED
            return _answer(500, message, call_id, error)
    if content_type is not None:
        response_headers["Content-Type"] = content_type
    response_headers["X-Call-Id"] = call_id
    body = reply.body if chunks is None else b"".join(chunks)
    return TestResponse(reply.status, response_headers, body, call_id, error, chunks)


async def _collect(
    stream: Any, limit: float
) -> tuple[list[bytes], bytes | str | None, BaseException | None]:
    """A streamed answer's chunks, as the watchdog would send them: each within `limit`.

    Returns the chunks, the first one as produced (None if none was), and what cut the
    answer short (then the chunks are what a caller received before it).
    """
    chunks: list[bytes] = []
    first: bytes | str | None = None
    iterator: Any = None
    try:
        iterator = stream.__aiter__() if hasattr(stream, "__aiter__") else iter(stream)
        while True:
            async with asyncio.timeout(limit):
                if hasattr(iterator, "__anext__"):
                    try:
                        chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                else:
                    chunk = await _in_thread(lambda: next(iterator, _DONE))
                    if chunk is _DONE:
                        break
            data = chunk_bytes(chunk)
            if first is None:
                first = chunk
            if data:
                chunks.append(data)
    except Exception as exc:
        return chunks, first, exc
    finally:
        if hasattr(iterator, "aclose"):
            await iterator.aclose()
        elif hasattr(iterator, "close"):
            iterator.close()
    return chunks, first, None


_DONE: Any = object()


def _answer(status: int, message: str, call_id: str, error: BaseException) -> TestResponse:
    headers = {"Content-Type": JSON_TYPE, "X-Call-Id": call_id}
    return TestResponse(status, headers, error_body(message, call_id), call_id, error)


async def _in_thread(job: Callable[[], Any]) -> Any:
    """Run a sync handler on a daemon thread: one that overruns its timeout is left running,
    as the watchdog leaves it, and does not hold up the end of the test."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = job()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the call timed out
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="faas-testing-handler", daemon=True).start()
    return await future


def _resolve(
    handler: Callable[..., Any] | str | os.PathLike[str],
) -> tuple[Callable[[Any, Any], Any], bool, str]:
    """(call taking (event, context), is it async, the function's name) for a handler."""
    if callable(handler):
        name = getattr(handler, "__name__", "handler")
        file = getattr(getattr(handler, "__code__", None), "co_filename", name)
        adapted = as_handler(handler, name, file, getattr(handler, "__module__", ""))
        return adapted.call, adapted.is_async, Path(file).stem.replace("_", "-")
    text = os.fspath(handler)
    file, _, attribute = text.partition(":") if not os.path.exists(text) else (text, "", "")
    loaded = load_handler(os.getcwd(), file, attribute or "handle")
    return loaded.call, loaded.is_async, Path(file).stem.replace("_", "-")


# -- WebSockets ------------------------------------------------------------------------


class TestSocket:
    """What a client of a WebSocket handler saw (`websocket()`).

    Attributes:
        accepted: whether the handler accepted the socket.
        subprotocol: the one it chose, if any.
        sent: the messages it sent, in order (`str` text, `bytes` binary).
        close_code, close_reason: how the socket closed: the handler's own `close()`,
            the client's close once `messages` ran out, 1000 when the handler returned,
            1011 when it raised or ran past `timeout`, 1009 for a message too big.
        error: the exception the handler raised, if any (WebSocketClosed is not one).
    """

    __test__ = False

    def __init__(self) -> None:
        self.accepted = False
        self.subprotocol: str | None = None
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"TestSocket(accepted={self.accepted}, sent={self.sent!r}, "
            f"close_code={self.close_code}, error={self.error!r})"
        )


class _ScriptedChannel:
    """The client's side, scripted: `messages` arrive in order, then the client closes."""

    def __init__(
        self, result: TestSocket, messages: Sequence[str | bytes], close: int, limit: int
    ) -> None:
        self.result = result
        self.messages = list(messages)
        self.client_close = close
        self.limit = limit

    def _closed(self) -> WebSocketClosed | None:
        if self.result.close_code is None:
            return None
        return WebSocketClosed(self.result.close_code, self.result.close_reason)

    async def accept(self, subprotocol: str | None) -> None:
        if (closed := self._closed()) is not None:
            raise closed
        self.result.accepted, self.result.subprotocol = True, subprotocol

    async def receive(self) -> str | bytes:
        if (closed := self._closed()) is not None:
            raise closed
        if self.messages:
            return self.messages.pop(0)
        self.result.close_code = self.client_close
        raise WebSocketClosed(self.client_close)

    async def send(self, message: str | bytes) -> None:
        if (closed := self._closed()) is not None:
            raise closed
        size = len(message.encode() if isinstance(message, str) else message)
        if size > self.limit:
            self.result.close_code, self.result.close_reason = 1009, "message too big"
            raise WebSocketClosed(1009, f"a message of {size} bytes is over {self.limit}")
        self.result.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        if self.result.close_code is None:
            self.result.close_code, self.result.close_reason = code, reason


def websocket(
    handler: Callable[..., Any] | str | os.PathLike[str],
    messages: Sequence[str | bytes] = (),
    *,
    path: str = "/",
    query: QueryArg | None = None,
    headers: Mapping[str, str] | None = None,
    subprotocols: Sequence[str] = (),
    close_code: int = 1000,
    max_message_size: int = 1024 * 1024,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    function_name: str | None = None,
) -> TestSocket:
    """Run a WebSocket handler against a scripted client and return what the client saw.

    `handler` is `handle_websocket` itself, or its file as in functions.yaml
    (`functions/chat.py`, or `functions/chat.py:name`). The client sends `messages` in
    order, as fast as the handler receives them, then closes with `close_code`. The
    whole session must end within `timeout` seconds.

        result = websocket("functions/echo.py", ["hi", b"\x00"])
        assert result.sent == ["hi", b"\x00"] and result.close_code == 1000
    """
    result = TestSocket()
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    if subprotocols:
        lowered["sec-websocket-protocol"] = ", ".join(subprotocols)
    path, _, inline_query = path.partition("?")
    query_string = _query_string(query) if query is not None else inline_query
    from urllib.parse import parse_qsl

    channel = _ScriptedChannel(result, messages, close_code, max_message_size)
    ws = WebSocket(
        path or "/",
        Query(parse_qsl(query_string, keep_blank_values=True)),
        Headers.wrap(lowered),
        channel,
    )
    with _environment(env), _secrets_dir(secrets) as secrets_dir:
        if callable(handler):
            func = handler
            name = Path(getattr(getattr(handler, "__code__", None), "co_filename", "f")).stem
        else:
            text = os.fspath(handler)
            file, _, attribute = text.partition(":") if not os.path.exists(text) else (text, "", "")
            func = load_handler(os.getcwd(), file, attribute or "handle_websocket").call
            name = Path(file).stem
        context = Context(
            function_name or name.replace("_", "-"),
            new_call_id(),
            time.time() + timeout,
            socket.gethostname(),
            secrets_dir,
        )

        async def session() -> None:
            async with asyncio.timeout(timeout):
                await func(ws, context)

        try:
            asyncio.run(session())
        except WebSocketClosed:
            pass
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            result.error = exc
            if result.close_code is None:
                result.close_code = 1011
    if result.close_code is None:
        result.close_code = 1000
    return result


def _query_string(query: QueryArg) -> str:
    if isinstance(query, str):
        return query.lstrip("?")
    if isinstance(query, Mapping):
        return urlencode(
            [
                (name, item)
                for name, value in query.items()
                for item in ([value] if isinstance(value, str) else value)
            ]
        )
    return urlencode(list(query))


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    if not env:
        yield
        return
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _secrets_dir(secrets: Mapping[str, str] | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="faas-secrets-") as directory:
        for name, value in (secrets or {}).items():
            Path(directory, name).write_text(value)
        yield directory
