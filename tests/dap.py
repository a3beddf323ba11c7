"""A small Debug Adapter Protocol client: what an editor sends debugpy, over a socket.

Messages are JSON framed by a `Content-Length` header (the DAP base protocol). A
reader thread files every message it receives; `request` sends one and `wait` waits,
bounded, for the response or event a test expects.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]


class DapClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.settimeout(None)  # the reader blocks; `close` ends it
        self._seq = 0
        self._received: list[Message] = []
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def request(self, command: str, arguments: Message | None = None) -> int:
        """Send a request; its `seq`, which its response names as `request_seq`."""
        self._seq += 1
        message = {"seq": self._seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        body = json.dumps(message).encode()
        self._sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._seq

    def response(self, seq: int, timeout: float = 10.0) -> Message:
        """The response to request `seq`; fails unless it succeeded."""
        found = self.wait(
            lambda m: m.get("type") == "response" and m.get("request_seq") == seq,
            timeout,
            f"the response to request {seq}",
        )
        assert found.get("success"), f"request {found.get('command')} failed: {found}"
        return found

    def call(
        self, command: str, arguments: Message | None = None, timeout: float = 10.0
    ) -> Message:
        return self.response(self.request(command, arguments), timeout)

    def event(self, name: str, timeout: float = 10.0) -> Message:
        return self.wait(
            lambda m: m.get("type") == "event" and m.get("event") == name,
            timeout,
            f"the event {name!r}",
        )

    def wait(self, matches: Callable[[Message], bool], timeout: float, what: str) -> Message:
        """The first received message that `matches` (taken out, so it is met once)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index, message in enumerate(self._received):
                    if matches(message):
                        return self._received.pop(index)
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(
                        f"no {what} within {timeout}s (connection closed: {self._closed}); "
                        f"received: {self._received}"
                    )
                self._changed.wait(left)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(5)

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                headers = dict(line.split(b":", 1) for line in head.split(b"\r\n") if b":" in line)
                length = int(headers[b"Content-Length"].strip())
                while len(buffer) < length:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                with self._changed:
                    self._received.append(json.loads(body))
                    self._changed.notify_all()
        except OSError:
            return
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()


def attach(host: str, port: int, breakpoints: dict[str, list[int]]) -> DapClient:
    """Attach to a listening debugpy as VS Code's "Python: Remote Attach" does, with
    breakpoints (path as the debuggee sees it -> lines), until configuration is done."""
    client = DapClient(host, port)
    try:
        client.call(
            "initialize",
            {
                "clientID": "faas-tests",
                "adapterID": "debugpy",
                "pathFormat": "path",
                "linesStartAt1": True,
                "columnsStartAt1": True,
            },
        )
        attached = client.request("attach", {"justMyCode": True})
        client.event("initialized")
        for path, lines in breakpoints.items():
            answer = client.call(
                "setBreakpoints",
                {"source": {"path": path}, "breakpoints": [{"line": line} for line in lines]},
            )
            assert all(b.get("verified") for b in answer["body"]["breakpoints"]), answer
        client.call("configurationDone")
        client.response(attached)  # debugpy answers the attach once configuration is done
    except BaseException:
        client.close()
        raise
    return client
