"""The real watchdog in a subprocess, spoken to over HTTP/1.1 on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.images import watchdog_files

REPO_ROOT = Path(__file__).resolve().parents[2]
# Images may run another Python than the tests: WATCHDOG_TEST_PYTHON=python3.13 checks that one.
PYTHON = os.environ.get("WATCHDOG_TEST_PYTHON") or sys.executable
TOKEN = "test-token"
AUTH = {"X-Faas-Token": TOKEN}
IO_TIMEOUT = 10.0

SYNC_HANDLER = """
    import asyncio
    import threading
    import time

    from wdsync_helpers import describe

    lock = threading.Lock()
    active = 0
    peak = 0
    calls = 0  # warm state survives between calls


    async def later(value):
        await asyncio.sleep(0.01)
        return value


    def handle(event, context):
        global active, peak, calls
        calls += 1
        route = event.path
        if route == "/echo":
            return describe(event, context, calls)
        if route == "/sleep":
            time.sleep(float(event.query.get("s", "1")))
            return "slept"
        if route == "/raise":
            raise RuntimeError("secret detail")
        if route == "/concurrent":
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.3)
            with lock:
                active -= 1
            return {"peak": peak}
        if route == "/none":
            return None
        if route == "/bytes":
            return b"\\x00\\x01"
        if route == "/tuple":
            return ("created", 201, {"X-Extra": "yes", "Content-Type": "text/x-custom"})
        if route == "/bad":
            return 42
        if route == "/awaitable":
            return later("awaited")
        if route == "/log":
            context.logger.info("from the handler")
            print("printed line")
            return "logged"
        return "hello"
"""

HELPERS = """
    def describe(event, context, calls):
        data = event.data
        return {
            "method": event.method,
            "path": event.path,
            "query": event.query,
            "query_string": event.query_string,
            "headers": dict(event.headers),
            "content_type": event.headers.get("Content-Type"),
            "body": event.text(),
            "call_id": context.call_id,
            "function": context.function_name,
            "remaining": context.remaining(),
            "hostname": context.hostname,
            "topic": event.topic,
            "event_id": event.event_id,
            "attempt": event.attempt,
            "data": data.decode() if isinstance(data, bytes) else data,
            "calls": calls,
        }
"""

ASYNC_HANDLER = """
    import asyncio

    active = 0
    peak = 0


    async def handle(event, context):
        global active, peak
        if event.path == "/sleep":
            await asyncio.sleep(float(event.query.get("s", "1")))
            return "slept"
        if event.path == "/raise":
            raise ValueError("async secret")
        if event.path == "/concurrent":
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.3)
            active -= 1
            return {"peak": peak}
        return {"async": True, "body": event.json() if event.body else None}
"""

OPENFAAS_HANDLER = """
    import json


    def handle(event, context):
        return {
            "statusCode": 200,
            "body": {
                "method": event.method,
                "path": event.path,
                "query": event.query.get("name"),
                "agent": event.headers.get("User-Agent"),
                "payload": json.loads(event.body),
            },
            "headers": {"X-Template": "python3-http"},
        }
"""


# ---------------------------------------------------------------- harness


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Watchdog:
    proc: subprocess.Popen[bytes]
    port: int
    log_dir: Path
    ready_status: int = 0
    ready_body: dict[str, Any] = field(default_factory=dict)

    def stderr(self) -> str:
        return (self.log_dir / "stderr.log").read_text()

    def stdout(self) -> str:
        return (self.log_dir / "stdout.log").read_text()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)

    def call(
        self,
        path: str = "/",
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connect()
        try:
            all_headers = {"X-Faas-Token": token} if token is not None else {}
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)


class Launcher:
    """Starts watchdogs and guarantees each one is killed afterwards."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def start(
        self,
        files: dict[str, str],
        handler_file: str = "handler.py",
        module: str = "runtime.watchdog",
        cwd: Path = REPO_ROOT,
        **env: str,
    ) -> Watchdog:
        self.count += 1
        run_dir = self.base / f"run{self.count}"
        code_dir = run_dir / "code"
        code_dir.mkdir(parents=True)
        for name, source in files.items():
            path = code_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
        environ.pop("PYTHONPATH", None)
        environ.update(
            FAAS_HANDLER_FILE=handler_file,
            FAAS_CODE_DIR=str(code_dir),
            FAAS_TOKEN=TOKEN,
            FAAS_FUNCTION_NAME="testfn",
            FAAS_PORT=str(port),
            FAAS_HOST="127.0.0.1",
            FAAS_SHUTDOWN_GRACE="5",
        )
        environ.update(env)
        with (
            open(run_dir / "stdout.log", "wb") as out,
            open(run_dir / "stderr.log", "wb") as err,
        ):
            proc = subprocess.Popen(
                [PYTHON, "-m", module],
                cwd=cwd,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        watchdog = Watchdog(proc, port, run_dir)
        self._wait_ready(watchdog)
        return watchdog

    def _wait_ready(self, wd: Watchdog) -> None:
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            if wd.proc.poll() is not None:
                pytest.fail(f"watchdog exited with {wd.proc.returncode}:\n{wd.stderr()}")
            try:
                status, _, body = wd.call("/_/ready")
            except OSError:
                time.sleep(0.02)
                continue
            wd.ready_status, wd.ready_body = status, json.loads(body)
            return
        pytest.fail(f"watchdog not ready after {IO_TIMEOUT}s:\n{wd.stderr()}")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=IO_TIMEOUT)


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("watchdog"))
    yield launcher
    launcher.kill_all()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.kill_all()


@pytest.fixture(scope="module")
def app(module_launcher: Launcher) -> Watchdog:
    return module_launcher.start(
        {"fns/app.py": SYNC_HANDLER, "fns/wdsync_helpers.py": HELPERS},
        handler_file="fns/app.py",
        FAAS_MAX_BODY="1000",
        FAAS_THREADS="16",
    )


@pytest.fixture(scope="module")
def async_app(module_launcher: Launcher) -> Watchdog:
    return module_launcher.start({"handler.py": ASYNC_HANDLER})


def read_response(stream: Any) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length-framed response from a socket's binary file."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def parallel(count: int, fn: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(fn) for _ in range(count)]
        return [f.result(timeout=IO_TIMEOUT * 2) for f in futures]


# ---------------------------------------------------------------- readiness and auth


def test_ready_requires_the_token(app: Watchdog) -> None:
    assert (app.ready_status, app.ready_body) == (200, {"status": "ready"})
    status, headers, body = app.call("/_/ready", token=None)
    assert status == 403
    assert json.loads(body)["error"]
    assert headers["X-Call-Id"]
    assert app.call("/_/ready", token="wrong")[0] == 403
    assert app.call("/anything", method="POST", body=b"x", token="")[0] == 403


def test_start_logs_import_duration(app: Watchdog) -> None:
    lines = [json.loads(line) for line in app.stderr().splitlines()]
    started = next(line for line in lines if "import_ms" in line)
    assert started["function"] == "testfn"
    assert isinstance(started["import_ms"], float)


# ---------------------------------------------------------------- invocations


def test_sync_handler_sees_the_request(app: Watchdog) -> None:
    status, headers, body = app.call(
        "/echo?a=1&a=2&b=x%20y",
        method="PUT",
        body=b'{"k": 1}',
        headers={"Content-Type": "application/json", "X-Faas-Call-Id": "call-42", "X-Mine": "m"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Call-Id"] == "call-42"
    seen = json.loads(body)
    assert (seen["method"], seen["path"]) == ("PUT", "/echo")
    assert seen["query_string"] == "a=1&a=2&b=x%20y"
    assert seen["query"] == {"a": "1", "b": "x y"}
    assert seen["body"] == '{"k": 1}'
    assert seen["content_type"] == "application/json"
    assert seen["headers"]["x-mine"] == "m"
    assert not [name for name in seen["headers"] if name.startswith("x-faas")]
    assert (seen["call_id"], seen["function"]) == ("call-42", "testfn")
    assert 25 < seen["remaining"] <= 30
    assert seen["hostname"]
    assert (seen["topic"], seen["event_id"], seen["attempt"], seen["data"]) == (None, None, 1, None)


def test_warm_state_and_generated_call_ids(app: Watchdog) -> None:
    first = json.loads(app.call("/echo")[2])
    second = json.loads(app.call("/echo")[2])
    assert second["calls"] > first["calls"]
    assert len(first["call_id"]) == 32 and first["call_id"] != second["call_id"]


def test_event_trigger_headers(app: Watchdog) -> None:
    status, _, body = app.call(
        "/echo",
        method="POST",
        body=b'{"order": 7}',
        headers={
            "Content-Type": "application/json",
            "X-Faas-Topic": "orders",
            "X-Faas-Event-Id": "ev-1",
            "X-Faas-Attempt": "3",
            "X-Faas-Timeout": "2.5",
        },
    )
    seen = json.loads(body)
    assert status == 200
    assert (seen["topic"], seen["event_id"], seen["attempt"]) == ("orders", "ev-1", 3)
    assert seen["data"] == {"order": 7}
    assert seen["remaining"] <= 2.5


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/", 200, "text/plain; charset=utf-8", b"hello"),
        ("/none", 204, None, b""),
        ("/bytes", 200, "application/octet-stream", b"\x00\x01"),
        ("/tuple", 201, "text/x-custom", b"created"),
        ("/awaitable", 200, "text/plain; charset=utf-8", b"awaited"),
    ],
)
def test_return_values_over_the_wire(
    app: Watchdog, path: str, status: int, content_type: str | None, body: bytes
) -> None:
    got_status, headers, got_body = app.call(path)
    assert (got_status, headers.get("Content-Type"), got_body) == (status, content_type, body)
    assert headers["X-Call-Id"]
    if path == "/tuple":
        assert headers["X-Extra"] == "yes"


def test_unsupported_return_value_is_500_and_logged(app: Watchdog) -> None:
    status, _, body = app.call("/bad", headers={"X-Faas-Call-Id": "bad-1"})
    assert status == 500
    assert json.loads(body)["call_id"] == "bad-1"
    assert _log_lines(app, "bad-1", lambda line: "int" in line["msg"])


def test_handler_exception_is_500_without_traceback(app: Watchdog) -> None:
    status, headers, body = app.call("/raise", headers={"X-Faas-Call-Id": "boom-1"})
    assert status == 500
    assert json.loads(body) == {"error": "function raised an exception", "call_id": "boom-1"}
    assert b"secret detail" not in body and b"Traceback" not in body
    assert headers["X-Call-Id"] == "boom-1"
    (line,) = _log_lines(app, "boom-1", lambda line: "traceback" in line)
    assert "RuntimeError: secret detail" in line["traceback"]


def test_handler_logger_and_print(app: Watchdog) -> None:
    assert app.call("/log", headers={"X-Faas-Call-Id": "log-1"})[2] == b"logged"
    (line,) = _log_lines(app, "log-1", lambda line: line["msg"] == "from the handler")
    assert (line["level"], line["function"]) == ("info", "testfn")
    assert "printed line" in app.stdout()


def _log_lines(
    wd: Watchdog, call_id: str, match: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        lines = [json.loads(line) for line in wd.stderr().splitlines() if line.startswith("{")]
        found = [line for line in lines if line.get("call_id") == call_id and match(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_async_handler(async_app: Watchdog) -> None:
    status, headers, body = async_app.call("/", method="POST", body=b"[1, 2]")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"async": True, "body": [1, 2]}
    status, _, body = async_app.call("/raise", headers={"X-Faas-Call-Id": "async-boom"})
    assert status == 500
    assert b"async secret" not in body
    assert json.loads(body)["call_id"] == "async-boom"


def test_openfaas_style_handler(launcher: Launcher) -> None:
    wd = launcher.start({"handler.py": OPENFAAS_HANDLER})
    status, headers, body = wd.call(
        "/api/items?name=ada",
        method="POST",
        body=b'{"x": 1}',
        headers={"User-Agent": "curl/8", "Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["X-Template"] == "python3-http"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "method": "POST",
        "path": "/api/items",
        "query": "ada",
        "agent": "curl/8",
        "payload": {"x": 1},
    }


# ---------------------------------------------------------------- timeouts and concurrency


@pytest.mark.parametrize("which", ["app", "async_app"])
def test_timeout_is_504(which: str, request: pytest.FixtureRequest) -> None:
    wd: Watchdog = request.getfixturevalue(which)
    started = time.monotonic()
    status, headers, body = wd.call(
        "/sleep?s=3", headers={"X-Faas-Timeout": "0.5", "X-Faas-Call-Id": f"slow-{which}"}
    )
    elapsed = time.monotonic() - started
    assert status == 504
    assert json.loads(body) == {
        "error": "function timed out after 0.5s",
        "call_id": f"slow-{which}",
    }
    assert headers["X-Call-Id"] == f"slow-{which}"
    assert 0.4 < elapsed < 2.5
    assert wd.call("/_/ready")[0] == 200  # still serving


def test_timeout_header_cannot_raise_the_limit(launcher: Launcher) -> None:
    wd = launcher.start({"handler.py": ASYNC_HANDLER}, FAAS_TIMEOUT="0.3")
    status, _, body = wd.call("/sleep?s=2", headers={"X-Faas-Timeout": "60"})
    assert status == 504
    assert b"after 0.3s" in body


@pytest.mark.parametrize("which", ["app", "async_app"])
def test_calls_run_concurrently(which: str, request: pytest.FixtureRequest) -> None:
    wd: Watchdog = request.getfixturevalue(which)
    started = time.monotonic()
    results = parallel(8, lambda: wd.call("/concurrent"))
    elapsed = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 8
    assert max(json.loads(body)["peak"] for _, _, body in results) > 1
    assert elapsed < 8 * 0.3 * 0.75


# ---------------------------------------------------------------- HTTP/1.1 details


def test_keep_alive_reuses_one_connection(app: Watchdog) -> None:
    conn = app.connect()
    try:
        sockets = set()
        for i in range(5):
            conn.request("POST", "/echo", body=str(i).encode(), headers=AUTH)
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["body"] == str(i)
            assert response.getheader("Connection") is None
            sockets.add(id(conn.sock))
        assert len(sockets) == 1
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(app: Watchdog) -> None:
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\nX-Faas-Token: test-token\r\n"
            b"X-Faas-Call-Id: first\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Faas-Token: test-token\r\n"
            b"X-Faas-Call-Id: second\r\nContent-Length: 4\r\n\r\nbody"
            b"GET /_/ready HTTP/1.1\r\nHost: x\r\nX-Faas-Token: test-token\r\n"
            b"X-Faas-Call-Id: third\r\nConnection: close\r\n\r\n"
        )
        first, second, third = (read_response(stream) for _ in range(3))
        assert (first[0], first[1]["x-call-id"], first[2]) == (200, "first", b"slept")
        assert (second[0], second[1]["x-call-id"]) == (200, "second")
        assert json.loads(second[2])["body"] == "body"
        assert (third[0], third[1]["x-call-id"], third[1]["connection"]) == (200, "third", "close")
        assert stream.read() == b""  # closed after `Connection: close`


def test_chunked_request_body(app: Watchdog) -> None:
    conn = app.connect()
    try:
        conn.request("POST", "/echo", body=iter([b"hel", b"lo ", b"chunks"]), headers=AUTH)
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["body"] == "hello chunks"
    finally:
        conn.close()


def test_http10_closes_by_default(app: Watchdog) -> None:
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET / HTTP/1.0\r\nX-Faas-Token: test-token\r\n\r\n")
        status, headers, body = read_response(stream)
        assert (status, body) == (200, b"hello")
        assert headers["connection"] == "close"
        assert stream.read() == b""


def test_expect_100_continue(app: Watchdog) -> None:
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nX-Faas-Token: test-token\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert stream.readline() == b"\r\n"
        sock.sendall(b"12345")
        status, _, body = read_response(stream)
        assert status == 200 and json.loads(body)["body"] == "12345"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /echo HTTP/1.1\r\nX-Faas-Token: test-token\r\nContent-Length: 1001\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nX-Faas-Token: test-token\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3e8\r\n"
        + b"a" * 1000
        + b"\r\n1\r\nb\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_body_over_the_limit_is_413(app: Watchdog, request_bytes: bytes) -> None:
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(request_bytes)
        status, headers, body = read_response(stream)
        assert status == 413
        assert headers["connection"] == "close"
        assert "limit" in json.loads(body)["error"]
        assert stream.read() == b""


def test_body_at_the_limit_is_accepted(app: Watchdog) -> None:
    status, _, body = app.call("/echo", method="POST", body=b"z" * 1000)
    assert status == 200 and len(json.loads(body)["body"]) == 1000


@pytest.mark.parametrize(
    "garbage",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBroken header\r\n\r\n"],
)
def test_malformed_request_is_400_and_closed(app: Watchdog, garbage: bytes) -> None:
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(garbage)
        status, headers, body = read_response(stream)
        assert status == 400
        assert headers["connection"] == "close"
        assert headers["x-call-id"]
        assert json.loads(body)["error"]
        assert stream.read() == b""
    assert app.call("/_/ready")[0] == 200


def test_client_disconnect_mid_call_does_not_hurt(async_app: Watchdog) -> None:
    with async_app.raw() as sock:
        sock.sendall(b"GET /sleep?s=5 HTTP/1.1\r\nX-Faas-Token: test-token\r\n\r\n")
        time.sleep(0.1)
    assert async_app.call("/", method="POST")[0] == 200


# ---------------------------------------------------------------- failures and lifecycle


@pytest.mark.parametrize(
    ("source", "error", "line"),
    [
        ("x = 1\ndef handle(event, context)\n    pass\n", "SyntaxError", 2),
        ("import os\n\nos.environ['MISSING_SETTING']\n", "KeyError", 3),
    ],
    ids=["syntax", "exception"],
)
def test_import_failure_answers_503(launcher: Launcher, source: str, error: str, line: int) -> None:
    wd = launcher.start({"sub/broken.py": source}, handler_file="sub/broken.py")
    assert wd.ready_status == 503
    assert wd.ready_body["status"] == "failed"
    assert wd.ready_body["error"].startswith(error)
    assert (wd.ready_body["file"], wd.ready_body["line"]) == ("sub/broken.py", line)
    status, headers, body = wd.call("/", method="POST", body=b"{}")
    assert status == 503  # a call is told that the import failed, never what it raised
    assert json.loads(body) == {"error": "the function's handler failed to import"}
    assert headers["X-Call-Id"]
    assert wd.call("/_/ready", token=None)[0] == 403
    assert "Traceback" in wd.stderr() or error == "SyntaxError"


def test_missing_handler_file_answers_503(launcher: Launcher) -> None:
    wd = launcher.start({}, handler_file="nothing.py")
    assert wd.ready_status == 503
    assert wd.ready_body == {
        "status": "failed",
        "error": "handler file not found: nothing.py",
        "file": "nothing.py",
        "line": None,
    }


def test_missing_token_setting_refuses_to_start(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    environ["FAAS_HANDLER_FILE"] = "handler.py"
    result = subprocess.run(
        [PYTHON, "-m", "runtime.watchdog"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        timeout=IO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert b"FAAS_TOKEN" in result.stderr


def test_sigterm_lets_the_call_in_flight_finish(launcher: Launcher) -> None:
    wd = launcher.start({"handler.py": SYNC_HANDLER, "wdsync_helpers.py": HELPERS})
    idle = wd.connect()
    idle.request("GET", "/", headers=AUTH)
    assert idle.getresponse().read() == b"hello"  # an idle keep-alive connection stays open

    outcome: list[tuple[int, dict[str, str], bytes]] = []
    caller = threading.Thread(target=lambda: outcome.append(wd.call("/sleep?s=1")))
    caller.start()
    time.sleep(0.3)
    wd.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=IO_TIMEOUT)
    assert outcome and outcome[0][0] == 200 and outcome[0][2] == b"slept"
    assert outcome[0][1].get("Connection") == "close"
    assert wd.proc.wait(timeout=IO_TIMEOUT) == 0
    idle.close()
    with pytest.raises(OSError):
        wd.call("/_/ready")
    assert "SIGTERM" in wd.stderr()


def test_sigterm_does_not_wait_forever_for_a_stuck_thread(launcher: Launcher) -> None:
    wd = launcher.start(
        {"handler.py": SYNC_HANDLER, "wdsync_helpers.py": HELPERS}, FAAS_SHUTDOWN_GRACE="0.5"
    )
    with wd.raw() as sock:
        sock.sendall(b"GET /sleep?s=60 HTTP/1.1\r\nX-Faas-Token: test-token\r\n\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        wd.proc.send_signal(signal.SIGTERM)
        assert wd.proc.wait(timeout=IO_TIMEOUT) == 0
        assert time.monotonic() - started < 3
    assert "still running" in wd.stderr()


def test_runs_as_a_copied_standalone_package(launcher: Launcher, tmp_path: Path) -> None:
    """Images copy the package to /opt/faas/faas_watchdog, and `faas.handler` next to it, and
    run `python3 -m faas_watchdog`: nothing else of the host's packages is imported."""
    opt = tmp_path / "opt"
    for name, content in watchdog_files().items():
        (opt / name).parent.mkdir(parents=True, exist_ok=True)
        (opt / name).write_bytes(content)
    handler = """
        import sys
        from faas_watchdog import Response
        import faas.handler

        def handle(event, context):
            leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("runtime", "faas"))
            same = Response is faas.handler.Response
            return Response({"leaked": leaked, "from": faas.handler.__file__, "same": same},
                            status=201, headers={"X-A": "b"})
    """
    wd = launcher.start(
        {"handler.py": handler}, module="faas_watchdog", cwd=opt, PYTHONPATH=str(opt)
    )
    status, headers, body = wd.call("/", method="POST")
    assert (status, headers["Content-Type"], headers["X-A"]) == (201, "application/json", "b")
    answer = json.loads(body)
    assert answer["leaked"] == ["faas", "faas.handler"]
    assert answer["from"] == str(opt / "faas" / "handler.py")
    assert answer["same"] is True


# ---------------------------------------------------------------- strict parsing (no smuggling)

SMUGGLED = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Faas-Token: test-token\r\n\r\n"
ATTACK_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Faas-Token: test-token\r\n"


@pytest.mark.parametrize(
    "attack",
    [
        ATTACK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        ATTACK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
        ATTACK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\nGarbage\r\n\r\n",
        ATTACK_HEAD + b"Content-Length: 000000000000000000005\r\n\r\nhello",
        ATTACK_HEAD + b"Host: y\r\nContent-Length: 0\r\n\r\n",
        ATTACK_HEAD + b"X\x00Y: v\r\nContent-Length: 0\r\n\r\n",
        ATTACK_HEAD + b"X: a\x0bb\r\nContent-Length: 0\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nX-Faas-Token: test-token\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\nHost: x\nX-Faas-Token: test-token\n\n",  # refused, not waited on
    ],
    ids=[
        "chunk-0x",
        "chunk-ext-lf",
        "trailer",
        "cl-21-digits",
        "host-twice",
        "name-nul",
        "value-vt",
        "te-http10",
        "bare-lf",
    ],
)
def test_ambiguous_framing_is_400_and_what_follows_never_runs(app: Watchdog, attack: bytes) -> None:
    """Requests that h11 or httptools would read differently are refused, and the bytes
    after them (a request hidden behind the ambiguity) are never run."""
    calls_before = json.loads(app.call("/echo")[2])["calls"]
    with app.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(attack + SMUGGLED)
        status, headers, body = read_response(stream)
        assert status == 400
        assert headers["connection"] == "close"
        assert json.loads(body)["error"]
        assert stream.read() == b""
    assert json.loads(app.call("/echo")[2])["calls"] == calls_before + 1


# ---------------------------------------------------------------- streamed request bodies

HASHING_HANDLERS = {
    "async": """
        import hashlib

        async def handle(event, context):
            digest, size = hashlib.sha256(), 0
            async for chunk in event.stream():
                digest.update(chunk)
                size += len(chunk)
            return {"size": size, "sha256": digest.hexdigest()}
    """,
    "sync": """
        import hashlib

        def handle(event, context):
            digest, size = hashlib.sha256(), 0
            for chunk in event.stream():
                digest.update(chunk)
                size += len(chunk)
            return {"size": size, "sha256": digest.hexdigest()}
    """,
}
STREAM_BODY = {"X-Faas-Body": "stream"}


def vm_hwm(wd: Watchdog) -> int:
    status = Path(f"/proc/{wd.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


@pytest.mark.parametrize("kind", sorted(HASHING_HANDLERS))
def test_a_streamed_body_reaches_the_handler_as_it_arrives_in_little_memory(
    launcher: Launcher, kind: str
) -> None:
    import hashlib

    wd = launcher.start({"handler.py": HASHING_HANDLERS[kind]}, FAAS_MAX_BODY=str(1 << 30))
    block = bytes(range(256)) * 4096
    before = vm_hwm(wd)

    def body() -> Iterator[bytes]:
        for _ in range(200):
            yield block

    conn = wd.connect()
    try:
        conn.request("POST", "/", body=body(), headers={"X-Faas-Token": TOKEN, **STREAM_BODY})
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    digest = hashlib.sha256()
    for _ in range(200):
        digest.update(block)
    assert answer == {"size": 200 * len(block), "sha256": digest.hexdigest()}
    assert vm_hwm(wd) - before < 50 * 1024  # KiB: 200 MiB went through, a little stayed


def test_a_streamed_body_over_the_limit_answers_413(launcher: Launcher) -> None:
    wd = launcher.start({"handler.py": HASHING_HANDLERS["async"]}, FAAS_MAX_BODY="1000")
    conn = wd.connect()
    try:
        chunks = iter([b"a" * 600, b"b" * 600])
        headers = {"X-Faas-Token": TOKEN, **STREAM_BODY}
        conn.request("POST", "/", body=chunks, headers=headers, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413
        assert "byte limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_a_handler_that_leaves_its_streamed_body_unread_answers_and_closes(
    launcher: Launcher,
) -> None:
    wd = launcher.start({"handler.py": "def handle(event, context):\n    return 'early'\n"})
    with wd.raw() as sock:
        head = b"POST / HTTP/1.1\r\nX-Faas-Token: test-token\r\nX-Faas-Body: stream\r\n"
        sock.sendall(head + b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000)
        received = b""
        while chunk := sock.recv(65536):  # the answer, then the connection ends
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"early")
    assert b"Connection: close" in received


def test_a_whole_body_is_one_chunk_of_event_stream(launcher: Launcher) -> None:
    wd = launcher.start({"handler.py": HASHING_HANDLERS["sync"]})
    status, _, body = wd.call("/", method="POST", body=b"abc")
    assert status == 200 and json.loads(body)["size"] == 3


def test_the_gateway_tells_the_body_limit_with_each_call(launcher: Launcher) -> None:
    """gateway.max_body_size reaches warm and ordinary watchdogs alike, per call."""
    wd = launcher.start({"handler.py": HASHING_HANDLERS["sync"]}, FAAS_MAX_BODY="1000")
    body = b"x" * 3000
    assert wd.call("/", method="POST", body=body)[0] == 413  # its own limit
    status, _, answer = wd.call("/", method="POST", body=body, headers={"X-Faas-Max-Body": "5000"})
    assert (status, json.loads(answer)["size"]) == (200, 3000)
    refused = wd.call("/", method="POST", body=body, headers={"X-Faas-Max-Body": "2000"})
    assert refused[0] == 413
