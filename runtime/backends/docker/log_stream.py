"""Reading a container's output, shared by the docker and swarm backends.

A follow runs in a thread of its own and costs the gateway CPU for every frame
the engine sends, however much of it the limits in runtime/loghub.py then drop:
a function flooding stderr makes the engine send ~50,000 frames a second.
docker-py's stream reads each frame with two calls through urllib3 (~15 µs a
frame here), http.client's `read1` one HTTP chunk, that is one frame, a call
(~6 µs); reading what the connection has in one call and cutting chunks and
frames out of that buffer costs ~2 µs a frame (100 MB floods of 100-byte
lines, side by side). Lines are held to `MAX_LINE` bytes whatever the function writes (a
50 MB `print` has no newline for the engine to split at).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
from docker.api.client import APIClient

from runtime.backends.docker.engine import engine_errors
from runtime.loghub import MAX_LINE

READ_SIZE = 256 * 1024
MAX_SIZE_LINE = 1024
HEADER = 8
"""Each frame of a non-TTY container's stream: stream id, 3 zero bytes, length (big endian)."""


def read_logs(api: APIClient, container_id: str, tail: int) -> str:
    """The last `tail` lines of stdout and stderr; empty when the container is gone."""
    with engine_errors(f"reading logs of {container_id[:12]}"):
        try:
            raw = api.logs(container_id, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return ""
    return bytes(raw).decode("utf-8", "replace")


def follow_logs(api: APIClient, container_id: str, on_line: Callable[[str], None]) -> None:
    """Call `on_line` from a thread of its own with each line, until the container is removed.

    Not an executor thread: a follow lasts as long as the container, and
    teardown must not wait for it.
    """
    thread = threading.Thread(
        target=_follow, args=(api, container_id, on_line), name="logs", daemon=True
    )
    thread.start()


def _follow(api: APIClient, container_id: str, on_line: Callable[[str], None]) -> None:
    lines = LineSplitter(on_line)
    try:
        for data in _payloads(api, container_id):
            lines.feed(data)
    except Exception:  # the container is gone, whatever the client raised
        pass
    lines.close()


def _payloads(api: APIClient, container_id: str) -> Iterator[bytes]:
    """The frames' payloads, several frames' worth per item when they arrive together."""
    response = api._get(
        api._url("/containers/{0}/logs", container_id),
        params={"stdout": 1, "stderr": 1, "follow": 1},
        stream=True,
    )
    api._raise_for_status(response)
    body = _body(api, response)
    if body is None:  # an unexpected client underneath: docker-py's own reading
        yield from api._multiplexed_response_stream_helper(response)
        return
    yield from frame_payloads(body)


def _body(api: APIClient, response: Any) -> Iterator[bytes] | None:
    """The response body as it arrives, read in large pieces.

    The engine flushes each frame as an HTTP chunk of its own, so reading through
    http.client (one chunk a call) costs as much per line as docker-py does; the
    chunked coding is undone here over whatever the connection has instead.
    """
    try:
        api._disable_socket_timeout(api._get_raw_response_socket(response))
        message = response.raw._fp  # http.client's response, its headers read
        connection = message.fp  # the buffered socket file, at the start of the body
    except AttributeError:
        return None
    read1 = getattr(connection, "read1", None)
    if not callable(read1):
        return None
    if getattr(message, "chunked", False):
        return dechunk(read1)
    return iter(lambda: read1(READ_SIZE), b"")


def dechunk(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """The data of an HTTP/1.1 chunked body (RFC 9112 7.1), as it arrives; stops at the last
    chunk or when `read` returns nothing."""
    pending = b""
    left = 0  # data bytes of the current chunk still to come
    skip = 0  # the CRLF after a chunk's data
    while True:
        data = read(READ_SIZE)
        if not data:
            return
        pending = pending + data if pending else data
        position, end = 0, len(pending)
        pieces = []
        while True:
            if skip:
                taken = min(skip, end - position)
                position += taken
                skip -= taken
                if skip:
                    break
            if left:
                taken = min(left, end - position)
                if not taken:
                    break
                pieces.append(pending[position : position + taken])
                position += taken
                left -= taken
                if left:
                    break
                skip = 2
                continue
            line_end = pending.find(b"\r\n", position)
            if line_end < 0:
                if end - position > MAX_SIZE_LINE:
                    raise ValueError("a chunk size line too long")
                break
            left = int(pending[position:line_end].partition(b";")[0], 16)
            position = line_end + 2
            if not left:  # the last chunk
                if pieces:
                    yield b"".join(pieces)
                return
        pending = pending[position:]
        if pieces:
            yield b"".join(pieces)


def frame_payloads(body: Iterator[bytes]) -> Iterator[bytes]:
    """The payloads of a multiplexed stream's frames, those that arrived together joined."""
    pending = b""
    for data in body:
        pending = pending + data if pending else data
        payloads = []
        position, end = 0, len(pending)
        while end - position >= HEADER:
            length = int.from_bytes(pending[position + 4 : position + HEADER], "big")
            if end - position - HEADER < length:
                break
            payloads.append(pending[position + HEADER : position + HEADER + length])
            position += HEADER + length
        pending = pending[position:]
        if payloads:
            yield b"".join(payloads)


class LineSplitter:
    """Cuts a byte stream into lines for `on_line`, holding at most `max_line` bytes of one;
    a longer line ends with how much of it was cut. Empty lines are skipped."""

    def __init__(self, on_line: Callable[[str], None], max_line: int = MAX_LINE) -> None:
        self._on_line = on_line
        self._max_line = max_line
        self._head = bytearray()
        self._cut = 0

    def feed(self, data: bytes) -> None:
        parts = data.split(b"\n")
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if index < last and not self._head and not self._cut and len(part) <= self._max_line:
                if part:
                    self._on_line(part.decode("utf-8", "replace"))
                continue
            room = self._max_line - len(self._head)
            self._head += part[:room]
            self._cut += max(0, len(part) - max(room, 0))
            if index < last:
                self._emit()

    def close(self) -> None:
        self._emit()

    def _emit(self) -> None:
        text = self._head.decode("utf-8", "replace")
        if self._cut:
            text += f"... [{self._cut} bytes cut]"
        self._head.clear()
        self._cut = 0
        if text:
            self._on_line(text)
