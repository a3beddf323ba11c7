"""A real `nats-server -js` for tests: a fixture that starts one on free ports and stops it.

Imported by tests/integration/conftest.py. `scripts/ensure-cluster-tools.sh`
installs the server; tests fail (not skip) without it, as the Docker ones do.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One server with JetStream on disk; `start` again after `stop` or `kill` restarts it."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = _free_port()
        self.monitor_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("these tests need nats-server: run scripts/ensure-cluster-tools.sh")
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-m", str(self.monitor_port), "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"nats-server exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4096).startswith(b"INFO"):
                    return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"nats-server not accepting connections within {STARTUP_TIMEOUT}s")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator's restart would do."""
        self._end(kill=False)

    def kill(self) -> None:
        self._end(kill=True)

    def _end(self, *, kill: bool) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.kill()
