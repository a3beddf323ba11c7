"""A hostile function: it rewrites its own replica's answer at the socket.

The handler runs in the same process as the watchdog, so it can replace what the
watchdog writes with any bytes at all. `?attack=NAME` picks the bytes; the patch
answers that one call and then removes itself.
"""

import asyncio

from faas_watchdog import protocol

FORGED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 33\r\n"
    b"x-forged: yes\r\n\r\n<script>alert('forged')</script>"
)

ATTACKS = {
    "smuggle-204": b"HTTP/1.1 204 No Content\r\ncontent-length: %d\r\n\r\n" % len(FORGED) + FORGED,
    "smuggle-304": b"HTTP/1.1 304 Not Modified\r\ncontent-length: %d\r\n\r\n" % len(FORGED)
    + FORGED,
    "smuggle-100": b"HTTP/1.1 100 Continue\r\n\r\n" + FORGED,
    "trailing": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" + FORGED,
    "length-underscore": b"HTTP/1.1 200 OK\r\ncontent-length: 1_0\r\n\r\n0123456789",
    "length-plus": b"HTTP/1.1 200 OK\r\ncontent-length: +10\r\n\r\n0123456789",
    "bare-lf": b"HTTP/1.1 200 OK\r\nx-a: 1\nx-b: 2\r\ncontent-length: 2\r\n\r\nok",
    "no-framing": b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
    "too-large": b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n" + b"x" * 100_000,
    "upgrade": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
}

_original = protocol.Connection.respond


def _install(raw):
    def respond(self, *args, **kwargs):
        protocol.Connection.respond = _original
        self.busy = False
        self.call = None
        self._transport.write(raw)

    protocol.Connection.respond = respond


def _install_stream(size=None):
    """An answer of `size` bytes (None: chunked, without end), written as fast as the
    gateway takes it."""

    def respond(self, *args, **kwargs):
        protocol.Connection.respond = _original
        self.busy = False
        self.call = None
        transport = self._transport
        block = 0x100000
        if size is None:
            transport.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n" % block + b"z" * block + b"\r\n"
        else:
            transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            chunk = b"z" * block

        async def pump():
            left = size
            while not transport.is_closing() and (left is None or left > 0):
                if transport.get_write_buffer_size() < 4 * block:
                    transport.write(chunk if left is None else chunk[:left])
                    left = None if left is None else left - len(chunk)
                    await asyncio.sleep(0)
                else:
                    await asyncio.sleep(0.005)

        asyncio.get_running_loop().create_task(pump())

    protocol.Connection.respond = respond


async def handle(event, context):
    attack = event.query.get("attack", "")
    if attack == "endless":
        _install_stream()
    elif attack == "big":
        _install_stream(60 * 1024 * 1024)
    elif attack in ATTACKS:
        _install(ATTACKS[attack])
    return "honest answer\n"
