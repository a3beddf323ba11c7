"""Streamed answers through a real gateway to real replicas (issue: streaming).

A handler that returns a generator (or a StreamingResponse) is answered chunk by
chunk as it produces: the first Server-Sent Event reaches the caller while the
handler has not yet produced the last; a caller that leaves closes the generator
(its `finally` runs) and frees the replica's slot at once; a chunk that is not
bytes, or a producer quiet past the function's timeout, cuts the answer short
with a logged reason, never a hung caller; 1 GiB streams to a slow reader with the
gateway's memory flat.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from faas.testing import call
from tests.conftest import Gateway, running_gateway, wait_for

pytestmark = pytest.mark.docker

PROJECT = Path(__file__).parent / "projects" / "streaming"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gateway(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("streaming") / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns(".faas", "__pycache__"))
    logs = tmp_path_factory.mktemp("logs")
    with running_gateway(docker_client, root / "functions.yaml", "stream", logs) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as client:
        yield client


def function_row(gateway: Gateway, name: str) -> dict[str, Any]:
    rows = gateway.admin_get("/system/functions").json()["functions"]
    row: dict[str, Any] = next(r for r in rows if r["name"] == name)
    return row


def metric(gateway: Gateway, name: str) -> float:
    """One sample of the gateway's /metrics, e.g. 'faas_open_streams{function="ticks"}'."""
    for line in gateway.admin_get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def replica_log(gateway: Gateway, function: str) -> str:
    answer = gateway.admin_get(f"/system/logs?function={function}&limit=1000")
    return "\n".join(line["message"] for line in answer.json()["lines"])


def test_the_first_event_arrives_before_the_handler_produces_the_last(
    client: httpx.Client,
) -> None:
    with client.stream("GET", "/function/ticks", params={"case": "sse"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-stream"] == "sse"
        assert "content-length" not in response.headers
        lines = response.iter_lines()
        first = [next(lines) for _ in range(4)]
        assert first == ["event: tick", "id: 1", 'data: {"n":1}', ""]
        # only now may the handler produce its second event
        assert client.get("/function/ticks", params={"case": "release"}).text == "released"
        rest = list(lines)
    assert rest == ["event: tick", "id: 2", 'data: {"n":2}', ""]


def test_a_caller_that_leaves_closes_the_generator_and_frees_the_slot(
    gateway: Gateway, client: httpx.Client
) -> None:
    closed = lambda: client.get("/function/ticks", params={"case": "closed"}).json()["closed"]  # noqa: E731
    assert "left" not in closed()  # and the function has a ready replica
    with client.stream(
        "GET", "/function/ticks", params={"case": "endless", "tag": "left"}
    ) as response:
        assert response.status_code == 200
        received = 0
        chunks = response.iter_raw()
        while received < 8 * 1024:
            received += len(next(chunks))
        assert function_row(gateway, "ticks")["in_flight"] == 1  # while it streams
        assert metric(gateway, 'faas_open_streams{function="ticks"}') == 1
        chunks.close()  # closes the connection, as a caller that leaves does
    # the connection is closed: the generator's `finally` runs, the slot is free
    wait_for(lambda: "left" in closed(), 15, "the generator's finally")
    wait_for(lambda: function_row(gateway, "ticks")["in_flight"] == 0, 15, "the slot freed")
    assert metric(gateway, 'faas_open_streams{function="ticks"}') == 0
    assert metric(gateway, 'faas_first_byte_seconds_count{function="ticks"}') >= 1


def test_a_chunk_that_is_not_bytes_cuts_the_answer_with_a_logged_error(
    gateway: Gateway, client: httpx.Client
) -> None:
    received = b""
    with client.stream("GET", "/function/ticks", params={"case": "bad-chunk"}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            for chunk in response.iter_raw():
                received += chunk
    assert received == b"fine\n"
    wait_for(
        lambda: "a stream yielded a dict, not str or bytes" in replica_log(gateway, "ticks"),
        15,
        "the error in the replica's log",
    )


def test_a_producer_quiet_past_the_timeout_is_cut_off(
    gateway: Gateway, client: httpx.Client
) -> None:
    received = b""
    with client.stream("GET", "/function/ticks", params={"case": "quiet"}) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            for chunk in response.iter_raw():
                received += chunk
    assert received == b"one\n"
    wait_for(lambda: function_row(gateway, "ticks")["in_flight"] == 0, 15, "the slot freed")


def test_a_generator_of_text_is_plain_text_in_process_too(
    gateway: Gateway, client: httpx.Client
) -> None:
    over_http = client.get("/function/ticks", params={"case": "lines"})
    handler = PROJECT / "functions" / "ticks.py"
    in_process = call(handler, query={"case": "lines"})
    expected = "".join(f"line {i}\n" for i in range(5))
    assert (over_http.status_code, over_http.text) == (200, expected)
    assert over_http.headers["content-type"] == "text/plain; charset=utf-8"
    assert (in_process.status, in_process.text) == (200, expected)
    assert in_process.chunks == [f"line {i}\n".encode() for i in range(5)]


def gateway_rss(gateway: Gateway) -> int:
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_a_gigabyte_streams_to_a_slow_reader_with_the_gateway_memory_flat(
    gateway: Gateway, client: httpx.Client
) -> None:
    client.get("/function/bulk", params={"mib": "1"})  # the replica is up
    before = gateway_rss(gateway)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, gateway_rss(gateway))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    first = b""
    try:
        with client.stream("GET", "/function/bulk", params={"mib": "1024"}) as response:
            assert response.status_code == 200
            for index, chunk in enumerate(response.iter_raw(chunk_size=MiB)):
                received += len(chunk)
                if len(first) < 1024:
                    first += chunk[:1024]
                if index < 200:
                    time.sleep(0.005)  # a slow reader first: the producer waits for it
    finally:
        done.set()
        sampler.join(10)
    assert received == 1024 * MiB
    assert first[:1024] == bytes(range(256)) * 4
    assert peak - before < 50 * MiB, f"the gateway grew by {(peak - before) / MiB:.0f} MiB"


def test_faas_invoke_prints_a_stream_and_says_when_it_was_cut_off(gateway: Gateway) -> None:
    lines = "".join(f"line {i}\n" for i in range(5))
    for option in ("--stream", "--no-stream"):
        whole = gateway.cli("invoke", "ticks", "--path", "?case=lines", option)
        assert whole.returncode == 0, whole.stderr
        assert whole.stdout == lines
    cut = gateway.cli("invoke", "ticks", "--path", "?case=bad-chunk")
    assert cut.returncode == 1
    assert cut.stdout == "fine\n"
    assert "the answer was cut off" in cut.stderr


def test_a_500_mib_upload_streams_to_a_handler_in_a_128_mib_replica(
    gateway: Gateway, client: httpx.Client
) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    blocks = 500

    def upload() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    expected = hashlib.sha256()
    for _ in range(blocks):
        expected.update(block)
    before = gateway_rss(gateway)
    response = client.post("/function/upload", content=upload(), timeout=120)
    assert response.status_code == 200, response.text
    assert response.json() == {"size": blocks * MiB, "sha256": expected.hexdigest()}
    assert gateway_rss(gateway) - before < 50 * MiB
    small = client.post("/function/upload", content=b"abc")  # a whole body: one chunk
    assert small.json() == {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}


def test_event_body_of_a_streamed_request_is_a_clear_error(client: httpx.Client) -> None:
    response = client.post("/function/upload", params={"case": "body"}, content=b"abc")
    assert response.status_code == 500
    assert response.json()["error"] == "function raised an exception"


def test_an_async_call_stores_a_streamed_answer_whole(
    gateway: Gateway, client: httpx.Client
) -> None:
    response = client.post("/async-function/ticks", params={"case": "lines"})
    assert response.status_code == 202, response.text
    call_id = response.json()["call_id"]

    def record() -> dict[str, Any]:
        answer: dict[str, Any] = gateway.admin_get(f"/system/calls/{call_id}").json()
        return answer

    done = wait_for(lambda: record()["status"] == "succeeded" and record(), 30, "the call")
    assert done["result"]["status"] == 200
    assert done["result"]["body"] == "".join(f"line {i}\n" for i in range(5))


def test_a_whole_body_past_ten_mib_is_taken_up_to_max_body_size(client: httpx.Client) -> None:
    """gateway.max_body_size (600 MiB here) is what replicas take too, not their own
    10 MiB default: the gateway tells it with each call."""
    response = client.post("/function/ticks", params={"case": "lines"}, content=b"x" * (20 * MiB))
    assert response.status_code == 200, response.text
