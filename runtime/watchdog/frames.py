"""The WebSocket tunnel between the gateway and a watchdog: framing only, no I/O.

A call with WEBSOCKET_HEADER (runtime/watchdog/wire.py) ends the HTTP exchange on its
connection: after the request head, both sides send frames, and the connection is
never reused. The gateway speaks RFC 6455 to the caller; this inner framing is far
simpler to check, which matters because whatever a replica writes is hostile (the
function runs in the watchdog's process):

    kind     1 byte   TEXT, BINARY, CLOSE, ACCEPT
    length   4 bytes  big-endian, at most the function's max_message_size
    payload  length bytes

TEXT is UTF-8 (checked by the gateway before it reaches a caller). CLOSE carries a
2-byte close code and a UTF-8 reason of at most 123 bytes, as RFC 6455 does. ACCEPT is
the watchdog's first frame once the handler accepted: its payload is the chosen
subprotocol (empty: none). A length past the limit is refused before any payload byte
is buffered, so a decoder holds at most one message and one read.

Standard library only: the watchdog imports it as `.frames`, the gateway as
`runtime.watchdog.frames`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

TEXT = 1
BINARY = 2
CLOSE = 8
ACCEPT = 16
KINDS = frozenset({TEXT, BINARY, CLOSE, ACCEPT})
HEAD = struct.Struct(">BI")

MAX_REASON = 123
"""Bytes of a close reason (RFC 6455: a control frame's payload is at most 125)."""
MAX_SUBPROTOCOL = 256

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
INTERNAL_ERROR = 1011
NO_STATUS = 1005
ABNORMAL = 1006


class Frame(NamedTuple):
    kind: int
    payload: bytes


class FrameError(Exception):
    """The peer broke the framing: close the socket with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(kind: int, payload: bytes) -> bytes:
    return HEAD.pack(kind, len(payload)) + payload


def encode_close(code: int, reason: str = "") -> bytes:
    return encode(CLOSE, close_payload(code, reason))


def close_payload(code: int, reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")
    if len(raw) > MAX_REASON:  # cut on a character boundary
        raw = raw[:MAX_REASON].decode("utf-8", "ignore").encode()
    return struct.pack(">H", code) + raw


def sendable(code: int) -> bool:
    """Whether RFC 6455 lets an endpoint send `code` in a close frame."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a CLOSE frame; raises FrameError for a malformed one."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) < 2 or len(payload) > 2 + MAX_REASON:
        raise FrameError(PROTOCOL_ERROR, f"a close frame of {len(payload)} bytes")
    (code,) = struct.unpack(">H", payload[:2])
    if not sendable(code):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "a close reason that is not UTF-8") from None
    return code, reason


class Decoder:
    """Frames out of a byte stream, each checked against `max_size` as its head arrives."""

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Frame | None:
        """The next whole frame, None until one is buffered; FrameError when it breaks the rules."""
        buf = self._buf
        if len(buf) < HEAD.size:
            return None
        kind, length = HEAD.unpack_from(buf)
        if kind not in KINDS:
            raise FrameError(PROTOCOL_ERROR, f"unknown frame kind {kind}")
        limit = self.max_size
        if kind == CLOSE:
            limit = 2 + MAX_REASON
        elif kind == ACCEPT:
            limit = MAX_SUBPROTOCOL
        if length > limit:
            code = TOO_BIG if kind in (TEXT, BINARY) else PROTOCOL_ERROR
            raise FrameError(code, f"a message of {length} bytes is over the limit of {limit}")
        end = HEAD.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEAD.size : end])
        del buf[:end]
        return Frame(kind, payload)
