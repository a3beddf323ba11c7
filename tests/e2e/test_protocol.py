"""The gateway's HTTP protocol (gateway/protocol.py) on a real server: the short road for
plain calls, and the full application for the rest, over real keep-alive connections."""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import Gateway, running_gateway

pytestmark = pytest.mark.docker

SPEC = Path(__file__).parent / "projects" / "protocol" / "functions.yaml"


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(docker_client, SPEC, "proto", tmp_path_factory.mktemp("logs")) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        yield client


class _Unclosable(io.BufferedReader):
    """One buffered reader shared by several responses read off one connection."""

    def close(self) -> None:
        pass


class _Connection:
    def __init__(self, reader: io.BufferedReader) -> None:
        self.reader = reader

    def makefile(self, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return self.reader


Answer = tuple[int, dict[str, str], bytes]


def exchange(gateway: Gateway, raw: bytes, methods: list[str]) -> tuple[list[Answer], bytes]:
    """Send `raw` (one or more requests) in one write; the answers, and what followed them."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(raw)
        reader = _Unclosable(sock.makefile("rb", buffering=0))  # type: ignore[arg-type]
        answers = []
        for method in methods:
            response = http.client.HTTPResponse(_Connection(reader), method=method)  # type: ignore[arg-type]
            response.begin()
            headers = {k.lower(): v for k, v in response.getheaders()}
            answers.append((response.status, headers, response.read()))
        sock.settimeout(0.5)
        try:
            rest = reader.read1(65536)
        except TimeoutError:
            rest = b"<open>"
        return answers, rest


def test_a_plain_call_reaches_the_function_with_clean_headers(client: httpx.Client) -> None:
    response = client.get(
        "/function/echo/a/b/c?x=1&y=two",
        headers={
            "X-Faas-Token": "forged",
            "X-Faas-Timeout": "999",
            "Connection": "keep-alive, x-hop",
            "X-Hop": "dropped",
            "X-Kept": "kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/a/b/c"
    assert seen["query"] == {"x": "1", "y": "two"}
    assert seen["headers"].get("x-kept") == "kept"
    assert "x-hop" not in seen["headers"]
    assert seen["headers"].get("x-faas-token") != "forged"
    assert "traceparent" in seen["headers"]
    assert response.headers["x-call-id"] == seen["call_id"]
    assert "server" not in response.headers


def test_a_forwarded_call_takes_the_full_application(client: httpx.Client) -> None:
    response = client.post(
        "/function/echo",
        content=b"hello",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["body"] == "hello"
    assert response.headers["x-call-id"] == response.json()["call_id"]


def test_headers_over_the_limit_are_431(client: httpx.Client) -> None:
    response = client.get("/function/echo", headers={"X-Big": "x" * 5000})
    assert response.status_code == 431
    assert "over the limit" in response.json()["error"]


def test_pipelined_calls_are_answered_in_order(gateway: Gateway) -> None:
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"
    raw = (
        f"GET /function/echo/one HTTP/1.1\r\n{host}\r\n"
        f"POST /function/echo/two HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\nbody2"
        f"GET /healthz HTTP/1.1\r\n{host}\r\n"
        f"GET /function/echo/three HTTP/1.1\r\n{host}\r\n"
    ).encode()
    answers, rest = exchange(gateway, raw, ["GET", "POST", "GET", "GET"])
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    one, two, health, three = (json.loads(body) for _, _, body in answers)
    assert (one["path"], two["path"], three["path"]) == ("/one", "/two", "/three")
    assert two["body"] == "body2"
    assert health == {"status": "ok"}
    assert rest == b"<open>"  # kept alive


def test_head_answers_headers_only_and_the_connection_stays_usable(gateway: Gateway) -> None:
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"
    raw = (
        f"HEAD /function/echo HTTP/1.1\r\n{host}\r\nGET /function/echo/after HTTP/1.1\r\n{host}\r\n"
    ).encode()
    answers, _ = exchange(gateway, raw, ["HEAD", "GET"])
    (head_status, head_headers, head_body), (status, _, body) = answers
    assert head_status == 200 and head_body == b""
    assert "x-call-id" in head_headers
    assert status == 200 and json.loads(body)["path"] == "/after"


def test_connection_close_is_honoured(gateway: Gateway) -> None:
    raw = (
        f"GET /function/echo HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answers, rest = exchange(gateway, raw, ["GET"])
    status, headers, _ = answers[0]
    assert status == 200
    assert headers.get("connection") == "close"
    assert rest == b""  # closed after the answer


def test_a_large_answer_arrives_whole(client: httpx.Client) -> None:
    response = client.get("/function/stream", params={"size": "3000000"})
    assert response.status_code == 200
    assert len(response.content) == 3_000_000
    assert response.content[:300] == bytes(i % 251 for i in range(300))


def test_http_1_0_is_served_by_the_full_application(gateway: Gateway) -> None:
    raw = b"GET /function/echo/old HTTP/1.0\r\n\r\n"
    answers, _ = exchange(gateway, raw, ["GET"])
    status, _, body = answers[0]
    assert status == 200
    assert json.loads(body)["path"] == "/old"
