"""Hostile callers against a real gateway: what they can make it hold, how it answers them,
and the admin API on a listener of its own (gateway/protocol.py, gateway/app.py).

Memory bounds are read from the `faas up` process's VmRSS, with generous margins;
nothing here asserts a duration.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "callers"
SPEC = PROJECT / "functions.yaml"  # header_timeout: 2s
CAPPED = PROJECT / "capped.yaml"  # max_connections: 20
MiB = 1024 * 1024
RSS_MARGIN = 50 * MiB
UNFINISHED_HEAD = b"GET /function/hello HTTP/1.1\r\nHost: a\r\nX-Unfinished: "


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "callers", tmp_path_factory.mktemp("logs")) as gw:
        assert call(gw) == 200  # the replica is up and the pools are warm
        yield gw


def call(gateway: Gateway) -> int:
    return httpx.get(f"{gateway.url}/function/hello", timeout=30, trust_env=False).status_code


def rss(gateway: Gateway) -> int:
    """Resident memory of the `faas up` process, in bytes."""
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


class PeakRss:
    """The gateway's highest RSS while the `with` block runs, sampled in a thread."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.before = rss(gateway)
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss(self.gateway))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.gateway))

    @property
    def growth(self) -> int:
        return self.peak - self.before


def read_answer(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the gateway sends until it closes (what was sent before a reset too)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_json_error(answer: bytes, status: int) -> dict[str, Any]:
    """`answer` is `status`, a JSON error whose call id is also in X-Call-Id."""
    code, headers, body = parse(answer)
    assert code == status, answer[:300]
    assert headers["content-type"] == "application/json"
    document: dict[str, Any] = json.loads(body)
    assert document["call_id"] == headers["x-call-id"]
    assert "location" not in headers
    return document


# -- (a) header bytes ----------------------------------------------------------------


def flood_unfinished_head(port: int, total: int) -> bytes:
    """Send one header that never ends, up to `total` bytes or until the gateway closes."""
    chunk = b"a" * MiB
    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            sock.sendall(UNFINISHED_HEAD)
            for _ in range(total // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after its answer: the rest is never read
        return read_answer(sock)


def test_unfinished_headers_are_431_and_the_gateway_holds_none_of_them(
    gateway: Gateway,
) -> None:
    with PeakRss(gateway) as memory, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: flood_unfinished_head(gateway.port, 100 * MiB), range(4)))
    for answer in answers:
        assert "over the limit" in assert_json_error(answer, 431)["error"]
    assert memory.growth < RSS_MARGIN, f"grew {memory.growth / MiB:.0f} MiB"
    assert call(gateway) == 200


# -- (b) slow heads ------------------------------------------------------------------


def test_slow_heads_get_408_while_calls_go_on(gateway: Gateway) -> None:
    """500 connections each dribbling an unfinished head; header_timeout is 2 s here."""
    selector = selectors.DefaultSelector()
    with ExitStack() as stack, PeakRss(gateway) as memory:
        slow = []
        for _ in range(500):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", gateway.port)))
            sock.sendall(UNFINISHED_HEAD)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            slow.append(sock)
        answers: dict[socket.socket, bytes] = {}
        statuses = []
        while len(answers) < len(slow):
            statuses.append(call(gateway))  # calls keep working meanwhile
            for sock in slow:
                if sock not in answers:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")  # one byte at a time: never a whole head
            for key, _ in selector.select(timeout=0.2):
                answered = key.fileobj
                assert isinstance(answered, socket.socket)
                answered.setblocking(True)
                answers[answered] = read_answer(answered)
                selector.unregister(answered)
    assert statuses and set(statuses) == {200}
    for answer in answers.values():
        assert "did not arrive within 2s" in assert_json_error(answer, 408)["error"]
    assert memory.growth < RSS_MARGIN, f"grew {memory.growth / MiB:.0f} MiB"


# -- (c) the connection cap ----------------------------------------------------------


def test_connections_past_the_cap_are_refused_503_until_some_close(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Idle connections fill the cap (20 here); one more is answered 503 and closed."""
    with running_gateway(docker_client, CAPPED, "capped", tmp_path) as capped, ExitStack() as held:
        address = ("127.0.0.1", capped.port)
        refused: list[bytes] = []
        for _ in range(200):  # until the held ones fill the cap (others may still be closing)
            held.enter_context(socket.create_connection(address))  # sends nothing, stays
            answer = probe(address)
            if answer.startswith(b"HTTP/1.1 503"):
                refused.append(answer)
                break
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert refused, "the cap was never reached"
        for _ in range(3):
            refused.append(probe(address))
        for answer in refused:
            assert "too many open connections" in assert_json_error(answer, 503)["error"]
        held.close()
        wait_for(lambda: call_or_none(capped) == 200, 30, "calls once connections closed")
        assert call(capped) == 200
        assert "connection refused: the listener is at its cap" in capped.log()


def probe(address: tuple[str, int]) -> bytes:
    """A whole request on a new connection that closes after it: 200, or 503 at the cap."""
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return read_answer(sock)


def call_or_none(gateway: Gateway) -> int | None:
    try:
        return call(gateway)
    except httpx.TransportError:  # refused at the cap while the held ones close
        return None


# -- (d) what the HTTP parser refuses ------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /function/hello?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),
        (b"BREW /function/hello HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /function/hello HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
        (b"GET /function/hello HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n", 400),
        (
            b"POST /function/hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
    ],
    ids=["100KB-url", "unknown-method", "nul-byte", "folded-header", "cl-and-te"],
)
def test_what_the_parser_refuses_is_answered_in_json(
    gateway: Gateway, request_bytes: bytes, status: int
) -> None:
    for port in (gateway.port, gateway.admin_port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request_bytes)
            assert_json_error(read_answer(sock), status)


# -- (e) no Location from Host -------------------------------------------------------


@pytest.mark.parametrize("path", ["/system/functions/", "/hello/", "/function/", "/nope/"])
def test_no_redirect_is_built_from_the_callers_host(gateway: Gateway, path: str) -> None:
    for base in (gateway.url, gateway.admin_url):
        answer = httpx.get(
            base + path, headers={"Host": "evil.example"}, trust_env=False, timeout=30
        )
        assert answer.status_code == 404
        assert "location" not in answer.headers
        assert answer.json()["call_id"] == answer.headers["x-call-id"]


# -- (f) the admin listener ----------------------------------------------------------


def test_the_admin_api_and_dashboard_answer_only_on_their_own_listener(
    gateway: Gateway,
) -> None:
    token = gateway.admin_headers
    for path in ("/system/functions", "/ui", "/metrics", "/system/stats"):
        refused = httpx.get(gateway.url + path, headers=token, trust_env=False, timeout=30)
        assert refused.status_code == 404, path
        assert refused.json()["call_id"] == refused.headers["x-call-id"]
    assert gateway.admin_get("/system/functions").status_code == 200
    assert httpx.get(gateway.admin_url + "/ui", trust_env=False, timeout=30).status_code == 200
    unauthorized = httpx.get(gateway.admin_url + "/system/functions", trust_env=False)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["call_id"] == unauthorized.headers["x-call-id"]
    for base in (gateway.url, gateway.admin_url):
        health = httpx.get(base + "/healthz", trust_env=False, timeout=30)
        assert health.json() == {"status": "ok"}


def test_no_function_answer_is_served_from_the_admin_origin(gateway: Gateway) -> None:
    admin: Callable[..., httpx.Response] = lambda path, **kw: httpx.get(  # noqa: E731
        gateway.admin_url + path, trust_env=False, timeout=30, **kw
    )
    # the function's own routes do not exist there, with or without the token
    for path in ("/function/hello", "/hello", "/function/hello?cookie=1"):
        assert admin(path).status_code == 404
        assert admin(path, headers=gateway.admin_headers).status_code == 404
    # the dashboard's invoke needs the token (which no navigation or embed can send) ...
    assert admin("/system/functions/hello/invoke?cookie=1").status_code == 401
    # ... and its answer, a page with a script and a cookie here, comes back inert
    answer = admin("/system/functions/hello/invoke?cookie=1", headers=gateway.admin_headers)
    assert answer.status_code == 200 and b"<script>" in answer.content
    assert answer.headers["content-security-policy"].startswith("sandbox")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"] == "attachment"
    assert "set-cookie" not in answer.headers
    # the same call on the function listener is the function's own answer, cookie and all
    direct = httpx.get(f"{gateway.url}/function/hello?cookie=1", trust_env=False, timeout=30)
    assert direct.headers["set-cookie"] == "stolen=1"


def test_the_cli_finds_the_admin_listener(gateway: Gateway) -> None:
    listed = gateway.cli("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [f["name"] for f in json.loads(listed.stdout)["functions"]] == ["hello"]
    link = gateway.cli("ui")
    assert link.stdout.startswith(f"{gateway.admin_url}/ui#token=")
