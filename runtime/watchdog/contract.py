"""How a handler's return value becomes HTTP, and the watchdog's JSON and call ids.

Pure: no I/O, no event loop. `to_reply` is the single place that decides which
status, headers and body a return value turns into. What a handler sees (`Event`,
`Context`, `Response`) is `faas.handler`, which images carry next to this package.
"""

from __future__ import annotations

import inspect
import json
import random
from typing import Any

from faas.handler import EVENT_STREAM, JSON_TYPE, Response, StreamingResponse

TEXT_TYPE = "text/plain; charset=utf-8"
BINARY_TYPE = "application/octet-stream"

_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; raises TypeError/ValueError for what JSON cannot hold."""
    return _json_encode(value).encode()


_id_bits = random.Random().getrandbits  # seeded from os.urandom, which is slow per call


def new_call_id() -> str:
    """A random version-4 UUID as 32 hex digits, without building a UUID object."""
    bits = _id_bits(128)
    bits = bits & ~(0xF000 << 64) | (0x4000 << 64)  # version 4
    bits = bits & ~(0xC000 << 48) | (0x8000 << 48)  # RFC 4122 variant
    return f"{bits:032x}"


RAISED = "function raised an exception"
INVALID_RETURN = "function returned an invalid value"
"""What a caller is told when a handler raises or returns what cannot be HTTP: never the
exception itself (it may quote a secret); the replica's log has the traceback."""


def timed_out(timeout: float) -> str:
    return f"function timed out after {timeout:g}s"


def error_body(message: str, call_id: str) -> bytes:
    """The JSON body of an answer the watchdog gives instead of the handler."""
    return dump_json({"error": message, "call_id": call_id})


class ConversionError(Exception):
    """The handler returned something that cannot be turned into an HTTP response."""


class Reply:
    """A response ready to serialise: `headers` excludes Content-Type and framing headers.

    A streamed answer has `stream` (an iterable or async iterable of chunks) and no `body`;
    its content type may be left to its first chunk (`stream_content_type`).
    """

    __slots__ = ("body", "content_type", "headers", "heartbeat", "status", "stream")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: list[tuple[str, str]] | None = None,
        stream: Any = None,
        heartbeat: float | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.stream = stream
        self.heartbeat = heartbeat

    def __repr__(self) -> str:
        if self.stream is not None:
            return f"<Reply {self.status} {self.content_type} streamed>"
        return f"<Reply {self.status} {self.content_type} {self.body[:40]!r}>"


NO_CONTENT = Reply(204, b"", None)

# Set by the server on every response; a handler's own values would break framing.
_RESERVED = frozenset({"content-length", "transfer-encoding", "connection", "x-call-id", "date"})


def to_reply(value: Any) -> Reply:
    """Convert a handler's return value; raise ConversionError for anything unsupported."""
    if type(value) is str:  # the common case first
        return Reply(200, value.encode(), TEXT_TYPE)
    if value is None:
        return NO_CONTENT
    if isinstance(value, dict):
        if "statusCode" in value:
            body = value.get("body")
            if isinstance(body, int | float):  # OpenFaaS python3-http sends str(body)
                body = str(body)
            return _reply_from(body, value["statusCode"], value.get("headers"), None, "statusCode")
        return Reply(200, _json_body(value), JSON_TYPE)
    if isinstance(value, Response):
        return _reply_from(value.body, value.status, value.headers, value.content_type)
    if isinstance(value, tuple):
        if len(value) == 2:
            return _reply_from(value[0], value[1], None)
        if len(value) == 3:
            return _reply_from(value[0], value[1], value[2])
        raise ConversionError(f"a returned tuple must be (body, status[, headers]), got {value!r}")
    if isinstance(value, str | bytes | bytearray | memoryview | list):
        body, content_type = _encode_body(value)
        return Reply(200, body, content_type)
    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        return Reply(200, b"", None, None, stream=value)
    if isinstance(value, StreamingResponse):
        return _streamed(value)
    if hasattr(value, "body") and (hasattr(value, "status") or hasattr(value, "status_code")):
        status = getattr(value, "status_code", None)
        if status is None or isinstance(status, str):
            status = getattr(value, "status", status)
        return _reply_from(
            value.body,
            status,
            getattr(value, "headers", None),
            getattr(value, "content_type", None),  # e.g. a Response from another import path
        )
    raise ConversionError(f"cannot turn a returned {_type_name(value)} into an HTTP response")


def _streamed(value: StreamingResponse) -> Reply:
    content = value.content
    if not (hasattr(content, "__aiter__") or hasattr(content, "__iter__")) or isinstance(
        content, str | bytes | bytearray | memoryview | dict
    ):
        kind = _type_name(content)
        raise ConversionError(f"a StreamingResponse's content must yield chunks, not be a {kind}")
    head = _reply_from(None, value.status, value.headers, value.content_type)
    content_type = head.content_type
    heartbeat = value.heartbeat
    if heartbeat is not None and (
        not content_type or content_type.partition(";")[0].strip().lower() != EVENT_STREAM
    ):
        heartbeat = None  # comments are only harmless in an event stream
    return Reply(head.status, b"", content_type, head.headers, stream=content, heartbeat=heartbeat)


def stream_content_type(first: bytes | str) -> str:
    """The content type of a streamed answer that named none: from its first chunk."""
    return TEXT_TYPE if isinstance(first, str) else BINARY_TYPE


def chunk_bytes(chunk: Any) -> bytes:
    """A streamed chunk as bytes; ConversionError for anything but str and bytes-likes."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise ConversionError(f"a stream yielded a {_type_name(chunk)}, not str or bytes")


def _reply_from(
    body: Any,
    status: Any,
    headers: Any,
    content_type: str | None = None,
    where: str = "status",
) -> Reply:
    code = _status(status, where)
    data, default_type = _encode_body(body)
    pairs = _header_pairs(headers)
    if pairs:
        kept = []
        for name, val in pairs:
            if name.lower() == "content-type":
                content_type = val
            else:
                kept.append((name, val))
        pairs = kept
    if content_type is None:
        content_type = default_type if data else None
    else:
        content_type = _header_value("Content-Type", content_type)
    return Reply(code, data, content_type, pairs or None)


def _encode_body(body: Any) -> tuple[bytes, str]:
    if isinstance(body, str):
        return body.encode(), TEXT_TYPE
    if isinstance(body, bytes):
        return body, BINARY_TYPE
    if isinstance(body, bytearray | memoryview):
        return bytes(body), BINARY_TYPE
    if body is None:
        return b"", BINARY_TYPE
    if isinstance(body, dict | list):
        return _json_body(body), JSON_TYPE
    raise ConversionError(f"cannot use a {_type_name(body)} as a response body")


def _json_body(value: Any) -> bytes:
    try:
        return dump_json(value)
    except (TypeError, ValueError) as exc:
        error = f"the returned {_type_name(value)} is not JSON-serialisable: {exc}"
        raise ConversionError(error) from None


def _status(value: Any, where: str) -> int:
    if isinstance(value, str):  # "404" or "404 Not Found"
        head = value.strip()[:3]
        value = int(head) if head.isdigit() else value
    if type(value) is not int or not 200 <= value <= 599:
        raise ConversionError(f"{where} must be an HTTP status from 200 to 599, got {value!r}")
    return value


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    pairs: list[tuple[str, str]] = []
    try:
        for name, raw in items:
            pairs.append((_header_name(name), _header_value(name, raw)))
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"invalid response headers {headers!r}: {exc}") from None
    return [(n, v) for n, v in pairs if n.lower() not in _RESERVED]


_BAD_NAME_CHARS = frozenset(' \t\r\n:"(),/;<=>?@[\\]{}\x00')


def _header_name(name: Any) -> str:
    if not isinstance(name, str) or not name or not name.isascii() or _BAD_NAME_CHARS & set(name):
        raise ConversionError(f"invalid header name {name!r}")
    return name


def _header_value(name: str, raw: Any) -> str:
    value = raw if isinstance(raw, str) else str(raw)
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ConversionError(f"header {name!r} has a line break in its value")
    if not value.isascii():  # sent as UTF-8 bytes; the wire encoding is latin-1
        value = value.encode().decode("latin-1")
    return value


def _type_name(value: Any) -> str:
    kind = type(value)
    name = kind.__qualname__
    return name if kind.__module__ == "builtins" else f"{kind.__module__}.{name}"
